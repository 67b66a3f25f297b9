/**
 * SegmentProbe over PostgreSQL: Greenplum's FTS probe message, as one TCP connection per
 * attempt and one query for what is read. The query reports the instance's identity
 * (`fts.dbid`, `fts.content`, system identifier), whether it is in recovery, its
 * mirror's walsender (state, sync state, sent/write/flush/replay LSNs, replay lag), on a
 * standby its own WAL receiver (status, received LSN, seconds since it last heard from
 * its primary by its own clock), whether sync rep is on, its WAL
 * position, a check of the critical directories (`base`, `global`, `pg_wal`), when the
 * postmaster started and when it last (re)initialized (the checkpointer's start, which
 * moves at every crash reset), and `wal_sender_timeout`.
 *
 * With `writeCheck` (acting primaries), the same attempt then commits a heartbeat row in
 * `fts_heartbeat` (database `postgres`, created on first use) with
 * `synchronous_commit = local`, so it proves the local disk takes and flushes a write
 * without ever waiting for a mirror; Greenplum's FTS writes a block for the same reason.
 * A standby is never written. A write that fails or does not finish within the probe
 * timeout (while the read answered) is kind `disk`.
 *
 * An instance that is not the row's (see connection.ts) is kind `wrong-instance` and
 * nothing is written to it. An instance that refuses the session for lack of slots
 * (SQLSTATE 53300) is kind `too-many-connections`: its postmaster answered, it is alive.
 * Both, like `authentication`, are reported at once: retrying does not change them.
 *
 * The prober's role needs no superuser; `scripts/fts-role.sql` creates it. Besides
 * LOGIN: `pg_read_all_stats` (else pg_stat_replication hides the walsender's state and
 * every mirror looks absent, pg_stat_wal_receiver hides a standby's receiver status, and
 * pg_stat_activity hides the checkpointer's start), EXECUTE on `pg_stat_file(text)`
 * (revoked from PUBLIC by default) and on `pg_control_system()` (granted to PUBLIC by
 * default), and SELECT, INSERT and UPDATE on `fts_heartbeat` (an upsert reads the
 * conflicting row), which the script creates (PostgreSQL 15 gives no role CREATE on
 * schema `public`; a superuser prober creates the table on first use). A role without
 * `pg_read_all_stats` is kind `authentication` (the probe checks it: it would
 * otherwise report every mirror absent); another missing privilege of the read is
 * kind `error`; of the write, an answer with `wrote: false` and the reason, never
 * `disk`. A TLS failure (sslmode, CA bundle, the server's certificate; see
 * connection.ts) is kind `authentication` too: a misconfiguration, not a dead
 * instance. A superuser has all of them, and is reserved its connection:
 * `superuser_reserved_connections` (default 3) keeps slots that only superusers may
 * take, so a superuser prober still gets in when clients have taken every other slot
 * and tells a flooded primary from a dead one. A non-superuser prober gets
 * `too-many-connections` then (PostgreSQL 16 can reserve slots for it too:
 * `reserved_connections` and the role `pg_use_reserved_connections`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'pg';
import { WrongInstanceError } from '../../core/errors';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { MirrorReplication, ProbeAnswer, ProbeFailureKind, ProbeResult, WalReceiverObservation } from '../../core/probe';
import type { Settings } from '../../core/settings';
import type { ProbeOptions, SegmentProbe } from '../../ports/segments';
import { IDENTITY_COLUMNS, SegmentTimeoutError, SegmentTlsError, identityMismatch, withSegmentClient, type InstanceIdentity, type PgCredentialsProvider, type PgTlsSettings } from './connection';

/**
 * The probe query. `$1` is the mirror's application name (its slot name) or NULL when
 * the caller does not know the mirror; then an FTS mirror's walsender is preferred over
 * others (a pg_basebackup in progress also has a walsender).
 */
