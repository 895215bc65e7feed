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

-- name: between_floats
-- Cached candles with since <= start < until, oldest first, as floats (the simulations' statistics, never an order).
SELECT start, open::float8, high::float8, low::float8, close::float8, close
FROM candles
WHERE market = %(market)s AND interval = %(interval)s AND start >= %(since)s AND start < %(until)s
ORDER BY start
