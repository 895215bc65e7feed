-- tradebot schema, current version. Raw SQL, idempotent (safe to apply twice), PostgreSQL >= 13.
-- `tradebot init-db` applies this file to an empty database and the numbered files in migrations/ to an
-- older one; tests check that both paths give the same schema. Bump the version row with every migration.
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS decisions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at         timestamptz NOT NULL DEFAULT now(),
    ticker             text NOT NULL CHECK (ticker ~ '^[A-Z]{2,5}-[A-Z0-9]{1,15}$'),
    mode               text NOT NULL CHECK (mode IN ('paper', 'live')),
    advisor            text NOT NULL,
    model              text,
    decision           text CHECK (decision IN ('buy', 'sell', 'hold')),
    confidence         numeric CHECK (confidence BETWEEN 0 AND 1),
    fraction           numeric CHECK (fraction BETWEEN 0 AND 1),
    reason             text,
    action             text NOT NULL CHECK (action IN ('buy', 'sell', 'hold')),
    order_krw          numeric CHECK (order_krw > 0),
    order_volume       numeric CHECK (order_volume > 0),
    clamps             jsonb NOT NULL DEFAULT '[]',
    vetoes             jsonb NOT NULL DEFAULT '[]',
    indicators         jsonb,
    position           jsonb,
    filtered           boolean NOT NULL DEFAULT false,
    filter_result      jsonb,
    price              numeric CHECK (price >= 0),
    prompt_hash        text,
    raw_response       text,
    input_tokens       integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens      integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens  integer NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens integer NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cost_usd           numeric NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    latency_ms         integer CHECK (latency_ms >= 0),
    dry_run            boolean NOT NULL DEFAULT false,
    error              text,
    cycle_id           uuid,  -- the run that wrote it (one per cycle, shared by its markets' rows)
    -- acting: the advisor whose decision went to the risk gate; shadow: decided beside it, never traded
    role               text NOT NULL DEFAULT 'acting' CHECK (role IN ('acting', 'shadow')),
    reflection         boolean NOT NULL DEFAULT false  -- the prompt carried the reflection summary
);
CREATE INDEX IF NOT EXISTS decisions_ticker_mode_created_at_idx ON decisions (ticker, mode, created_at);
CREATE INDEX IF NOT EXISTS decisions_cycle_id_idx ON decisions (cycle_id);
CREATE INDEX IF NOT EXISTS decisions_created_at_idx ON decisions (created_at);

-- Each decision's forward return at +1 h, +4 h and +24 h (tradebot.scorecard.score), written once.
CREATE TABLE IF NOT EXISTS decision_scores (
    decision_id    bigint NOT NULL,  -- decisions.id (no foreign key: see tradebot/store/scores.py)
    horizon_h      smallint NOT NULL CHECK (horizon_h > 0),
    price          numeric NOT NULL CHECK (price > 0),  -- the price at the horizon
    forward_return numeric NOT NULL,
    hit            boolean NOT NULL,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (decision_id, horizon_h)
);

CREATE TABLE IF NOT EXISTS trades (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_order_id  text NOT NULL UNIQUE CHECK (length(client_order_id) BETWEEN 8 AND 64),
    trade_id         text UNIQUE,
    symbol           text NOT NULL CHECK (symbol ~ '^[A-Z]{2,5}-[A-Z0-9]{1,15}$'),
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    mode             text NOT NULL CHECK (mode IN ('paper', 'live')),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'completed', 'failed', 'cancelled', 'unknown')),
    price            numeric CHECK (price >= 0),
    amount           numeric CHECK (amount >= 0),
    total            numeric CHECK (total >= 0),
    fee              numeric CHECK (fee >= 0),
    requested_krw    numeric CHECK (requested_krw > 0),
    requested_volume numeric CHECK (requested_volume > 0),
    error            text,
    recovered        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trades_completed_has_fill CHECK (
        status <> 'completed'
        OR (trade_id IS NOT NULL AND price > 0 AND amount > 0 AND total IS NOT NULL AND fee IS NOT NULL)),
    CONSTRAINT trades_failed_has_error CHECK (status <> 'failed' OR error IS NOT NULL),
    -- 'unknown': the outcome could not be established (see migrations/0005); the error says what to do.
    CONSTRAINT trades_unknown_has_error CHECK (status <> 'unknown' OR error IS NOT NULL),
    CONSTRAINT trades_cancelled_unfilled CHECK (status <> 'cancelled' OR (trade_id IS NOT NULL AND coalesce(amount, 0) = 0)),
    CONSTRAINT trades_request_matches_side CHECK (
        recovered
        OR (side = 'buy' AND requested_krw IS NOT NULL)
        OR (side = 'sell' AND requested_volume IS NOT NULL)),
    decision_id      bigint REFERENCES decisions (id)
);

