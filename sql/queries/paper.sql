-- name: latest_reset
SELECT starting_krw, reset_at FROM paper_resets ORDER BY id DESC LIMIT 1

-- name: reset
INSERT INTO paper_resets (starting_krw) VALUES (%(starting_krw)s) RETURNING id, reset_at

-- name: fills_since
-- Completed paper trades after the newest reset, oldest first: the paper account is derived from them.
SELECT symbol, side, price, amount, total, fee
FROM trades
WHERE mode = 'paper' AND status = 'completed' AND created_at >= %(since)s
ORDER BY created_at, id

-- name: completed_by_client_order_id
SELECT trade_id, client_order_id, symbol, side, amount, total, fee, created_at
FROM trades
WHERE mode = 'paper' AND status = 'completed' AND client_order_id = %(client_order_id)s

-- name: completed_by_trade_id
SELECT trade_id, client_order_id, symbol, side, amount, total, fee, created_at
FROM trades
WHERE mode = 'paper' AND status = 'completed' AND trade_id = %(trade_id)s

-- name: completed_since
SELECT trade_id, client_order_id, symbol, side, amount, total, fee, created_at
FROM trades
WHERE mode = 'paper' AND status = 'completed' AND symbol = %(symbol)s AND created_at >= %(since)s
ORDER BY created_at, id

-- name: accept_order
-- The paper "exchange" accepts an order: its uuid goes on the pending row before the fill is made, so a
-- run that later finds the row pending with a uuid knows a fill may exist that was never recorded.
UPDATE trades SET trade_id = %(trade_id)s, updated_at = now()
WHERE client_order_id = %(client_order_id)s AND mode = 'paper' AND status = 'pending' AND trade_id IS NULL
