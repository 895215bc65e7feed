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