CREATE INDEX IF NOT EXISTS trades_symbol_created_at_idx ON trades (symbol, created_at);
CREATE INDEX IF NOT EXISTS trades_status_idx ON trades (status);
CREATE INDEX IF NOT EXISTS trades_created_at_id_idx ON trades (created_at, id);
CREATE INDEX IF NOT EXISTS trades_decision_id_idx ON trades (decision_id);

-- Small persistent switches (e.g. key 'paused' → {"paused": true, "reason": ..., "at": ...}).
CREATE TABLE IF NOT EXISTS bot_state (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The paper account: its balance is derived from paper trades made after the newest reset.
CREATE TABLE IF NOT EXISTS paper_resets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    starting_krw numeric NOT NULL CHECK (starting_krw >= 0),
    reset_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The hourly candle cache of `tradebot backtest` (completed candles only; an hour without trades has no
-- row). Rows between the oldest and the newest cached candle of a market are complete.
CREATE TABLE IF NOT EXISTS candles (
    market   text NOT NULL CHECK (market ~ '^[A-Z]{2,5}-[A-Z0-9]{1,15}$'),
    interval text NOT NULL CHECK (interval IN ('minute60', 'day')),
    start    timestamptz NOT NULL,
    open     numeric NOT NULL CHECK (open > 0),
    high     numeric NOT NULL CHECK (high > 0),
    low      numeric NOT NULL CHECK (low > 0),
    close    numeric NOT NULL CHECK (close > 0),
    volume   numeric NOT NULL CHECK (volume >= 0),
    value    numeric NOT NULL DEFAULT 0 CHECK (value >= 0),
    PRIMARY KEY (market, interval, start)
);

-- P&L checkpoints, so `tradebot pnl` over a long history replays only new trades.
-- A checkpoint is the P&L accumulator after every completed trade up to (last_created_at, last_id) of one
-- symbol and mode. Any change to a completed trade at or before that point deletes it (trigger below), so
-- a recovered, corrected or late-completed trade can never be missed; the next `pnl` rebuilds it.
CREATE TABLE IF NOT EXISTS pnl_checkpoints (
    symbol          text NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('paper', 'live')),
    last_created_at timestamptz NOT NULL,
    last_id         bigint NOT NULL,
    state           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, mode)
);

CREATE INDEX IF NOT EXISTS trades_completed_ledger_idx ON trades (symbol, mode, created_at, id) WHERE status = 'completed';

-- P&L day snapshots, so `tradebot pnl --since` starts from the day its window begins: the running position
-- after every completed trade created before that UTC day began (written by `pnl`; the trigger below deletes
-- the snapshots of later days when a completed trade changes).
CREATE TABLE IF NOT EXISTS pnl_snapshots (
    symbol text NOT NULL,
    mode   text NOT NULL CHECK (mode IN ('paper', 'live')),
    day    date NOT NULL,
    ledger jsonb NOT NULL,
    PRIMARY KEY (symbol, mode, day)
);

-- P&L day totals, so `tradebot pnl --by day` reads a row per day: that UTC day's realized P&L, fees, buys,
-- sells and volumes (written by `pnl` once a later day's trade is folded; the trigger below deletes the rows
-- of a changed trade's day and of later days).
CREATE TABLE IF NOT EXISTS pnl_days (
    symbol        text NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('paper', 'live')),
    day           date NOT NULL,
    realized_pnl  numeric NOT NULL,
    fees          numeric NOT NULL,
    buys          integer NOT NULL,
    sells         integer NOT NULL,
    bought_volume numeric NOT NULL,
    sold_volume   numeric NOT NULL,
    PRIMARY KEY (symbol, mode, day)
);

