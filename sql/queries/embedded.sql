-- The embedded PostgreSQL's role and database (tradebot/localpg.py), run by the superuser over the private
-- socket. The names are fixed: role and database "tradebot" (localpg.BOT_ROLE and localpg.DB_NAME).

-- name: role_exists
SELECT 1 FROM pg_roles WHERE rolname = %(role)s

-- name: create_role
-- A plain login role: it owns the tradebot database and nothing else.
CREATE ROLE tradebot LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS

-- name: harden_role
ALTER ROLE tradebot LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- name: create_database
CREATE DATABASE tradebot OWNER tradebot

-- name: own_database
ALTER DATABASE tradebot OWNER TO tradebot

-- name: revoke_public
REVOKE ALL ON DATABASE tradebot FROM PUBLIC

-- name: own_objects
-- Hand everything in the public schema to the bot's role (a database made by an earlier tradebot, whose
-- bot connected as the superuser, holds tables owned by "postgres"). Sequences owned by a column and
-- indexes follow their table. Safe to repeat: objects already owned by tradebot are skipped.
DO $$
DECLARE
    r record;
BEGIN
    IF (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public') NOT IN ('tradebot', 'pg_database_owner') THEN
        ALTER SCHEMA public OWNER TO tradebot;
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS name
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND c.relowner <> 'tradebot'::regrole
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO tradebot', r.name);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS name
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> 'tradebot'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO tradebot', r.name);
    END LOOP;
END
$$

-- name: role_is_superuser
-- doctor: the bot's own role must not be a superuser.
SELECT rolsuper FROM pg_roles WHERE rolname = current_user
