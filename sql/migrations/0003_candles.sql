-- Schema version 3: the hourly candle cache of `tradebot backtest` (a second run needs no network).
-- Only completed candles are stored; an hour without trades has no row (gaps stay gaps). Rows between the
-- oldest and the newest cached candle of a market are complete: fetches always extend that range.
CREATE TABLE IF NOT EXISTS candles (
    market   text NOT NULL CHECK (market ~ '^[A-Z]{2,5}-[A-Z0-9]{1,15}$'),
    interval text NOT NULL CHECK (interval IN ('minute60', 'day')),
    start    timestamptz NOT NULL,
    open     numeric NOT NULL CHECK (open > 0),
    high     numeric NOT NULL CHECK (high > 0),
    low      numeric NOT NULL CHECK (low > 0),
    close    numeric NOT NULL CHECK (close > 0),
    volume   numeric NOT NULL CHECK (volume >= 0),
    value    numeric NOT NULL DEFAULT 0 CHECK (value >= 0),
    PRIMARY KEY (market, interval, start)
);

INSERT INTO schema_version (version, description) VALUES (3, 'candles cache')
    ON CONFLICT (version) DO NOTHING;
