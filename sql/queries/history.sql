-- Named statements that read what the bot traded for its decisions (tradebot backtest --compare-live);
-- the decisions themselves are read by decisions.sql.

-- name: trades_of_decisions
-- The orders placed for these decisions, whatever their status.
SELECT id, decision_id, created_at, side, status, price, amount, total, fee, requested_krw, requested_volume
FROM trades
WHERE decision_id = ANY(%(ids)s)
ORDER BY created_at, id