CREATE OR REPLACE FUNCTION tradebot_invalidate_pnl_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Serializes with a `pnl` that is building this checkpoint (it holds the same lock while reading
    -- trades and writing the checkpoint), so a trade committed in between is never skipped.
    IF TG_OP <> 'INSERT' AND OLD.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || OLD.symbol || ':' || OLD.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = OLD.symbol AND c.mode = OLD.mode AND (OLD.created_at, OLD.id) <= (c.last_created_at, c.last_id);
        DELETE FROM pnl_snapshots s
        WHERE s.symbol = OLD.symbol AND s.mode = OLD.mode AND s.day > (OLD.created_at AT TIME ZONE 'UTC')::date;
        DELETE FROM pnl_days d
        WHERE d.symbol = OLD.symbol AND d.mode = OLD.mode AND d.day >= (OLD.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'completed' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradebot-pnl:' || NEW.symbol || ':' || NEW.mode, 0));
        DELETE FROM pnl_checkpoints c
        WHERE c.symbol = NEW.symbol AND c.mode = NEW.mode AND (NEW.created_at, NEW.id) <= (c.last_created_at, c.last_id);
        DELETE FROM pnl_snapshots s
        WHERE s.symbol = NEW.symbol AND s.mode = NEW.mode AND s.day > (NEW.created_at AT TIME ZONE 'UTC')::date;
        DELETE FROM pnl_days d
        WHERE d.symbol = NEW.symbol AND d.mode = NEW.mode AND d.day >= (NEW.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS trades_invalidate_pnl_checkpoint ON trades;
CREATE TRIGGER trades_invalidate_pnl_checkpoint AFTER INSERT OR UPDATE OR DELETE ON trades
    FOR EACH ROW EXECUTE FUNCTION tradebot_invalidate_pnl_checkpoint();

-- Day totals of the decisions and of their scores, kept by the triggers below (migrations/0010 says how):
-- horizon 0 holds the decisions (count, tokens, cost), 1/4/24 their scores; decision '' has no answer.
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

-- Telegram control (schema 11): see sql/migrations/0011_telegram.sql.
CREATE TABLE IF NOT EXISTS telegram_updates (
    bot_id      bigint NOT NULL,  -- the bot's user id (the token's public part): offsets are per bot
    update_id   bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,    -- message, callback_query, edited_message, channel_post, ...
    command     text,             -- e.g. '/status' (never the message's text)
    chat_id     bigint,
    user_id     bigint,
    outcome     text NOT NULL CHECK (outcome IN ('done', 'ignored', 'expired', 'refused')),
    reason      text,             -- why ignored, expired or refused
    PRIMARY KEY (bot_id, update_id)
);

CREATE TABLE IF NOT EXISTS telegram_exits (
    id         text PRIMARY KEY,  -- random; the keyboard's callback_data names it
    bot_id     bigint NOT NULL,
    chat_id    bigint NOT NULL,
    asked_by   bigint NOT NULL,
    markets    text[] NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('paper', 'live')),
    asked_at   timestamptz NOT NULL,
    message_id bigint,            -- the message with the keyboard, once sent
    state      text NOT NULL DEFAULT 'asked'
               CHECK (state IN ('asked', 'confirmed', 'cancelled', 'expired', 'done', 'failed')),
    decided_by bigint,
    decided_at timestamptz,
    result     text
);

CREATE TABLE IF NOT EXISTS telegram_outbox (
    id         bigserial PRIMARY KEY,
    bot_id     bigint NOT NULL,
    method     text NOT NULL CHECK (method IN ('sendMessage', 'editMessageText', 'answerCallbackQuery')),
    payload    jsonb NOT NULL,    -- the Bot API request body (never the token: it is in the URL only)
    exit_id    text,              -- a keyboard message: its message_id goes to telegram_exits
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0,
    sent_at    timestamptz,
    error      text               -- the last failure; set with sent_at NULL and attempts at the limit: given up
);
CREATE INDEX IF NOT EXISTS telegram_outbox_unsent_idx ON telegram_outbox (bot_id, id) WHERE sent_at IS NULL;

INSERT INTO schema_version (version, description) VALUES
    (1, 'trades'),
    (2, 'decisions, bot_state, paper_resets'),
    (3, 'candles cache'),
    (4, 'pnl checkpoints'),
    (5, 'trade status unknown'),
    (6, 'pnl day snapshots'),
    (7, 'decision cycle id'),
    (8, 'pnl day totals'),
    (9, 'advisor scorecard'),
    (10, 'decision day totals'),
    (11, 'telegram control')
    ON CONFLICT (version) DO NOTHING;
