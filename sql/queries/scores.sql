-- Named statements of the advisor scorecard (tradebot.store.scores; the definition: tradebot.scorecard.score).

-- name: scorable
-- Every (decision, horizon) not scored yet whose horizon hour is inside the cached hourly candles of its market:
-- the reference price, the price at the horizon (the close of the last candle that ended at or before the top of
-- the hour at or before created_at + horizon) and whether the position was flat (worth less than min_order).
-- Only decisions created at or after `since` (NULL: all) and of `markets` (NULL: all) are looked at.
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
           AND NOT EXISTS (SELECT 1 FROM decision_scores s WHERE s.decision_id = d.id AND s.horizon_h = h.h))
SELECT w.id, w.h, w.decision, w.price, c.close, w.flat
FROM wanted w
JOIN cached r ON r.market = w.ticker AND w.ends - interval '1 hour' BETWEEN r.oldest AND r.newest
CROSS JOIN LATERAL (SELECT close FROM candles
                    WHERE market = w.ticker AND interval = 'minute60' AND start < w.ends
                    ORDER BY start DESC LIMIT 1) c
ORDER BY w.id, w.h

-- name: waiting
-- How many (decision, horizon) pairs could still be scored (a price and an answer) but are not yet.
SELECT count(*)
FROM decisions d CROSS JOIN (SELECT unnest(%(horizons)s::int[]) AS h) h
WHERE d.price > 0 AND d.decision IS NOT NULL
  AND (%(markets)s::text[] IS NULL OR d.ticker = ANY (%(markets)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM decision_scores s WHERE s.decision_id = d.id AND s.horizon_h = h.h)

-- name: save
-- Scores are written once: a rescore of the same (decision, horizon) changes nothing.
INSERT INTO decision_scores (decision_id, horizon_h, price, forward_return, hit)
SELECT * FROM unnest(%(ids)s::bigint[], %(horizons)s::smallint[], %(prices)s::numeric[], %(returns)s::numeric[],
                     %(hits)s::boolean[])
ON CONFLICT (decision_id, horizon_h) DO NOTHING

-- name: report_counts
-- Per market, advisor and reflection setting: decisions by kind, tokens, cost and the period they cover, of
-- the decisions of `mode` with created_at in [since, until) (NULL: unbounded), of `markets` (NULL: all).
-- The pseudo-advisor 'acting' is the bot's own decisions, whichever advisor made them (its bill included).
WITH d AS (
    SELECT ticker, advisor, reflection, role, decision, input_tokens, output_tokens, cache_read_tokens,
           cache_write_tokens, cost_usd, created_at
    FROM decisions
    WHERE mode = %(mode)s
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
      AND (%(markets)s::text[] IS NULL OR ticker = ANY (%(markets)s::text[]))),
   tagged AS (
    SELECT * FROM d
    UNION ALL
    SELECT ticker, 'acting', reflection, role, decision, input_tokens, output_tokens, cache_read_tokens,
           cache_write_tokens, cost_usd, created_at FROM d WHERE role = 'acting')
SELECT ticker, advisor, reflection,
       count(*) FILTER (WHERE decision = 'buy'), count(*) FILTER (WHERE decision = 'sell'),
       count(*) FILTER (WHERE decision = 'hold'), count(*) FILTER (WHERE decision IS NULL),
       sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd),
       min(created_at), max(created_at)
FROM tagged
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3

-- name: report_hits
-- Per market, advisor, reflection setting, horizon and decision kind: scored decisions, hits, and the mean
-- forward return, over the same decisions as report_counts ('acting' included).
WITH d AS (
    SELECT id, ticker, advisor, reflection, decision, role FROM decisions
    WHERE mode = %(mode)s AND decision IS NOT NULL
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
      AND (%(markets)s::text[] IS NULL OR ticker = ANY (%(markets)s::text[]))),
   tagged AS (
    SELECT id, ticker, advisor, reflection, decision FROM d
    UNION ALL
    SELECT id, ticker, 'acting', reflection, decision FROM d WHERE role = 'acting')
SELECT t.ticker, t.advisor, t.reflection, s.horizon_h, t.decision, count(*), count(*) FILTER (WHERE s.hit),
       avg(s.forward_return)
FROM tagged t JOIN decision_scores s ON s.decision_id = t.id
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5

-- name: report_trades
-- The buy and sell decisions the counterfactual ledgers follow, oldest first (the same decisions as
-- report_counts): market, advisor ('acting' for the bot's own), reflection, time, decision, confidence, fraction.
WITH d AS (
    SELECT ticker, advisor, reflection, role, created_at, id, decision, confidence, fraction FROM decisions
    WHERE mode = %(mode)s AND decision IN ('buy', 'sell') AND confidence IS NOT NULL AND fraction > 0
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
      AND (%(markets)s::text[] IS NULL OR ticker = ANY (%(markets)s::text[])))
SELECT ticker, advisor, reflection, created_at, decision, confidence, fraction FROM d
UNION ALL
SELECT ticker, 'acting', reflection, created_at, decision, confidence, fraction FROM d WHERE role = 'acting'
ORDER BY 1, 2, 3, 4

-- name: report_start
-- Per market: the account's equity at its first acting decision in the window (every ledger starts from it).
SELECT DISTINCT ON (ticker) ticker, (position ->> 'equity')::numeric
FROM decisions
WHERE mode = %(mode)s AND role = 'acting' AND position IS NOT NULL
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
  AND (%(markets)s::text[] IS NULL OR ticker = ANY (%(markets)s::text[]))
ORDER BY ticker, created_at, id
