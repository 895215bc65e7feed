-- Bot state (pause, the last run's metrics) and the per-market cycle lock.

-- name: get_state
SELECT value FROM bot_state WHERE key = %(key)s

-- name: set_state
INSERT INTO bot_state (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()

-- name: pauses
-- The pause switches among these keys ('paused' for every market, 'paused:<market>' for one).
SELECT value FROM bot_state WHERE key = ANY(%(keys)s)

-- name: lift_market_pauses
-- Resuming every market lifts each market's own pause too.
UPDATE bot_state SET value = %(value)s, updated_at = now() WHERE key LIKE 'paused:%%'

-- name: try_cycle_lock
-- One cycle per market and mode: a session-level advisory lock, released when the connection closes.
SELECT pg_try_advisory_lock(hashtextextended(%(name)s, 0))

-- name: set_lock_timeout
-- How long the next lock may be waited for (milliseconds; this session).
SELECT set_config('lock_timeout', %(ms)s::text, false)

-- name: reset_lock_timeout
SELECT set_config('lock_timeout', '0', false)

-- name: account_lock
-- One run at a time per account and mode (whatever its markets): a session-level advisory lock, waited for.
SELECT pg_advisory_lock(hashtextextended(%(name)s, 0))

-- name: claim_day
-- Claim `key` for `day` (an ISO date): a row comes back only for the first claim of that day, however many runs
-- race for it (the daily budget alert, the daily digest).
INSERT INTO bot_state (key, value) VALUES (%(key)s, jsonb_build_object('day', %(day)s::text))
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
WHERE bot_state.value ->> 'day' IS DISTINCT FROM EXCLUDED.value ->> 'day'
RETURNING key

-- name: unclaim_day
-- Give a claim back (what it was for could not be done): the next run claims the day again.
DELETE FROM bot_state WHERE key = %(key)s AND value ->> 'day' = %(day)s::text
