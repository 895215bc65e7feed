-- Named statements that read what the bot decided and traded (tradebot backtest --compare-live).

-- name: decisions
-- The decisions of one market and mode with created_at in [since, until) (NULL: unbounded), oldest first.
SELECT id, created_at, advisor, decision, confidence, fraction, action, order_krw, order_volume, price,
       position, indicators, filtered, vetoes, error, dry_run
FROM decisions
WHERE ticker = %(ticker)s AND mode = %(mode)s
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
ORDER BY created_at, id

-- name: trades_of_decisions
-- The orders placed for these decisions, whatever their status.
SELECT id, decision_id, created_at, side, status, price, amount, total, fee, requested_krw, requested_volume
FROM trades
WHERE decision_id = ANY(%(ids)s)
ORDER BY created_at, id
