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

-- name: advisor_decisions
-- Every advisor's decisions, acting and shadow (issue 13).
SELECT ticker, mode, advisor, role, count(*) FROM decisions GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4

-- name: advisor_hits_24h
-- Each advisor's decisions of the last 30 days scored at +24 h, and how many were right.
SELECT d.ticker, d.mode, d.advisor, count(*), count(*) FILTER (WHERE s.hit)
FROM decisions d JOIN decision_scores s ON s.decision_id = d.id AND s.horizon_h = 24
WHERE d.created_at >= now() - interval '30 days'
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3

-- name: llm_spend_now
-- The model's bill today and this month (UTC, every market and mode: one bill).
SELECT coalesce(sum(cost_usd) FILTER (WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0),
       coalesce(sum(cost_usd), 0)
FROM decisions
WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'

-- name: budget_fallbacks_today
-- Today's acting decisions (UTC) the rules made because the model budget would have been passed.
SELECT ticker, mode, count(*)
FROM decisions
WHERE role = 'acting' AND reason LIKE 'model budget:%'
  AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY 1, 2 ORDER BY 1, 2

-- name: telegram_ignored
-- Telegram updates the poller ignored (a stranger, an edited or forwarded message, a foreign keyboard), by why.
SELECT coalesce(reason, ''), count(*) FROM telegram_updates WHERE outcome = 'ignored' GROUP BY 1 ORDER BY 1

-- name: telegram_commands
-- Commands from the owner's chat by command and outcome (done, expired, refused).
SELECT coalesce(command, ''), outcome, count(*) FROM telegram_updates WHERE outcome <> 'ignored' GROUP BY 1, 2 ORDER BY 1, 2
