-- Named statements of the advisor scorecard (tradebot.store.scores; the definition: tradebot.scorecard.score).

-- name: scorable
-- Every (decision, horizon) not scored yet whose horizon hour is inside the cached hourly candles of its market:
-- the reference price, the price at the horizon (the close of the last candle that ended at or before the top of
-- the hour at or before created_at + horizon) and whether the position was flat (worth less than min_order).
-- Only decisions created at or after `since` (NULL: all) and of `markets` (NULL: all) are looked at; at most
-- `limit` rows of decisions from id `after` on, by id (the caller scores in batches, each from the last id of the
-- one before: a long history never has to fit in memory at once, and no pass reads what the last one scored).
WITH horizons AS (SELECT unnest(%(horizons)s::int[]) AS h),
     cached AS (SELECT market, min(start) AS oldest, max(start) AS newest
                FROM candles WHERE interval = 'minute60' GROUP BY market),
     wanted AS (
         SELECT d.id, d.ticker, d.decision, d.price, h.h,
                coalesce((d.position ->> 'coin_volume')::numeric, 0) * d.price < %(min_order)s AS flat,
                date_trunc('hour', (d.created_at + make_interval(hours => h.h)) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS ends
         FROM decisions d CROSS JOIN horizons h
         WHERE d.price > 0 AND d.decision IS NOT NULL
           AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
           AND (%(markets)s::text[] IS NULL OR d.ticker = ANY (%(markets)s::text[]))
           AND d.id >= %(after)s
           AND NOT EXISTS (SELECT 1 FROM decision_scores s WHERE s.decision_id = d.id AND s.horizon_h = h.h))
-- The candle that ended at the horizon is joined by equality (one hash join); only an hour without trades
-- looks back for the candle before it (COALESCE evaluates that subquery for those rows alone).
SELECT w.id, w.h, w.decision, w.price,
       coalesce(c.close, (SELECT b.close FROM candles b
                          WHERE b.market = w.ticker AND b.interval = 'minute60' AND b.start < w.ends
                          ORDER BY b.start DESC LIMIT 1)),
       w.flat
FROM wanted w
JOIN cached r ON r.market = w.ticker AND w.ends - interval '1 hour' BETWEEN r.oldest AND r.newest
LEFT JOIN candles c ON c.market = w.ticker AND c.interval = 'minute60' AND c.start = w.ends - interval '1 hour'
ORDER BY w.id
LIMIT %(limit)s

-- name: waiting
-- How many (decision, horizon) pairs could still be scored (a price and an answer) but are not yet.
SELECT count(*)
FROM decisions d CROSS JOIN (SELECT unnest(%(horizons)s::int[]) AS h) h
WHERE d.price > 0 AND d.decision IS NOT NULL
  AND (%(markets)s::text[] IS NULL OR d.ticker = ANY (%(markets)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM decision_scores s WHERE s.decision_id = d.id AND s.horizon_h = h.h)

-- name: new_scores
-- The scores of one pass, loaded with COPY before they are merged (dropped with the transaction).
CREATE TEMP TABLE new_scores (decision_id bigint, horizon_h smallint, price numeric, forward_return numeric,
                              hit boolean) ON COMMIT DROP

-- name: copy_scores
COPY new_scores (decision_id, horizon_h, price, forward_return, hit) FROM STDIN

-- name: save
-- Scores are written once: a rescore of the same (decision, horizon) changes nothing.
INSERT INTO decision_scores (decision_id, horizon_h, price, forward_return, hit)
SELECT decision_id, horizon_h, price, forward_return, hit FROM new_scores
ON CONFLICT (decision_id, horizon_h) DO NOTHING

-- name: report_days
-- The day totals of the window [since, until) (whole UTC days) of `mode` and `markets` (NULL: all): per market,
-- advisor, role, reflection setting, decision kind ('' = no answer) and horizon (0 = the decisions themselves).
SELECT ticker, advisor, role, reflection, decision, horizon_h, sum(n), sum(hits), sum(return_sum),
       sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd)
FROM decision_days
WHERE mode = %(mode)s
  AND (%(since)s::timestamptz IS NULL OR day >= (%(since)s::timestamptz AT TIME ZONE 'UTC')::date)
  AND (%(until)s::timestamptz IS NULL OR day < (%(until)s::timestamptz AT TIME ZONE 'UTC')::date)
  AND (%(markets)s::text[] IS NULL OR ticker = ANY (%(markets)s::text[]))
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(n) <> 0

-- name: report_span
-- The first and last decision of each market in the window (the decisions index: two probes a market).
SELECT m.ticker,
       (SELECT min(created_at) FROM decisions d WHERE d.ticker = m.ticker AND d.mode = %(mode)s
          AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
          AND (%(until)s::timestamptz IS NULL OR d.created_at < %(until)s::timestamptz)),
       (SELECT max(created_at) FROM decisions d WHERE d.ticker = m.ticker AND d.mode = %(mode)s
          AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
          AND (%(until)s::timestamptz IS NULL OR d.created_at < %(until)s::timestamptz))
FROM unnest(%(markets)s::text[]) AS m (ticker)

-- name: report_trades
-- The buy and sell decisions the counterfactual ledgers follow: one row per market, advisor, role and
-- reflection setting, its decisions in one value of five float8 each in
-- PostgreSQL's binary form — the time (unix seconds), the id, +1 buy or -1 sell, the confidence, the fraction —
-- in no particular order (the reader sorts by time and id: one sort instead of one per group here). One value a
-- group rather than a row a decision: a year of 5 markets is 61,000 buys and sells, 0.1 s as Python rows.
SELECT ticker, advisor, role, reflection,
       string_agg(float8send(date_part('epoch', created_at)) || float8send(id::float8)
                  || float8send(CASE decision WHEN 'buy' THEN 1.0 ELSE -1.0 END::float8)
                  || float8send(confidence::float8) || float8send(fraction::float8), ''::bytea)
FROM decisions
WHERE mode = %(mode)s AND decision IN ('buy', 'sell') AND confidence IS NOT NULL AND fraction > 0
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
  AND (%(markets)s::text[] IS NULL OR ticker = ANY (%(markets)s::text[]))
GROUP BY 1, 2, 3, 4

-- name: report_start
-- Per market: the account's equity at its first acting decision in the window (every ledger starts from it).
SELECT m.ticker,
       (SELECT (d.position ->> 'equity')::numeric FROM decisions d
        WHERE d.ticker = m.ticker AND d.mode = %(mode)s AND d.role = 'acting' AND d.position IS NOT NULL
          AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
          AND (%(until)s::timestamptz IS NULL OR d.created_at < %(until)s::timestamptz)
        ORDER BY d.created_at, d.id LIMIT 1)
FROM unnest(%(markets)s::text[]) AS m (ticker)
