-- name: lock
SELECT pg_advisory_xact_lock(%(key)s)

-- name: has_version_table
SELECT to_regclass('schema_version') IS NOT NULL

-- name: current_version
SELECT max(version) FROM schema_version