export const PROBE_SQL = `
SELECT ${IDENTITY_COLUMNS},
       pg_is_in_recovery() AS in_recovery,
       current_setting('synchronous_standby_names') <> '' AS sync_rep_on,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
       ((pg_stat_file('base')).isdir AND (pg_stat_file('global')).isdir AND (pg_stat_file('pg_wal')).isdir) AS dirs_ok,
       pg_postmaster_start_time() AS started_at,
       (SELECT max(backend_start) FROM pg_stat_activity WHERE backend_type = 'checkpointer') AS initialized_at,
       COALESCE((SELECT bool_and(wait_event IN ('CheckpointerMain', 'CheckpointWriteDelay')) FROM pg_stat_activity WHERE backend_type = 'checkpointer'), false) AS sync_rep_settled,
       w.setting AS wal_sender_timeout, w.unit AS wal_sender_timeout_unit,
       pg_has_role('pg_read_all_stats', 'USAGE') AS reads_all_stats,
       r.application_name, r.state, r.sync_state, r.sent_lsn::text AS sent_lsn, r.write_lsn::text AS write_lsn,
       r.flush_lsn::text AS flush_lsn, r.replay_lsn::text AS replay_lsn,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds,
       (CASE WHEN pg_is_in_recovery() THEN COALESCE(wr.status, 'absent') END) AS receiver_status,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() END)::text AS received_lsn,
       CASE WHEN wr.last_msg_receipt_time IS NOT NULL THEN greatest(extract(epoch FROM clock_timestamp() - wr.last_msg_receipt_time), 0) END::float8 AS receiver_heard_seconds_ago
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (SELECT setting, unit FROM pg_settings WHERE name = 'wal_sender_timeout') AS w ON true
  LEFT JOIN LATERAL (SELECT status, last_msg_receipt_time FROM pg_stat_wal_receiver LIMIT 1) AS wr ON true
  LEFT JOIN LATERAL (
        SELECT application_name, state, sync_state, sent_lsn, write_lsn, flush_lsn, replay_lsn, replay_lag
          FROM pg_stat_replication
         WHERE $1::text IS NULL OR application_name = $1::text
         ORDER BY (application_name LIKE 'fts\\_mirror\\_dbid\\_%') DESC, backend_start
         LIMIT 1) AS r ON true`;

/** Table the write check commits its heartbeat row into (in database `postgres`), one row per dbid. */
export const HEARTBEAT_TABLE = 'fts_heartbeat';

/** The write check: one simple-protocol query, one transaction, one local commit. */
const heartbeatSql = (dbid: number, create: boolean, lockTimeoutMs: number): string =>
  [
    // Never wait for a mirror: the check is about this instance's disk.
    'SET synchronous_commit = local',
    // Never wait long for a lock either: a session holding the heartbeat row is no disk failure.
    `SET lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`,
    ...(create ? [`CREATE TABLE IF NOT EXISTS ${HEARTBEAT_TABLE} (dbid int PRIMARY KEY, at timestamptz NOT NULL)`] : []),
    `INSERT INTO ${HEARTBEAT_TABLE} (dbid, at) VALUES (${dbid}, now()) ON CONFLICT (dbid) DO UPDATE SET at = EXCLUDED.at`,
  ].join(';\n');

interface ProbeRow extends InstanceIdentity {
  in_recovery: boolean;
  sync_rep_on: boolean;
  lsn: string | null;
  dirs_ok: boolean | null;
  started_at: Date | null;
  initialized_at: Date | null;
  sync_rep_settled: boolean;
  wal_sender_timeout: string | null;
  wal_sender_timeout_unit: string | null;
  reads_all_stats: boolean;
  application_name: string | null;
  state: string | null;
  sync_state: string | null;
  sent_lsn: string | null;
  write_lsn: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
  replay_lag_seconds: number | null;
  receiver_status: string | null;
  received_lsn: string | null;
  receiver_heard_seconds_ago: number | null;
}

/** Construction options. */
export interface PgSegmentProbeOptions {
  /** Role (and password) the prober connects as: the one scripts/fts-role.sql makes, or a superuser. */
  credentials: PgCredentialsProvider;
  /** TLS of the connections; default none. */
  tls?: PgTlsSettings;
  /** Waits between attempts; default a real timer (tests may shorten it). */
  sleep?: (ms: number) => Promise<void>;
  /**
   * Where crash recovery of an instance that refuses connections as starting up or in
   * recovery has come (an LSN), so that `decide` can tell recovery that makes progress
   * from a hung instance. PostgreSQL does not say it over the connection; local mode
   * reads the startup process's title (`localRecoveryProgress`). Not set in AWS yet:
   * there, an instance in crash recovery counts as failed after the retries.
   */
  recoveryProgress?: (segment: SegmentRow) => Promise<string | undefined>;
}

