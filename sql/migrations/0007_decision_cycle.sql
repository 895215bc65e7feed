-- Schema version 7: every decision row names the cycle (run) that wrote it, so that the decisions one cycle
-- made for several markets can be read together. Rows written before have none.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS cycle_id uuid;
CREATE INDEX IF NOT EXISTS decisions_cycle_id_idx ON decisions (cycle_id);

INSERT INTO schema_version (version, description) VALUES (7, 'decision cycle id') ON CONFLICT (version) DO NOTHING;
