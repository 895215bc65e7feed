-- name: insert
INSERT INTO decisions (ticker, mode, advisor, model, decision, confidence, fraction, reason, action, order_krw,
                       order_volume, clamps, vetoes, indicators, position, filtered, filter_result, price,
                       prompt_hash, raw_response, input_tokens, output_tokens, cache_read_tokens,
                       cache_write_tokens, cost_usd, latency_ms, dry_run, error, cycle_id, role, reflection)
VALUES (%(ticker)s, %(mode)s, %(advisor)s, %(model)s, %(decision)s, %(confidence)s, %(fraction)s, %(reason)s,
        %(action)s, %(order_krw)s, %(order_volume)s, %(clamps)s, %(vetoes)s, %(indicators)s, %(position)s,
        %(filtered)s, %(filter_result)s, %(price)s, %(prompt_hash)s, %(raw_response)s, %(input_tokens)s,
        %(output_tokens)s, %(cache_read_tokens)s, %(cache_write_tokens)s, %(cost_usd)s, %(latency_ms)s,
        %(dry_run)s, %(error)s, %(cycle_id)s, %(role)s, %(reflection)s)
RETURNING id

-- name: set_error
UPDATE decisions SET error = %(error)s WHERE id = %(id)s

-- name: recent
-- The last acting decisions of a ticker and mode (shadow rows never traded), newest first: the columns of every decision read back (see
-- tradebot.store.decisions.read_decision), the last one whether an order placed for it completed.
SELECT d.id, d.created_at, d.advisor, d.decision, d.confidence, d.fraction, d.action, d.order_krw, d.order_volume,
       d.price, d.position, d.indicators, d.filtered, d.vetoes, d.error, d.dry_run,
       EXISTS (SELECT 1 FROM trades t WHERE t.decision_id = d.id AND t.status = 'completed')
FROM decisions d
WHERE d.ticker = %(ticker)s AND d.mode = %(mode)s AND d.role = 'acting'
ORDER BY d.created_at DESC, d.id DESC
LIMIT %(limit)s

-- name: between
-- The acting decisions of one market and mode with created_at in [since, until) (NULL: unbounded), oldest first;
-- the same columns as recent.
SELECT d.id, d.created_at, d.advisor, d.decision, d.confidence, d.fraction, d.action, d.order_krw, d.order_volume,
       d.price, d.position, d.indicators, d.filtered, d.vetoes, d.error, d.dry_run,
       EXISTS (SELECT 1 FROM trades t WHERE t.decision_id = d.id AND t.status = 'completed')
FROM decisions d
WHERE d.ticker = %(ticker)s AND d.mode = %(mode)s AND d.role = 'acting'
  AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR d.created_at < %(until)s::timestamptz)
ORDER BY d.created_at, d.id

-- name: llm_spend
-- The model's bill so far today and this month (UTC), every market and mode: (today USD, month USD).
SELECT coalesce(sum(cost_usd) FILTER (WHERE created_at >= %(day)s), 0), coalesce(sum(cost_usd), 0)
FROM decisions
WHERE created_at >= %(month)s

-- name: scored_recent
-- The acting advisor's own last decisions of a market and mode that have a score (reflection), newest first:
-- each with its longest horizon scored so far.
SELECT d.created_at, d.decision, d.price, s.horizon_h, s.forward_return, s.hit
FROM decisions d
CROSS JOIN LATERAL (SELECT horizon_h, forward_return, hit FROM decision_scores
                    WHERE decision_id = d.id ORDER BY horizon_h DESC LIMIT 1) s
WHERE d.ticker = %(ticker)s AND d.mode = %(mode)s AND d.role = 'acting' AND d.advisor = %(advisor)s
  AND d.decision IS NOT NULL
ORDER BY d.created_at DESC, d.id DESC
LIMIT %(limit)s

-- name: spend_between
-- The model's bill for decisions made in [since, until) (every market and mode).
SELECT coalesce(sum(cost_usd), 0) FROM decisions WHERE created_at >= %(since)s AND created_at < %(until)s