/** A failure of one attempt, classified. */
export interface ClassifiedFailure {
  kind: ProbeFailureKind;
  message: string;
  recoveryLsn?: string;
  diskError?: 'io' | 'timeout';
}

/** Thrown inside an attempt when the prober's role lacks a privilege without which the answer would be wrong. */
class RoleMisconfigured extends Error {}

/** Thrown inside an attempt when the directory check reports a missing directory. */
class CheckFailed extends Error {}

/** Thrown inside an attempt when the heartbeat write failed (already classified). */
class WriteFailed extends Error {
  constructor(readonly failure: ClassifiedFailure) {
    super(failure.message);
  }
}

/** Failures that retrying does not change: reported after the first attempt. */
const FINAL_KINDS: ReadonlySet<ProbeFailureKind> = new Set(['authentication', 'wrong-instance', 'too-many-connections']);

type AttemptAnswer = Omit<ProbeAnswer, 'ok' | 'dbid' | 'attempts' | 'durationMs'>;

/** Probes segment instances with `pg`; see the module comment for the query and the role it needs. */
export class PgSegmentProbe implements SegmentProbe {
  private readonly credentials: PgCredentialsProvider;
  private readonly tls?: PgTlsSettings;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly recoveryProgress?: (segment: SegmentRow) => Promise<string | undefined>;

  constructor(options: PgSegmentProbeOptions) {
    this.credentials = options.credentials;
    this.tls = options.tls;
    this.sleep = options.sleep ?? ((ms) => sleep(ms));
    this.recoveryProgress = options.recoveryProgress;
  }

  /**
   * Probes one instance: up to `probeRetries + 1` attempts of `probeTimeoutSeconds` each
   * (connect, read, and the write check when asked), `probeRetryDelaySeconds` apart;
   * `authentication`, `wrong-instance` and `too-many-connections` are not retried.
   * `mirror` names the walsender to report (the primary's mirror); without it the first
   * FTS mirror walsender found is reported. Never throws.
   */
  async probe(segment: SegmentRow, settings: Settings, mirror?: SegmentRow, options: ProbeOptions = {}): Promise<ProbeResult> {
    const started = Date.now();
    let attempts = 0;
    for (;;) {
      attempts += 1;
      let failure: ClassifiedFailure;
      try {
        const answer = await this.attempt(segment, settings, mirror, options.writeCheck === true);
        return { ok: true, dbid: segment.dbid, ...answer, attempts, durationMs: Date.now() - started };
      } catch (e) {
        failure = classifyProbeError(e);
      }
      if (FINAL_KINDS.has(failure.kind) || attempts > settings.probeRetries) {
        if ((failure.kind === 'in-recovery' || failure.kind === 'starting-up') && !failure.recoveryLsn && this.recoveryProgress) {
          const lsn = await this.recoveryProgress(segment).catch(() => undefined); // no progress known: a failure
          if (lsn) failure = { ...failure, recoveryLsn: lsn };
        }
        return {
          ok: false,
          dbid: segment.dbid,
          kind: failure.kind,
          message: `dbid ${segment.dbid} (${segment.address}:${segment.port}): ${failure.message}`,
          ...(failure.recoveryLsn ? { recoveryLsn: failure.recoveryLsn } : {}),
          ...(failure.diskError ? { diskError: failure.diskError } : {}),
          attempts,
          durationMs: Date.now() - started,
        };
      }
      await this.sleep(settings.probeRetryDelaySeconds * 1000);
    }
  }

  /**
   * Probes many instances, at most `settings.probeParallelism` at once, results in input
   * order. `catalogRows` (all rows of the cluster) lets each primary's probe report the
   * walsender of its own mirror: the other row of its content. Read-only probes (no
   * write check: the port's `probeAll` takes no options).
   */
  async probeAll(segments: readonly SegmentRow[], settings: Settings, catalogRows: readonly SegmentRow[] = []): Promise<ProbeResult[]> {
    return mapLimit(segments, settings.probeParallelism, (segment) =>
      this.probe(
        segment,
        settings,
        catalogRows.find((r) => r.content === segment.content && r.dbid !== segment.dbid),
      ),
    );
  }

