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
