-- Schema version 2: the decision log, the trade → decision link, bot state (pause), paper account resets.
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
    error              text
);
CREATE INDEX IF NOT EXISTS decisions_ticker_mode_created_at_idx ON decisions (ticker, mode, created_at);

ALTER TABLE trades ADD COLUMN IF NOT EXISTS decision_id bigint REFERENCES decisions (id);
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

INSERT INTO schema_version (version, description) VALUES (2, 'decisions, bot_state, paper_resets')
    ON CONFLICT (version) DO NOTHING;