  /**
   * One attempt on one connection: the probe query, the identity and directory checks,
   * then (when asked, on an instance not in recovery) the heartbeat write; all of it
   * within the probe timeout, the hard deadline of withSegmentClient.
   */
  private async attempt(segment: SegmentRow, settings: Settings, mirror: SegmentRow | undefined, writeCheck: boolean): Promise<AttemptAnswer> {
    const timeoutMs = settings.probeTimeoutSeconds * 1000;
    const progress = { writing: false };
    try {
      return await withSegmentClient(
        segment,
        this.credentials,
        { connectTimeoutMs: timeoutMs, statementTimeoutMs: timeoutMs, deadlineMs: timeoutMs, tls: this.tls },
        async (client) => {
          const row = (await client.query<ProbeRow>(PROBE_SQL, [mirror ? mirrorSlotName(mirror.dbid) : null])).rows[0];
          if (!row) throw new Error('the probe query returned no row');
          // Whatever else it says is about another instance: check who answered first.
          const mismatch = identityMismatch(segment, row);
          if (mismatch) throw new WrongInstanceError(mismatch);
          if (row.dirs_ok !== true) throw new CheckFailed('a critical directory (base, global or pg_wal) is not a directory');
          if (row.reads_all_stats === false) {
            throw new RoleMisconfigured(
              "the prober's role is not a member of pg_read_all_stats, so pg_stat_replication and pg_stat_wal_receiver hide the mirror's state and every mirror would look absent; run scripts/fts-role.sql (or GRANT pg_read_all_stats TO the role)",
            );
          }
          let wrote: boolean | undefined;
          if (writeCheck) {
            wrote = false;
            // A standby cannot be written (and a mirror's disk is not what serves writes).
            if (!row.in_recovery) {
              progress.writing = true;
              const writeError = await writeHeartbeat(client, segment.dbid, Math.min(1000, timeoutMs / 4));
              wrote = writeError === undefined;
              if (writeError) return { ...answerOf(row, wrote), writeError };
            }
          }
          return answerOf(row, wrote);
        },
      );
    } catch (e) {
      if (progress.writing) {
        const failure = classifyWriteError(e);
        if (failure) throw new WriteFailed(failure);
      }
      throw e;
    }
  }
}

/**
 * Commits the heartbeat row; creates the table the first time (also with a local
 * commit). Returns why it did not write when the reason says nothing about the disk (a
 * lock held on the row, a cancel, privileges); throws otherwise.
 */
async function writeHeartbeat(client: Client, dbid: number, lockTimeoutMs: number): Promise<string | undefined> {
  if (!Number.isInteger(dbid)) throw new Error(`dbid ${dbid} is not an integer`);
  const write = async (): Promise<void> => {
    try {
      await client.query(heartbeatSql(dbid, false, lockTimeoutMs));
    } catch (e) {
      if (sqlState(e) !== '42P01') throw e;
      try {
        await client.query(heartbeatSql(dbid, true, lockTimeoutMs));
      } catch (e2) {
        // Created concurrently by another session (duplicate table or type): it exists now.
        if (sqlState(e2) !== '42P07' && sqlState(e2) !== '23505') throw e2;
        await client.query(heartbeatSql(dbid, false, lockTimeoutMs));
      }
    }
  };
  try {
    await write();
    return undefined;
  } catch (e) {
    const alive = aliveWriteError(e);
    if (alive) return alive;
    throw e;
  }
}

/** A heartbeat write error that proves nothing about the disk: the instance is alive and writable. */
function aliveWriteError(e: unknown): string | undefined {
  const code = sqlState(e);
  const message = e instanceof Error ? e.message : String(e);
  if (code === '55P03') return `the heartbeat row is locked by another session (${message})`;
  if (code === '57014' && !/statement timeout/i.test(message)) return `the heartbeat write was cancelled (${message})`;
  if (code === '42501' && /permission denied for/i.test(message)) return `the prober's role may not write ${HEARTBEAT_TABLE} (${message}); grant it SELECT, INSERT and UPDATE on the table (scripts/fts-role.sql creates the table and grants them)`;
  if (code === '25006') return `the instance refuses writes by configuration (${message})`;
  return undefined;
}

