-- Schema version 5: trade status 'unknown' — an order whose outcome tradebot cannot establish and that
-- needs the owner's attention (a paper fill that neither the database nor the journal could take). Never
-- confused with 'failed', which means the order was never placed.
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_status_check;
ALTER TABLE trades ADD CONSTRAINT trades_status_check
    CHECK (status IN ('pending', 'completed', 'failed', 'cancelled', 'unknown'));
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_unknown_has_error;
ALTER TABLE trades ADD CONSTRAINT trades_unknown_has_error CHECK (status <> 'unknown' OR error IS NOT NULL);

INSERT INTO schema_version (version, description) VALUES (5, 'trade status unknown') ON CONFLICT (version) DO NOTHING;
