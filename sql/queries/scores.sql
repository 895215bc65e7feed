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
