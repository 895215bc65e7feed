-- Schema version 6: P&L day snapshots, so `tradebot pnl --since` starts from the day its window begins instead
-- of replaying the whole history. A snapshot of (symbol, mode, day) is the running position (volume, cost,
-- fees, round trips, last fill price) after every completed trade created before that UTC day began; one is
-- written for every day that has trades, while `pnl` brings its checkpoint up to date. Any change to a
-- completed trade deletes the snapshots of later days (the trigger below), which the next `pnl` rewrites.
CREATE TABLE IF NOT EXISTS pnl_snapshots (
    symbol text NOT NULL,
    mode   text NOT NULL CHECK (mode IN ('paper', 'live')),
    day    date NOT NULL,
    ledger jsonb NOT NULL,
    PRIMARY KEY (symbol, mode, day)
);

CREATE OR REPLACE FUNCTION tradebot_invalidate_pnl_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Serializes with a `pnl` that is building this checkpoint (it holds the same lock while reading
    -- trades and writing the checkpoint), so a trade committed in between is never skipped.
    IF TG_OP <> 'INSERT' AND OLD.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || OLD.symbol || ':' || OLD.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = OLD.symbol AND c.mode = OLD.mode AND (OLD.created_at, OLD.id) <= (c.last_created_at, c.last_id);
        DELETE FROM pnl_snapshots s
        WHERE s.symbol = OLD.symbol AND s.mode = OLD.mode AND s.day > (OLD.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || NEW.symbol || ':' || NEW.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = NEW.symbol AND c.mode = NEW.mode AND (NEW.created_at, NEW.id) <= (c.last_created_at, c.last_id);
        DELETE FROM pnl_snapshots s
        WHERE s.symbol = NEW.symbol AND s.mode = NEW.mode AND s.day > (NEW.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    RETURN NULL;
END
$$;

-- Checkpoints written before snapshots existed are dropped, so that the next `pnl` rebuilds them with every day's
-- snapshot (once; the trades themselves are untouched).
DELETE FROM pnl_checkpoints;

INSERT INTO schema_version (version, description) VALUES (6, 'pnl day snapshots') ON CONFLICT (version) DO NOTHING;
