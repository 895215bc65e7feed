-- Schema version 1: the trades table. Kept as it was released so tests can prove that a database
-- created at version 1 and upgraded by the later migrations equals a fresh sql/schema.sql.
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS trades (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_order_id  text NOT NULL UNIQUE CHECK (length(client_order_id) BETWEEN 8 AND 64),
    trade_id         text UNIQUE,
    symbol           text NOT NULL CHECK (symbol ~ '^[A-Z]{2,5}-[A-Z0-9]{1,15}$'),
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    mode             text NOT NULL CHECK (mode IN ('paper', 'live')),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'completed', 'failed', 'cancelled')),
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
    CONSTRAINT trades_cancelled_unfilled CHECK (status <> 'cancelled' OR (trade_id IS NOT NULL AND coalesce(amount, 0) = 0)),
    CONSTRAINT trades_request_matches_side CHECK (
        recovered
        OR (side = 'buy' AND requested_krw IS NOT NULL)
        OR (side = 'sell' AND requested_volume IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS trades_symbol_created_at_idx ON trades (symbol, created_at);
CREATE INDEX IF NOT EXISTS trades_status_idx ON trades (status);
CREATE INDEX IF NOT EXISTS trades_created_at_id_idx ON trades (created_at, id);

INSERT INTO schema_version (version, description) VALUES (1, 'trades') ON CONFLICT (version) DO NOTHING;
