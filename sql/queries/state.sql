-- Bot state (pause, the last run's metrics) and the per-market cycle lock.

-- name: get_state
SELECT value FROM bot_state WHERE key = %(key)s

-- name: set_state
INSERT INTO bot_state (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()

-- name: try_cycle_lock
-- One cycle per market and mode: a session-level advisory lock, released when the connection closes.
SELECT pg_try_advisory_lock(hashtextextended(%(name)s, 0))
