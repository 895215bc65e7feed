-- Schema version 4: P&L checkpoints, so `tradebot pnl` over a long history replays only new trades.
-- A checkpoint is the P&L accumulator after every completed trade up to (last_created_at, last_id) of one
-- symbol and mode. Any change to a completed trade at or before that point deletes it (trigger below), so
-- a recovered, corrected or late-completed trade can never be missed; the next `pnl` rebuilds it.
CREATE TABLE IF NOT EXISTS pnl_checkpoints (
    symbol          text NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('paper', 'live')),
    last_created_at timestamptz NOT NULL,
    last_id         bigint NOT NULL,
    state           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, mode)
);

CREATE INDEX IF NOT EXISTS trades_completed_ledger_idx ON trades (symbol, mode, created_at, id) WHERE status = 'completed';

CREATE OR REPLACE FUNCTION tradebot_invalidate_pnl_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Serializes with a `pnl` that is building this checkpoint (it holds the same lock while reading
    -- trades and writing the checkpoint), so a trade committed in between is never skipped.
    IF TG_OP <> 'INSERT' AND OLD.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || OLD.symbol || ':' || OLD.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = OLD.symbol AND c.mode = OLD.mode AND (OLD.created_at, OLD.id) <= (c.last_created_at, c.last_id);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || NEW.symbol || ':' || NEW.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = NEW.symbol AND c.mode = NEW.mode AND (NEW.created_at, NEW.id) <= (c.last_created_at, c.last_id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS trades_invalidate_pnl_checkpoint ON trades;
CREATE TRIGGER trades_invalidate_pnl_checkpoint AFTER INSERT OR UPDATE OR DELETE ON trades
    FOR EACH ROW EXECUTE FUNCTION tradebot_invalidate_pnl_checkpoint();

INSERT INTO schema_version (version, description) VALUES (4, 'pnl checkpoints') ON CONFLICT (version) DO NOTHING;
