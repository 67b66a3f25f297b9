/**
 * SegmentProbe over PostgreSQL: Greenplum's FTS probe message, as one TCP connection and
 * one query per attempt. The query reports whether the instance is in recovery, its
 * mirror's walsender (state, sync state, LSNs), whether sync rep is on, its WAL position,
 * and a check of the critical directories (`base`, `global`, `pg_wal`).
 *
 * The prober's role needs, besides LOGIN: `pg_read_all_stats` (else pg_stat_replication
 * hides the walsender's state and every mirror looks absent) and EXECUTE on
 * `pg_stat_file(text)` (revoked from PUBLIC by default). A superuser has both.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { MirrorReplication, ProbeAnswer, ProbeFailureKind, ProbeResult } from '../../core/probe';
import type { Settings } from '../../core/settings';
import type { SegmentProbe } from '../../ports/segments';
import { SegmentTimeoutError, withSegmentClient, type PgCredentialsProvider } from './connection';

/**
 * The probe query. `$1` is the mirror's application name (its slot name) or NULL when
 * the caller does not know the mirror; then an FTS mirror's walsender is preferred over
 * others (a pg_basebackup in progress also has a walsender).
 */
export const PROBE_SQL = `
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('synchronous_standby_names') <> '' AS sync_rep_on,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
       ((pg_stat_file('base')).isdir AND (pg_stat_file('global')).isdir AND (pg_stat_file('pg_wal')).isdir) AS dirs_ok,
       r.application_name, r.state, r.sync_state, r.flush_lsn::text AS flush_lsn, r.replay_lsn::text AS replay_lsn
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (
        SELECT application_name, state, sync_state, flush_lsn, replay_lsn
          FROM pg_stat_replication
         WHERE $1::text IS NULL OR application_name = $1::text
         ORDER BY (application_name LIKE 'fts\\_mirror\\_dbid\\_%') DESC, backend_start
         LIMIT 1) AS r ON true`;

interface ProbeRow {
  in_recovery: boolean;
  sync_rep_on: boolean;
  lsn: string | null;
  dirs_ok: boolean | null;
  application_name: string | null;
  state: string | null;
  sync_state: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
}

/** Construction options. */
export interface PgSegmentProbeOptions {
  /** Role (and password) the prober connects as. */
  credentials: PgCredentialsProvider;
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
}

/** Thrown inside an attempt when the directory check reports a missing directory. */
class CheckFailed extends Error {}

/** Probes segment instances with `pg`; see the module comment for the query and the role it needs. */
export class PgSegmentProbe implements SegmentProbe {
  private readonly credentials: PgCredentialsProvider;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly recoveryProgress?: (segment: SegmentRow) => Promise<string | undefined>;

  constructor(options: PgSegmentProbeOptions) {
    this.credentials = options.credentials;
    this.sleep = options.sleep ?? ((ms) => sleep(ms));
    this.recoveryProgress = options.recoveryProgress;
  }

