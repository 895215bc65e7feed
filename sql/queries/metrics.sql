-- Totals for the Prometheus textfile, recomputed from the database on every run so that counters stay
-- monotonic across cron processes (as long as rows are not deleted).

-- name: decisions_by_action
-- The bot's own decisions (shadow decisions never trade: tradebot_advisor_decisions_total counts them).
SELECT ticker, mode, action, count(*) FROM decisions WHERE role = 'acting' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3

-- name: filtered_decisions
SELECT ticker, mode, count(*) FROM decisions WHERE filtered AND role = 'acting' GROUP BY 1, 2 ORDER BY 1, 2

-- name: trades_by_side_status
SELECT symbol, mode, side, status, count(*) FROM trades GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4

-- name: fees
SELECT symbol, mode, coalesce(sum(fee), 0) FROM trades WHERE status = 'completed' GROUP BY 1, 2 ORDER BY 1, 2

-- name: llm_usage
-- Every model request, a shadow one (TRADEBOT_SHADOW_MODEL=on) included: it is billed all the same.
SELECT ticker, mode, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
       coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0), coalesce(sum(cost_usd), 0)
FROM decisions GROUP BY 1, 2 ORDER BY 1, 2

-- name: errors
SELECT ticker, mode, count(*) FROM decisions WHERE error IS NOT NULL AND role = 'acting' GROUP BY 1, 2 ORDER BY 1, 2
