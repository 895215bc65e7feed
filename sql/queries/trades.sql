-- Named statements over the trades table. Parameters are always bound, never formatted in.

-- name: list
-- Newest first. A NULL filter matches everything; PostgreSQL plans each execution with the actual
-- values, so an unused filter costs nothing and the (created_at, id) index serves the ORDER BY … LIMIT.
SELECT id, client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
       requested_krw, requested_volume, error, decision_id, recovered, created_at, updated_at
FROM trades
WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s::text)
  AND (%(side)s::text IS NULL OR side = %(side)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(mode)s::text IS NULL OR mode = %(mode)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: completed_ledger
-- The ledger of one symbol and mode, oldest first (P&L and the daily loss limit replay it).
SELECT created_at, side, price, amount, total, fee, trade_id
FROM trades
WHERE symbol = %(symbol)s AND mode = %(mode)s AND status = 'completed'
ORDER BY created_at, id

-- name: insert_pending
-- Written and committed before the order is sent ("record before you act").
INSERT INTO trades (client_order_id, symbol, side, mode, status, requested_krw, requested_volume, decision_id)
VALUES (%(client_order_id)s, %(symbol)s, %(side)s, %(mode)s, 'pending', %(requested_krw)s, %(requested_volume)s,
        %(decision_id)s)
RETURNING id

-- name: complete
-- The fill read back from the exchange. Guarded by status so a row is completed once.
UPDATE trades
SET status = 'completed', trade_id = %(trade_id)s, price = %(price)s, amount = %(amount)s, total = %(total)s,
    fee = %(fee)s, error = NULL, updated_at = now()
WHERE client_order_id = %(client_order_id)s AND status = 'pending'
RETURNING id

-- name: cancel
-- Accepted by the exchange, nothing filled.
UPDATE trades
SET status = 'cancelled', trade_id = %(trade_id)s, amount = 0, error = %(error)s, updated_at = now()
WHERE client_order_id = %(client_order_id)s AND status = 'pending'
RETURNING id

-- name: fail
UPDATE trades
SET status = 'failed', error = %(error)s, updated_at = now()
WHERE client_order_id = %(client_order_id)s AND status = 'pending'
RETURNING id

-- name: set_trade_id
-- The exchange accepted the order but its fill is not final yet: keep the row pending, remember the uuid.
UPDATE trades SET trade_id = %(trade_id)s, updated_at = now()
WHERE client_order_id = %(client_order_id)s AND status = 'pending' AND trade_id IS NULL

-- name: pending
SELECT id, client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
       requested_krw, requested_volume, error, decision_id, recovered, created_at, updated_at
FROM trades
WHERE status = 'pending' AND symbol = %(symbol)s AND mode = %(mode)s
ORDER BY created_at, id

-- name: by_client_order_id
SELECT id, client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
       requested_krw, requested_volume, error, decision_id, recovered, created_at, updated_at
FROM trades
WHERE client_order_id = %(client_order_id)s

-- name: insert_recovered
-- A filled order of ours found on the exchange with no row (e.g. the process died between the POST and
-- the first write). ON CONFLICT keeps a concurrent or repeated reconcile from inserting it twice.
INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
                    recovered, created_at, updated_at)
VALUES (%(client_order_id)s, %(trade_id)s, %(symbol)s, %(side)s, %(mode)s, 'completed', %(price)s, %(amount)s,
        %(total)s, %(fee)s, true, %(created_at)s, now())
ON CONFLICT (client_order_id) DO NOTHING
RETURNING id

-- name: correct
-- Make a row equal to the exchange's account of the order (whatever its status was).
UPDATE trades
SET status = 'completed', trade_id = %(trade_id)s, price = %(price)s, amount = %(amount)s, total = %(total)s,
    fee = %(fee)s, error = NULL, updated_at = now()
WHERE client_order_id = %(client_order_id)s
RETURNING id

-- name: by_client_order_ids
SELECT id, client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
       requested_krw, requested_volume, error, decision_id, recovered, created_at, updated_at
FROM trades
WHERE client_order_id = ANY(%(ids)s)

-- name: completed_all
-- Every completed trade up to %(until)s, per symbol and mode in time order (the P&L ledger replays it).
SELECT symbol, mode, created_at, side, price, amount, total, fee, trade_id, recovered
FROM trades
WHERE status = 'completed'
  AND (%(symbol)s::text IS NULL OR symbol = %(symbol)s::text)
  AND (%(mode)s::text IS NULL OR mode = %(mode)s::text)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
ORDER BY symbol, mode, created_at, id

