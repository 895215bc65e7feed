-- name: lock
SELECT pg_advisory_xact_lock(%(key)s)

-- name: has_version_table
SELECT to_regclass('schema_version') IS NOT NULL

-- name: current_version
SELECT max(version) FROM schema_version

-- name: session_utc
-- Every timestamp tradebot reads back is UTC, whatever the server default or PGTZ (a startup parameter
-- that would override a startup option) say.
SET TIME ZONE 'UTC'
