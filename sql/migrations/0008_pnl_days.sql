-- Schema version 8: P&L day totals, so `tradebot pnl --by day` reads one row per day instead of replaying every
-- trade. A row of (symbol, mode, day) holds that UTC day's realized P&L, fees, buys, sells and volumes, summed
-- trade by trade as the replay sums them; `pnl` writes a day's row once a later day's trade has been folded
-- into the checkpoint (the checkpoint itself carries the unfinished day). Any change to a completed trade
-- deletes the rows of its day and of every later day (the trigger below), which the next `pnl` rewrites.
CREATE TABLE IF NOT EXISTS pnl_days (
    symbol        text NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('paper', 'live')),
    day           date NOT NULL,
    realized_pnl  numeric NOT NULL,
    fees          numeric NOT NULL,
    buys          integer NOT NULL,
    sells         integer NOT NULL,
    bought_volume numeric NOT NULL,
    sold_volume   numeric NOT NULL,
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
        DELETE FROM pnl_days d
        WHERE d.symbol = OLD.symbol AND d.mode = OLD.mode AND d.day >= (OLD.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || NEW.symbol || ':' || NEW.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = NEW.symbol AND c.mode = NEW.mode AND (NEW.created_at, NEW.id) <= (c.last_created_at, c.last_id);
        DELETE FROM pnl_snapshots s
        WHERE s.symbol = NEW.symbol AND s.mode = NEW.mode AND s.day > (NEW.created_at AT TIME ZONE 'UTC')::date;
        DELETE FROM pnl_days d
        WHERE d.symbol = NEW.symbol AND d.mode = NEW.mode AND d.day >= (NEW.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    RETURN NULL;
END
$$;

-- Checkpoints written before day totals existed are dropped, so that the next `pnl` rebuilds them with every
-- day's totals (once; the trades themselves are untouched).
DELETE FROM pnl_checkpoints;

INSERT INTO schema_version (version, description) VALUES (8, 'pnl day totals') ON CONFLICT (version) DO NOTHING;