function answerOf(row: ProbeRow, wrote: boolean | undefined): AttemptAnswer {
  const walSenderTimeoutMs = settingMs(row.wal_sender_timeout, row.wal_sender_timeout_unit);
  return {
    inRecovery: row.in_recovery,
    mirror: replicationOf(row),
    ...(row.in_recovery ? { receiver: receiverOf(row) } : {}),
    syncRepOn: row.sync_rep_on,
    syncRepSettled: row.sync_rep_settled,
    ...(row.lsn ? { lsn: row.lsn } : {}),
    ...(row.started_at ? { startedAt: new Date(row.started_at).toISOString() } : {}),
    ...(row.initialized_at ? { initializedAt: new Date(row.initialized_at).toISOString() } : {}),
    ...(walSenderTimeoutMs !== undefined ? { walSenderTimeoutMs } : {}),
    ...(row.system_identifier ? { systemIdentifier: row.system_identifier } : {}),
    ...(wrote !== undefined ? { wrote } : {}),
  };
}

const TIME_UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A time setting as `pg_settings` gives it (`setting` in `unit`, e.g. `6000` and `ms`)
 * in milliseconds; undefined when it is not a time. 0 stays 0 (disabled).
 */
export function settingMs(setting: string | null, unit: string | null): number | undefined {
  if (setting === null || setting.trim() === '') return undefined;
  const value = Number(setting);
  if (!Number.isFinite(value)) return undefined;
  const m = /^\s*([0-9]*)\s*(us|ms|s|min|h|d)\s*$/.exec(unit ?? '');
  if (!m) return value === 0 ? 0 : undefined;
  return value * (m[1] ? Number(m[1]) : 1) * TIME_UNIT_MS[m[2]];
}

/**
 * Walsender state -> mirror replication. `startup` (handshake, or a mirror that cannot
 * follow the primary's timeline and reconnects forever) and `stopping` replicate
 * nothing: they count as absent, so the grace period, not a snapshot, decides.
 */
function replicationOf(row: ProbeRow): MirrorReplication {
  const state = row.state === 'streaming' ? 'streaming' : row.state === 'catchup' ? 'catchup' : 'absent';
  const senderState = row.state ? { senderState: row.state } : {};
  if (state === 'absent') return { state, syncState: 'none', ...senderState };
  const syncState = row.sync_state === 'sync' || row.sync_state === 'async' || row.sync_state === 'potential' || row.sync_state === 'quorum' ? row.sync_state : 'none';
  return {
    state,
    syncState,
    ...senderState,
    ...(row.sent_lsn ? { sentLsn: row.sent_lsn } : {}),
    ...(row.write_lsn ? { writeLsn: row.write_lsn } : {}),
    ...(row.flush_lsn ? { flushLsn: row.flush_lsn } : {}),
    ...(row.replay_lsn ? { replayLsn: row.replay_lsn } : {}),
    ...(row.replay_lag_seconds !== null && row.replay_lag_seconds !== undefined ? { replayLagSeconds: Number(row.replay_lag_seconds) } : {}),
  };
}

/** An instance in recovery: its WAL receiver (`absent` when it has none, e.g. replaying from the archive or reconnecting). */
function receiverOf(row: ProbeRow): WalReceiverObservation {
  return {
    state: row.receiver_status ?? 'absent',
    ...(row.received_lsn ? { receivedLsn: row.received_lsn } : {}),
    ...(row.lsn ? { replayLsn: row.lsn } : {}),
    ...(row.receiver_heard_seconds_ago !== null && row.receiver_heard_seconds_ago !== undefined ? { heardSecondsAgo: Number(row.receiver_heard_seconds_ago) } : {}),
  };
}

/**
 * Classifies why a probe attempt failed (Greenplum's FTS tells these apart too):
 * connection refused -> `refused`; connect or statement timeout -> `timeout`; SQLSTATE
 * 28P01/28000, a TLS failure, or a role without pg_read_all_stats -> `authentication`
 * (the prober is misconfigured); 53300 (no connection slot left) ->
 * `too-many-connections`; 42501 (a privilege the role lacks) -> `authentication`; 57P03 starting up / shutting down -> `starting-up`; 57P03 in
 * recovery mode / not (yet) accepting connections -> `in-recovery`; a failed directory
 * check -> `check-failed`; another instance at the address -> `wrong-instance`; a failed
 * heartbeat write -> as {@link classifyWriteError} says; anything else -> `error`.
 */
