-- Telegram control: handled updates (exactly once), emergency exits asked and confirmed, the reply outbox.

-- name: next_offset
-- The getUpdates offset: one past the last handled update, and when that update arrived (after a week
-- without updates Telegram may number the next one at random, lower: the poller then asks without offset).
SELECT max(update_id) + 1, max(received_at) FROM telegram_updates WHERE bot_id = %(bot_id)s

-- name: claim_update
-- Mark an update handled; no row back when it already was (another poller, or a run that died after
-- committing but before acknowledging): then it is skipped. Runs in the transaction of the command's effect.
INSERT INTO telegram_updates (bot_id, update_id, kind, command, chat_id, user_id, outcome, reason)
VALUES (%(bot_id)s, %(update_id)s, %(kind)s, %(command)s, %(chat_id)s, %(user_id)s, %(outcome)s, %(reason)s)
ON CONFLICT (bot_id, update_id) DO NOTHING
RETURNING update_id

-- name: queue
INSERT INTO telegram_outbox (bot_id, method, payload, exit_id) VALUES (%(bot_id)s, %(method)s, %(payload)s, %(exit_id)s)

-- name: unsent
-- Replies not delivered yet, oldest first (a reply that failed for good has attempts at the limit).
SELECT id, method, payload, exit_id FROM telegram_outbox
WHERE bot_id = %(bot_id)s AND sent_at IS NULL AND attempts < %(max_attempts)s
ORDER BY id

-- name: sent
UPDATE telegram_outbox SET sent_at = now(), attempts = attempts + 1, error = %(error)s WHERE id = %(id)s

-- name: send_failed
UPDATE telegram_outbox SET attempts = attempts + %(add)s, error = %(error)s WHERE id = %(id)s

-- name: ask_exit
INSERT INTO telegram_exits (id, bot_id, chat_id, asked_by, markets, mode, asked_at)
VALUES (%(id)s, %(bot_id)s, %(chat_id)s, %(asked_by)s, %(markets)s, %(mode)s, %(asked_at)s)

-- name: exit_message
UPDATE telegram_exits SET message_id = %(message_id)s WHERE id = %(id)s

-- name: get_exit
SELECT id, chat_id, asked_by, markets, mode, asked_at, message_id, state, decided_by, decided_at, result
FROM telegram_exits WHERE id = %(id)s AND bot_id = %(bot_id)s

-- name: decide_exit
-- Move an exit from `from_state` to `state` (a double tap finds it moved already: no row back). Row-locked
-- by the UPDATE, so two pollers pressing the same Confirm cannot both win.
UPDATE telegram_exits SET state = %(state)s, decided_by = coalesce(%(by)s, decided_by),
       decided_at = coalesce(%(at)s, decided_at), result = coalesce(%(result)s, result)
WHERE id = %(id)s AND state = %(from_state)s
RETURNING id

-- name: open_exits
-- Exits confirmed but not finished (the poller died, or a cycle held the lock) and exits still asking.
SELECT id, chat_id, asked_by, markets, mode, asked_at, message_id, state, decided_by, decided_at, result
FROM telegram_exits WHERE bot_id = %(bot_id)s AND state IN ('asked', 'confirmed') ORDER BY asked_at

-- name: latest_decisions
-- The last acting decisions of a mode over the given markets, newest first (/decisions).
SELECT created_at, ticker, advisor, decision, confidence, action, coalesce(reason, ''), error
FROM decisions
WHERE mode = %(mode)s AND role = 'acting' AND ticker = ANY(%(tickers)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: exit_orders
-- The orders an exit already placed (its decision rows carry the exit's id as their cycle_id).
SELECT d.ticker, t.status FROM decisions d JOIN trades t ON t.decision_id = d.id WHERE d.cycle_id = %(cycle_id)s
