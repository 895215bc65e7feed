-- Totals for the Prometheus textfile, recomputed from the database on every run so that counters stay
-- monotonic across cron processes (as long as rows are not deleted).

-- name: decisions_by_action
SELECT ticker, mode, action, count(*) FROM decisions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3

-- name: filtered_decisions
SELECT ticker, mode, count(*) FROM decisions WHERE filtered GROUP BY 1, 2 ORDER BY 1, 2

-- name: trades_by_side_status
SELECT symbol, mode, side, status, count(*) FROM trades GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4

-- name: fees
SELECT symbol, mode, coalesce(sum(fee), 0) FROM trades WHERE status = 'completed' GROUP BY 1, 2 ORDER BY 1, 2

-- name: llm_usage
SELECT ticker, mode, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
       coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0), coalesce(sum(cost_usd), 0)
FROM decisions GROUP BY 1, 2 ORDER BY 1, 2

-- name: errors
SELECT ticker, mode, count(*) FROM decisions WHERE error IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
