-- Schema version 11: Telegram control (issue 14). Every update the poller received is one row of
-- telegram_updates, written in the same transaction as the command's own effect (a pause, an exit asked or
-- confirmed) and its replies (telegram_outbox): an update is handled exactly once, and the next getUpdates
-- offset is the largest handled update_id + 1. An emergency exit is asked first (telegram_exits, state
-- 'asked') and acts only on a Confirm pressed within 60 seconds ('confirmed', then 'done' or 'failed').
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

INSERT INTO schema_version (version, description) VALUES (11, 'telegram control') ON CONFLICT (version) DO NOTHING;
