-- Named statements over the candles cache (tradebot backtest, and the cycle's candles). Parameters are always bound.

-- name: range
-- The oldest and newest cached candle of a market and interval (NULLs when none is cached).
SELECT min(start), max(start), count(*)
FROM candles
WHERE market = %(market)s AND interval = %(interval)s

-- name: upsert
-- Completed candles never change on Upbit; a refetched one replaces the cached row (the exchange is the truth).
INSERT INTO candles (market, interval, start, open, high, low, close, volume, value)
VALUES (%(market)s, %(interval)s, %(start)s, %(open)s, %(high)s, %(low)s, %(close)s, %(volume)s, %(value)s)
ON CONFLICT (market, interval, start) DO UPDATE
SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, value = EXCLUDED.value

-- name: between
-- Cached candles with since <= start < until, oldest first.
SELECT start, open, high, low, close, volume, value
FROM candles
WHERE market = %(market)s AND interval = %(interval)s AND start >= %(since)s AND start < %(until)s
ORDER BY start

-- name: last
-- The last `count` cached candles with start < until, newest first.
SELECT start, open, high, low, close, volume, value
FROM candles
WHERE market = %(market)s AND interval = %(interval)s AND start < %(until)s
ORDER BY start DESC
LIMIT %(count)s

-- name: delete_between
-- Cached candles with since <= start < until (replaced by a refetch when the cache disagreed with the exchange).
DELETE FROM candles
WHERE market = %(market)s AND interval = %(interval)s AND start >= %(since)s AND start < %(until)s

-- name: between_packed
-- Cached candles with since <= start < until for a simulation (its statistics, never an order), in one value:
-- per candle, oldest first, five float8 in PostgreSQL's binary form — the start (unix seconds), open, high, low
-- and close — and then the last close exactly. One value rather than a row per candle: a year of hourly candles
-- took about 40 ms to become Python rows and datetimes, a few ms to unpack (`tradebot advisors report`).
SELECT string_agg(float8send(date_part('epoch', start)) || float8send(open::float8) || float8send(high::float8)
                  || float8send(low::float8) || float8send(close::float8), ''::bytea ORDER BY start),
       (SELECT close FROM candles
        WHERE market = %(market)s AND interval = %(interval)s AND start >= %(since)s AND start < %(until)s
        ORDER BY start DESC LIMIT 1)
FROM candles
WHERE market = %(market)s AND interval = %(interval)s AND start >= %(since)s AND start < %(until)s
