-- Schema version 10: day totals of the decisions and of their scores (issue 13), so that `tradebot advisors
-- report` reads one row per day, market, advisor, role, reflection setting, decision kind and horizon instead of
-- every decision and score. Horizon 0 holds the decisions themselves (count, tokens, cost), horizons 1, 4 and 24
-- their scores (count, hits, sum of forward returns). Kept by triggers as rows are written: a decision inserted,
-- changed or deleted moves its own and its scores' share; scores add theirs, one statement at a time (only the
-- rows really inserted: a rescore adds nothing). Decision kind '' is a decision without an answer.
CREATE TABLE IF NOT EXISTS decision_days (
    day                date NOT NULL,
    ticker             text NOT NULL,
    mode               text NOT NULL,
    advisor            text NOT NULL,
    role               text NOT NULL,
    reflection         boolean NOT NULL,
    decision           text NOT NULL,
    horizon_h          smallint NOT NULL,
    n                  bigint NOT NULL,
    hits               bigint NOT NULL,
    return_sum         numeric NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NOT NULL,
    PRIMARY KEY (mode, day, ticker, advisor, role, reflection, decision, horizon_h)
);

CREATE OR REPLACE FUNCTION tradebot_decision_days_add(r decisions, sign integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO decision_days AS x
    VALUES ((r.created_at AT TIME ZONE 'UTC')::date, r.ticker, r.mode, r.advisor, r.role, r.reflection,
            coalesce(r.decision, ''), 0, sign, 0, 0, sign * r.input_tokens, sign * r.output_tokens,
            sign * r.cache_read_tokens, sign * r.cache_write_tokens, sign * r.cost_usd)
    ON CONFLICT (mode, day, ticker, advisor, role, reflection, decision, horizon_h) DO UPDATE
    SET n = x.n + EXCLUDED.n, input_tokens = x.input_tokens + EXCLUDED.input_tokens,
        output_tokens = x.output_tokens + EXCLUDED.output_tokens,
        cache_read_tokens = x.cache_read_tokens + EXCLUDED.cache_read_tokens,
        cache_write_tokens = x.cache_write_tokens + EXCLUDED.cache_write_tokens,
        cost_usd = x.cost_usd + EXCLUDED.cost_usd;
    INSERT INTO decision_days AS x
    SELECT (r.created_at AT TIME ZONE 'UTC')::date, r.ticker, r.mode, r.advisor, r.role, r.reflection,
           coalesce(r.decision, ''), s.horizon_h, sign * count(*), sign * count(*) FILTER (WHERE s.hit),
           sign * sum(s.forward_return), 0, 0, 0, 0, 0
    FROM decision_scores s WHERE s.decision_id = r.id GROUP BY s.horizon_h ORDER BY s.horizon_h
    ON CONFLICT (mode, day, ticker, advisor, role, reflection, decision, horizon_h) DO UPDATE
    SET n = x.n + EXCLUDED.n, hits = x.hits + EXCLUDED.hits, return_sum = x.return_sum + EXCLUDED.return_sum;
END
$$;

CREATE OR REPLACE FUNCTION tradebot_decision_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM tradebot_decision_days_add(OLD, -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM tradebot_decision_days_add(NEW, 1);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS decisions_days ON decisions;
CREATE TRIGGER decisions_days
    AFTER INSERT OR DELETE OR UPDATE OF created_at, ticker, mode, advisor, role, reflection, decision, input_tokens,
                                        output_tokens, cache_read_tokens, cache_write_tokens, cost_usd
    ON decisions FOR EACH ROW EXECUTE FUNCTION tradebot_decision_days();

CREATE OR REPLACE FUNCTION tradebot_score_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- In key order, so that two scoring passes at once take their row locks in the same order.
    INSERT INTO decision_days AS x
    SELECT (d.created_at AT TIME ZONE 'UTC')::date AS day, d.ticker, d.mode, d.advisor, d.role, d.reflection,
           coalesce(d.decision, '') AS decision, s.horizon_h, count(*), count(*) FILTER (WHERE s.hit),
           sum(s.forward_return), 0, 0, 0, 0, 0
    FROM inserted_scores s JOIN decisions d ON d.id = s.decision_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ORDER BY d.mode, 1, 2, 4, 5, 6, 7, 8
    ON CONFLICT (mode, day, ticker, advisor, role, reflection, decision, horizon_h) DO UPDATE
    SET n = x.n + EXCLUDED.n, hits = x.hits + EXCLUDED.hits, return_sum = x.return_sum + EXCLUDED.return_sum;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS decision_scores_days ON decision_scores;
CREATE TRIGGER decision_scores_days AFTER INSERT ON decision_scores REFERENCING NEW TABLE AS inserted_scores
    FOR EACH STATEMENT EXECUTE FUNCTION tradebot_score_days();

CREATE OR REPLACE FUNCTION tradebot_score_days_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Scores deleted by hand (the bot never deletes one): their share leaves the totals of their decision.
    INSERT INTO decision_days AS x
    SELECT (d.created_at AT TIME ZONE 'UTC')::date AS day, d.ticker, d.mode, d.advisor, d.role, d.reflection,
           coalesce(d.decision, '') AS decision, s.horizon_h, -count(*), -count(*) FILTER (WHERE s.hit),
           -sum(s.forward_return), 0, 0, 0, 0, 0
    FROM removed_scores s JOIN decisions d ON d.id = s.decision_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ORDER BY d.mode, 1, 2, 4, 5, 6, 7, 8
    ON CONFLICT (mode, day, ticker, advisor, role, reflection, decision, horizon_h) DO UPDATE
    SET n = x.n + EXCLUDED.n, hits = x.hits + EXCLUDED.hits, return_sum = x.return_sum + EXCLUDED.return_sum;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS decision_scores_days_removed ON decision_scores;
CREATE TRIGGER decision_scores_days_removed AFTER DELETE ON decision_scores REFERENCING OLD TABLE AS removed_scores
    FOR EACH STATEMENT EXECUTE FUNCTION tradebot_score_days_removed();

-- What was written before the triggers existed.
DELETE FROM decision_days;
INSERT INTO decision_days
SELECT (created_at AT TIME ZONE 'UTC')::date, ticker, mode, advisor, role, reflection, coalesce(decision, ''), 0,
       count(*), 0, 0, sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
       sum(cost_usd)
FROM decisions GROUP BY 1, 2, 3, 4, 5, 6, 7;
INSERT INTO decision_days
SELECT (d.created_at AT TIME ZONE 'UTC')::date, d.ticker, d.mode, d.advisor, d.role, d.reflection,
       coalesce(d.decision, ''), s.horizon_h, count(*), count(*) FILTER (WHERE s.hit), sum(s.forward_return),
       0, 0, 0, 0, 0
FROM decision_scores s JOIN decisions d ON d.id = s.decision_id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

INSERT INTO schema_version (version, description) VALUES (10, 'decision day totals') ON CONFLICT (version) DO NOTHING;