  /**
   * Probes one instance: up to `probeRetries + 1` attempts of `probeTimeoutSeconds` each,
   * `probeRetryDelaySeconds` apart; an authentication failure is not retried. `mirror`
   * names the walsender to report (the primary's mirror); without it the first FTS
   * mirror walsender found is reported. Never throws.
   */
  async probe(segment: SegmentRow, settings: Settings, mirror?: SegmentRow): Promise<ProbeResult> {
    const started = Date.now();
    let attempts = 0;
    for (;;) {
      attempts += 1;
      let failure: ClassifiedFailure;
      try {
        const answer = await this.attempt(segment, settings, mirror);
        return { ok: true, dbid: segment.dbid, ...answer, attempts, durationMs: Date.now() - started };
      } catch (e) {
        failure = classifyProbeError(e);
      }
      // Wrong credentials stay wrong: retrying only delays the report.
      if (failure.kind === 'authentication' || attempts > settings.probeRetries) {
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
   * walsender of its own mirror: the other row of its content.
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

  private async attempt(segment: SegmentRow, settings: Settings, mirror: SegmentRow | undefined): Promise<Omit<ProbeAnswer, 'ok' | 'dbid' | 'attempts' | 'durationMs'>> {
    const timeoutMs = settings.probeTimeoutSeconds * 1000;
    const row = await withSegmentClient(
      segment,
      this.credentials,
      // One attempt (connect + query) fits in the probe timeout: the hard deadline is the timeout itself.
      { connectTimeoutMs: timeoutMs, statementTimeoutMs: timeoutMs, deadlineMs: timeoutMs },
      async (client) => (await client.query<ProbeRow>(PROBE_SQL, [mirror ? mirrorSlotName(mirror.dbid) : null])).rows[0],
    );
    if (!row) throw new Error('the probe query returned no row');
    if (row.dirs_ok !== true) throw new CheckFailed('a critical directory (base, global or pg_wal) is not a directory');
    return {
      inRecovery: row.in_recovery,
      mirror: replicationOf(row),
      syncRepOn: row.sync_rep_on,
      ...(row.lsn ? { lsn: row.lsn } : {}),
    };
  }
}

/**
 * Walsender state -> mirror replication. `startup` (handshake, or a mirror that cannot
 * follow the primary's timeline and reconnects forever) and `stopping` replicate
 * nothing: they count as absent, so the grace period, not a snapshot, decides.
 */
function replicationOf(row: ProbeRow): MirrorReplication {
  const state = row.state === 'streaming' ? 'streaming' : row.state === 'catchup' ? 'catchup' : 'absent';
  if (state === 'absent') return { state, syncState: 'none' };
  const syncState = row.sync_state === 'sync' || row.sync_state === 'async' || row.sync_state === 'potential' || row.sync_state === 'quorum' ? row.sync_state : 'none';
  return {
    state,
    syncState,
    ...(row.flush_lsn ? { flushLsn: row.flush_lsn } : {}),
    ...(row.replay_lsn ? { replayLsn: row.replay_lsn } : {}),
  };
}

/**
 * Classifies why a probe attempt failed (Greenplum's FTS tells these apart too):
 * connection refused -> `refused`; connect or statement timeout -> `timeout`; SQLSTATE
 * 28P01/28000 -> `authentication`; 57P03 starting up / shutting down -> `starting-up`;
 * 57P03 in recovery mode / not (yet) accepting connections -> `in-recovery`; a failed
 * directory check -> `check-failed`; anything else -> `error`.
 */
export function classifyProbeError(e: unknown): ClassifiedFailure {
  const err = (e ?? {}) as { code?: unknown; message?: unknown; detail?: unknown; errors?: unknown };
  const message = typeof err.message === 'string' && err.message ? err.message : String(e);
  const codes = [err.code, ...(Array.isArray(err.errors) ? err.errors.map((x: { code?: unknown }) => x?.code) : [])].filter((c): c is string => typeof c === 'string');
  if (e instanceof CheckFailed) return { kind: 'check-failed', message };
  if (e instanceof SegmentTimeoutError) return { kind: 'timeout', message };
  if (codes.includes('ECONNREFUSED')) return { kind: 'refused', message: `connection refused (${message})` };
  if (codes.includes('ETIMEDOUT')) return { kind: 'timeout', message };
  const code = typeof err.code === 'string' ? err.code : '';
  if (code === '28P01' || code === '28000') return { kind: 'authentication', message };
  if (code === '57P03') {
    if (/starting up|shutting down/i.test(message)) return { kind: 'starting-up', message };
    const lsn = typeof err.detail === 'string' ? /([0-9A-F]+\/[0-9A-F]+)/i.exec(err.detail)?.[1] : undefined;
    return { kind: 'in-recovery', message, ...(lsn ? { recoveryLsn: lsn } : {}) };
  }
  if (code === '57014' && /statement timeout/i.test(message)) return { kind: 'timeout', message };
  // pg_stat_file on a missing or unreadable directory (undefined_file, io_error, a file's
  // permissions); "permission denied for function" is the prober's role, not the disk.
  if ((code.startsWith('58') || code === '42501') && /could not (stat|open|read)/i.test(message)) return { kind: 'check-failed', message };
  // pg's own connection timeout ("timeout expired", "Connection terminated due to connection timeout").
  if (!code.match(/^[0-9A-Z]{5}$/) && /timeout/i.test(message)) return { kind: 'timeout', message };
  return { kind: 'error', message };
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