export function classifyProbeError(e: unknown): ClassifiedFailure {
  const err = (e ?? {}) as { code?: unknown; message?: unknown; detail?: unknown; errors?: unknown };
  const message = typeof err.message === 'string' && err.message ? err.message : String(e);
  const codes = [err.code, ...(Array.isArray(err.errors) ? err.errors.map((x: { code?: unknown }) => x?.code) : [])].filter((c): c is string => typeof c === 'string');
  if (e instanceof WriteFailed) return e.failure;
  if (e instanceof WrongInstanceError) return { kind: 'wrong-instance', message: `wrong instance: ${message}` };
  if (e instanceof CheckFailed) return { kind: 'check-failed', message };
  // A misconfiguration of the prober, not a failure of the instance: never a reason to fail over.
  if (e instanceof RoleMisconfigured) return { kind: 'authentication', message };
  if (e instanceof SegmentTlsError) return { kind: 'authentication', message };
  if (e instanceof SegmentTimeoutError) return { kind: 'timeout', message };
  if (codes.includes('ECONNREFUSED')) return { kind: 'refused', message: `connection refused (${message})` };
  if (codes.includes('ETIMEDOUT')) return { kind: 'timeout', message };
  const code = typeof err.code === 'string' ? err.code : '';
  if (code === '28P01' || code === '28000') return { kind: 'authentication', message };
  // "sorry, too many clients already" (the postmaster itself) or "remaining connection
  // slots are reserved for ...": something answered for the instance, it is alive.
  if (code === '53300') return { kind: 'too-many-connections', message: `no connection slot for the prober (${message}); the postmaster answered` };
  if (code === '57P03') {
    if (/starting up|shutting down/i.test(message)) return { kind: 'starting-up', message };
    const lsn = typeof err.detail === 'string' ? /([0-9A-F]+\/[0-9A-F]+)/i.exec(err.detail)?.[1] : undefined;
    return { kind: 'in-recovery', message, ...(lsn ? { recoveryLsn: lsn } : {}) };
  }
  if (code === '57014' && /statement timeout/i.test(message)) return { kind: 'timeout', message };
  // pg_stat_file on a missing or unreadable directory (undefined_file, io_error, a file's
  // permissions); "permission denied for function" is the prober's role, not the disk.
  if ((code.startsWith('58') || code === '42501') && /could not (stat|open|read)/i.test(message)) return { kind: 'check-failed', message };
  // Any other missing privilege is the prober's role (scripts/fts-role.sql), never the instance's failure.
  if (code === '42501') return { kind: 'authentication', message: `the prober's role lacks a privilege (${message}); grant what scripts/fts-role.sql grants` };
  // pg's own connection timeout ("timeout expired", "Connection terminated due to connection timeout").
  if (!code.match(/^[0-9A-Z]{5}$/) && /timeout/i.test(message)) return { kind: 'timeout', message };
  return { kind: 'error', message };
}

/**
 * Classifies a failure of the heartbeat write, which runs after the read part answered
 * (a lock wait, a cancel, privileges and a read-only configuration were already taken
 * as alive): no answer in time -> `disk` (timeout: a hung disk, or an instance too
 * overloaded to commit); an I/O error -> `disk` (io: full or read-only disk, a file the
 * server cannot write, extend, sync or open: 53100, class 58, XX001/XX002, or any
 * "could not write/extend/fsync/open/create" message); a lost connection (no SQLSTATE,
 * class 08, 57P01-57P03: the instance went away or crashed) -> undefined, classified like
 * any other failure; any other SQL error -> `error`.
 */
export function classifyWriteError(e: unknown): ClassifiedFailure | undefined {
  const err = (e ?? {}) as { message?: unknown };
  const message = typeof err.message === 'string' && err.message ? err.message : String(e);
  const timedOut = { kind: 'disk' as const, diskError: 'timeout' as const, message: `the heartbeat write did not finish within the probe timeout though the instance answered the read (${message})` };
  if (e instanceof SegmentTimeoutError) return timedOut;
  const code = sqlState(e);
  if (code === undefined || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return undefined;
  if (code === '57014') return timedOut;
  if (code === '53100' || code.startsWith('58') || code === 'XX001' || code === 'XX002' || /could not (write|extend|fsync|open|create)/i.test(message)) {
    return { kind: 'disk', diskError: 'io', message: `the heartbeat write failed: ${message} (${code})` };
  }
  return { kind: 'error', message: `the heartbeat write failed: ${message} (${code})` };
}

/** The SQLSTATE of a pg error, undefined for anything else (socket errors, our own). */
function sqlState(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Maps `items` through `fn`, at most `limit` calls in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
