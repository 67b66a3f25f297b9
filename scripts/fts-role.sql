-- The PostgreSQL role of the Serverless FTS prober and workflows: no superuser.
--
-- Requires PostgreSQL 15 or later (GRANT ALTER SYSTEM ON PARAMETER, role pg_checkpoint).
-- Run it with psql as a superuser (gpadmin, postgres), in database `postgres` (the
-- database the Lambdas connect to: function grants and the two tables are per
-- database), on the coordinator and on every primary. Mirrors and the standby get the
-- role, its grants and the tables from their primary by replication; on an instance in
-- recovery the script does nothing and says so. Idempotent: run it again after a
-- failover, after adding segments, or to rotate the password.
--
--   psql -X -d postgres -v fts_role=fts_control -f scripts/fts-role.sql
--   read -rs FTS_ROLE_PASSWORD && export FTS_ROLE_PASSWORD   # sets / rotates the password
--
-- psql variables:
--   fts_role      the role to create or update; default fts_control. It must not be a
--                 superuser (the script refuses rather than demote one).
--   fts_password  its password (the Lambdas' secret); default: the environment variable
--                 FTS_ROLE_PASSWORD; neither: the password is left as it is (local mode
--                 trusts loopback). Prefer the environment variable: a -v value shows in
--                 `ps`. A SCRAM verifier ('SCRAM-SHA-256$...') is stored as given.
--
-- What the role gets, and why (lambdas/adapters/postgres/{probe,control}.ts):
--   LOGIN                          it connects (password from the secret in AWS).
--   REPLICATION                    pg_create_physical_replication_slot and
--                                  pg_drop_replication_slot (ensureSlot, dropSlot before
--                                  and after a mirror rebuild): PostgreSQL allows them to
--                                  superusers and REPLICATION roles only. It also allows a
--                                  walsender session: do not give the role a
--                                  `replication` line in pg_hba.conf.
--   pg_read_all_stats              pg_stat_replication (the mirror's walsender state,
--                                  sync state, LSNs), pg_stat_wal_receiver (a mirror's
--                                  receiver status and when it last heard from its
--                                  primary) and pg_stat_activity (the checkpointer's
--                                  start and wait event): without it these columns are
--                                  NULL and a streaming mirror would look absent.
--   pg_checkpoint                  CHECKPOINT before a planned stop.
--   EXECUTE pg_stat_file(text)     the probe's check of base, global and pg_wal
--                                  (revoked from PUBLIC by default).
--   EXECUTE pg_promote(bool, int)  promotion of a mirror (revoked from PUBLIC).
--   EXECUTE pg_reload_conf()       makes a sync rep change take effect (revoked from PUBLIC).
--   ALTER SYSTEM ON PARAMETER synchronous_standby_names
--                                  sync rep on/off (after a mirror is marked down, on a
--                                  promoted mirror, after a recovery); no other parameter.
--   SELECT, INSERT, UPDATE on public.fts_heartbeat        the probe's write check (upsert).
--   SELECT, INSERT, DELETE on public.fts_write_check,
--   USAGE on its sequence                                  verifyWritable after a promotion.
-- Everything else the adapters run is allowed to any role: pg_control_system(),
-- current_setting('fts.dbid'), pg_settings, pg_is_in_recovery(), the WAL LSN functions,
-- pg_postmaster_start_time(), pg_replication_slots, and pg_cancel_backend() of the role's
-- own session (verifyWritable cancels its own commit stuck waiting for a synchronous
-- standby: same role, so pg_signal_backend is not needed). Nothing needs superuser: no
-- COPY ... FROM PROGRAM, no file access outside pg_stat_file of the data directory.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

\if :{?fts_role}
\else
  \set fts_role fts_control
\endif
\if :{?fts_password}
\else
  \getenv fts_password FTS_ROLE_PASSWORD
\endif

SELECT current_setting('server_version_num')::int < 150000 AS fts_too_old,
       pg_is_in_recovery() AS fts_in_recovery,
       current_database() <> 'postgres' AS fts_wrong_database,
       NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS fts_not_superuser,
       COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = :'fts_role'), false) AS fts_role_is_superuser
\gset

\if :fts_too_old
  DO $$BEGIN RAISE EXCEPTION 'fts-role.sql needs PostgreSQL 15 or later (GRANT ALTER SYSTEM ON PARAMETER, pg_checkpoint)'; END$$;
\endif
\if :fts_in_recovery
  \echo 'fts-role.sql: this instance is in recovery (a mirror or a standby): it gets the role from its primary; nothing done'
  \quit
\endif
\if :fts_wrong_database
  DO $$BEGIN RAISE EXCEPTION 'fts-role.sql must run in database postgres, the database the prober and the workflows connect to'; END$$;
\endif
\if :fts_not_superuser
  DO $$BEGIN RAISE EXCEPTION 'fts-role.sql must run as a superuser (it creates a role and grants predefined roles and ALTER SYSTEM)'; END$$;
\endif
\if :fts_role_is_superuser
  SELECT format('DO %L', format('BEGIN RAISE EXCEPTION USING MESSAGE = %L; END',
         format('role %I is a superuser: fts-role.sql makes a role without superuser and will not demote one; choose another name with -v fts_role=...', :'fts_role'))) \gexec
\endif

BEGIN;

SELECT format('CREATE ROLE %I', :'fts_role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'fts_role') \gexec
ALTER ROLE :"fts_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT REPLICATION;

GRANT CONNECT ON DATABASE postgres TO :"fts_role";
GRANT pg_read_all_stats TO :"fts_role";
GRANT pg_checkpoint TO :"fts_role";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text) TO :"fts_role";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_promote(boolean, integer) TO :"fts_role";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO :"fts_role";
GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names TO :"fts_role";

-- The tables the adapters write, owned by the superuser running this script (the role
-- cannot create tables: PostgreSQL 15 revokes CREATE on schema public from PUBLIC).
CREATE TABLE IF NOT EXISTS public.fts_heartbeat (dbid int PRIMARY KEY, at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS public.fts_write_check (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
GRANT SELECT, INSERT, UPDATE ON public.fts_heartbeat TO :"fts_role";
GRANT SELECT, INSERT, DELETE ON public.fts_write_check TO :"fts_role";
SELECT format('GRANT USAGE ON SEQUENCE %s TO %I', pg_get_serial_sequence('public.fts_write_check', 'id'), :'fts_role') \gexec

COMMIT;

\if :{?fts_password}
  -- Keep the password out of the server log and of pg_stat_statements.
  SET log_statement = 'none';
  SET log_min_duration_statement = -1;
  SET log_min_error_statement = panic;
  SET pg_stat_statements.track_utility = off;
  ALTER ROLE :"fts_role" PASSWORD :'fts_password';
  \unset fts_password
  \echo 'fts-role.sql: role' :"fts_role" 'is ready (password set)'
\else
  \echo 'fts-role.sql: role' :"fts_role" 'is ready (password unchanged)'
\endif