-- name: ledger_pairs
-- Distinct (symbol, mode) with completed trades: a loose index scan, fast over millions of rows.
WITH RECURSIVE pairs AS (
    (SELECT symbol, mode FROM trades WHERE status = 'completed' ORDER BY symbol, mode LIMIT 1)
    UNION ALL
    SELECT n.symbol, n.mode
    FROM pairs p, LATERAL (
        SELECT symbol, mode FROM trades
        WHERE status = 'completed' AND (symbol, mode) > (p.symbol, p.mode)
        ORDER BY symbol, mode LIMIT 1) n
)
SELECT symbol, mode FROM pairs
WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s::text) AND (%(mode)s::text IS NULL OR mode = %(mode)s::text)

-- name: pnl_lock
SELECT pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || %(symbol)s::text || ':' || %(mode)s::text, 0))

-- name: pnl_checkpoint
SELECT last_created_at, last_id, state FROM pnl_checkpoints WHERE symbol = %(symbol)s AND mode = %(mode)s

-- name: completed_after
-- Completed trades of one symbol and mode after a checkpoint position, in ledger order.
SELECT id, created_at, side, price, amount, total, fee, trade_id, recovered
FROM trades
WHERE status = 'completed' AND symbol = %(symbol)s AND mode = %(mode)s
  AND (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::bigint)
ORDER BY created_at, id

-- name: save_pnl_checkpoint
INSERT INTO pnl_checkpoints (symbol, mode, last_created_at, last_id, state)
VALUES (%(symbol)s, %(mode)s, %(last_created_at)s, %(last_id)s, %(state)s)
ON CONFLICT (symbol, mode) DO UPDATE
SET last_created_at = EXCLUDED.last_created_at, last_id = EXCLUDED.last_id, state = EXCLUDED.state, updated_at = now()

-- name: mark_unknown
-- The outcome cannot be established (a paper fill lost with the database and the journal): needs attention.
UPDATE trades
SET status = 'unknown', error = %(error)s, updated_at = now()
WHERE client_order_id = %(client_order_id)s AND status = 'pending'
RETURNING id

-- name: save_pnl_snapshot
INSERT INTO pnl_snapshots (symbol, mode, day, ledger) VALUES (%(symbol)s, %(mode)s, %(day)s, %(ledger)s)
ON CONFLICT (symbol, mode, day) DO UPDATE SET ledger = EXCLUDED.ledger

-- name: pnl_snapshot_at
-- The newest day snapshot at or before a day.
SELECT day, ledger FROM pnl_snapshots
WHERE symbol = %(symbol)s AND mode = %(mode)s AND day <= %(day)s
ORDER BY day DESC
LIMIT 1

-- name: completed_between
-- Completed trades of one symbol and mode with start <= created_at < until (NULL: unbounded), in ledger order.
SELECT created_at, side, price, amount, total, fee, trade_id, recovered
FROM trades
WHERE status = 'completed' AND symbol = %(symbol)s AND mode = %(mode)s
  AND (%(start)s::timestamptz IS NULL OR created_at >= %(start)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
ORDER BY created_at, id

-- name: last_order_since
-- The newest order of a market placed at or after a time (failed ones never reached the exchange).
SELECT created_at FROM trades
WHERE symbol = %(symbol)s AND mode = %(mode)s AND status <> 'failed' AND created_at >= %(since)s
ORDER BY created_at DESC LIMIT 1

-- name: day_snapshots
-- The day snapshots of some markets of one mode from a day and before a day, oldest first (the portfolio's
-- daily marks): the figures a mark needs, as numbers (no JSON to parse per row).
SELECT symbol, day, (ledger->>'realized_pnl')::numeric, (ledger->>'volume')::numeric, (ledger->>'cost')::numeric,
       (ledger->>'last_price')::numeric
FROM pnl_snapshots
WHERE mode = %(mode)s AND symbol = ANY(%(symbols)s) AND day >= %(first_day)s AND day < %(until_day)s
ORDER BY day, symbol

-- name: save_pnl_day
INSERT INTO pnl_days (symbol, mode, day, realized_pnl, fees, buys, sells, bought_volume, sold_volume)
VALUES (%(symbol)s, %(mode)s, %(day)s, %(realized_pnl)s, %(fees)s, %(buys)s, %(sells)s, %(bought_volume)s, %(sold_volume)s)
ON CONFLICT (symbol, mode, day) DO UPDATE
SET realized_pnl = EXCLUDED.realized_pnl, fees = EXCLUDED.fees, buys = EXCLUDED.buys, sells = EXCLUDED.sells,
    bought_volume = EXCLUDED.bought_volume, sold_volume = EXCLUDED.sold_volume

-- name: pnl_days_between
-- One market's finished days with first_day <= day < end_day, oldest first (the day as pnl prints it).
SELECT to_char(day, 'YYYY-MM-DD'), realized_pnl, fees, buys, sells, bought_volume, sold_volume FROM pnl_days
WHERE symbol = %(symbol)s AND mode = %(mode)s AND day >= %(first_day)s AND day < %(end_day)s
ORDER BY day
