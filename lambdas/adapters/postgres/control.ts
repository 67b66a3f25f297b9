/**
 * SegmentControl over PostgreSQL: the SQL half of Greenplum's FTS actions (PROMOTE,
 * SYNCREP_OFF) and of gprecoverseg (replication slots), plus the checks a promotion
 * workflow makes (the mirror's WAL receiver, a committed write). Every call opens one
 * short-lived connection and is idempotent, so a workflow step can be re-run, and first
 * checks on that connection that the instance it reached is the row's (`fts.dbid`,
 * `fts.content`, the system identifier when the row has one; see connection.ts): if
 * not, it throws WrongInstanceError having done nothing, so a stale address can never
 * promote, reconfigure or write to another cluster's instance.
 *
 * None of it needs a superuser: the role `scripts/fts-role.sql` creates has what each
 * call runs (REPLICATION for the slots, pg_read_all_stats for the WAL receiver,
 * pg_checkpoint, EXECUTE on pg_promote and pg_reload_conf, ALTER SYSTEM on
 * synchronous_standby_names only, rights on `fts_write_check`, which the script creates).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'pg';
import { FtsError, HostCommandError, NotLeaseHolderError, NotWritableError, SegmentUnreachableError, ValidationError, WrongInstanceError } from '../../core/errors';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { SegmentControl, WalReceiverStatus } from '../../ports/segments';
import { SegmentTimeoutError, checkIdentity, withSegmentClient, type PgCredentialsProvider, type PgTlsSettings } from './connection';

/** Table `verifyWritable` inserts into (in database `postgres`). */
export const WRITE_CHECK_TABLE = 'fts_write_check';

/** Construction options. */
export interface PgSegmentControlOptions {
  /** Role the control plane connects as: the one scripts/fts-role.sql makes (no superuser needed), or a superuser. */
  credentials: PgCredentialsProvider;
  /** TLS of the connections; default none. */
  tls?: PgTlsSettings;
  /** Milliseconds to establish a connection; default 5000. */
  connectTimeoutMs?: number;
  /** `statement_timeout` of calls that take no timeout argument; default 10000. */
  statementTimeoutMs?: number;
  /** Milliseconds between two checks while waiting (promotion, reload); default 100. */
  pollIntervalMs?: number;
}

/** Controls segment instances with SQL; see the module comment. */
export class PgSegmentControl implements SegmentControl {
  private readonly credentials: PgCredentialsProvider;
  private readonly tls?: PgTlsSettings;
  private readonly connectTimeoutMs: number;
  private readonly statementTimeoutMs: number;
  private readonly pollIntervalMs: number;

  constructor(options: PgSegmentControlOptions) {
    this.credentials = options.credentials;
    this.tls = options.tls;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.statementTimeoutMs = options.statementTimeoutMs ?? 10_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
  }

  /**
   * Promotes a mirror: `pg_promote(true, ...)` if it is in recovery, waits until it has
   * left recovery, then turns its sync rep off (ALTER SYSTEM + reload): a promoted
   * mirror keeps its old primary's `synchronous_standby_names` and every write would hang.
   * On an instance already promoted only the sync rep step runs. Throws HostCommandError
   * if it is still in recovery after `timeoutMs`.
   */
  async promote(segment: SegmentRow, timeoutMs: number): Promise<void> {
    await this.run(segment, 'promote', { statementTimeoutMs: timeoutMs + 1000, deadlineMs: this.connectTimeoutMs + timeoutMs + 5000 }, async (client) => {
      const deadline = Date.now() + timeoutMs;
      if (await inRecovery(client)) {
        try {
          await client.query('SELECT pg_promote(true, $1::int)', [Math.max(1, Math.floor(timeoutMs / 1000))]);
        } catch (e) {
          // 55000 "recovery is not in progress": promoted by someone else meanwhile.
          if ((e as { code?: string }).code !== '55000') throw e;
        }
        while (await inRecovery(client)) {
          if (Date.now() > deadline) throw new HostCommandError(`dbid ${segment.dbid} is still in recovery ${timeoutMs} ms after pg_promote`);
          await sleep(this.pollIntervalMs);
        }
      }
      await this.applySyncStandbyNames(client, '', Math.max(deadline, Date.now() + 5000));
    });
  }

  /**
   * Turns sync rep on (`synchronous_standby_names` = the mirror's application name) or
   * off (empty) on the primary with ALTER SYSTEM, reloads, and waits until the setting
   * is in effect, which releases commits waiting for a standby when turned off.
   */
  async setSyncRep(primary: SegmentRow, mirror: SegmentRow | undefined, on: boolean, guard?: () => boolean): Promise<void> {
    if (on && !mirror) throw new ValidationError(`cannot turn sync rep on for primary dbid ${primary.dbid} without a mirror`);
    const value = on && mirror ? mirrorSlotName(mirror.dbid) : '';
    await this.run(primary, on ? 'sync rep on' : 'sync rep off', {}, (client) => this.applySyncStandbyNames(client, value, Date.now() + this.statementTimeoutMs, guard));
  }

  /**
   * Creates the mirror's physical replication slot on the primary if missing, reserving
   * WAL at once so the primary keeps what the mirror has not received yet.
   */
  async ensureSlot(primary: SegmentRow, mirrorDbid: number): Promise<void> {
    const slot = mirrorSlotName(mirrorDbid);
    await this.run(primary, `ensure slot ${slot}`, {}, async (client) => {
      try {
        await client.query(
          `SELECT pg_create_physical_replication_slot($1::name, true)
            WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1::name)`,
          [slot],
        );
      } catch (e) {
        // 42710 duplicate_object: created concurrently; the slot exists, which is the goal.
        if ((e as { code?: string }).code !== '42710') throw e;
      }
    });
  }

  /**
   * Drops the mirror's physical replication slot on the primary if it is there. A slot in
   * use (a walsender streams through it) is left alone: HostCommandError, nothing dropped.
   */
  async dropSlot(primary: SegmentRow, mirrorDbid: number): Promise<void> {
    const slot = mirrorSlotName(mirrorDbid);
    await this.run(primary, `drop slot ${slot}`, {}, async (client) => {
      const { rows } = await client.query<{ active: boolean; active_pid: number | null }>('SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1::name', [slot]);
      if (!rows.length) return;
      if (rows[0].active) throw new HostCommandError(`slot ${slot} on dbid ${primary.dbid} is in use (walsender pid ${rows[0].active_pid ?? '?'}): its standby still streams; stop it first`);
      try {
        await client.query('SELECT pg_drop_replication_slot($1::name)', [slot]);
      } catch (e) {
        const code = (e as { code?: string }).code;
        // 42704 undefined_object: dropped concurrently, which is the goal.
        if (code === '42704') return;
        // 55006 object_in_use: its standby connected since the look above.
        if (code === '55006') throw new HostCommandError(`slot ${slot} on dbid ${primary.dbid} is in use: its standby still streams; stop it first`);
        throw e;
      }
    });
  }

  /**
   * The instance's WAL receiver as `pg_stat_wal_receiver` shows it, plus its replay LSN;
   * `heardSecondsAgo` is measured on the instance's own clock.
   */
  async walReceiver(segment: SegmentRow): Promise<WalReceiverStatus> {
    return this.run(segment, 'read WAL receiver', {}, async (client) => {
      const { rows } = await client.query<{
        in_recovery: boolean;
        status: string | null;
        sender_host: string | null;
        sender_port: number | null;
        last_msg_ms: number | null;
        heard_s_ago: number | null;
        replay_lsn: string | null;
        received_lsn: string | null;
        reads_all_stats: boolean;
      }>(
        // clock_timestamp(), not now(): a message received while this statement runs is not in the future.
        `SELECT pg_is_in_recovery() AS in_recovery, r.status, r.sender_host, r.sender_port,
                (extract(epoch FROM r.last_msg_receipt_time) * 1000)::float8 AS last_msg_ms,
                CASE WHEN r.last_msg_receipt_time IS NOT NULL THEN greatest(extract(epoch FROM clock_timestamp() - r.last_msg_receipt_time), 0) END::float8 AS heard_s_ago,
                pg_last_wal_replay_lsn()::text AS replay_lsn,
                pg_last_wal_receive_lsn()::text AS received_lsn,
                pg_has_role('pg_read_all_stats', 'USAGE') AS reads_all_stats
           FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true`,
      );
      const row = rows[0];
      // Without it the receiver's status is NULL: a streaming mirror would look like one that hears nothing.
      if (!row.reads_all_stats) {
        throw new HostCommandError(
          `read WAL receiver on dbid ${segment.dbid}: the control plane's role is not a member of pg_read_all_stats, so pg_stat_wal_receiver hides the receiver's state; run scripts/fts-role.sql (or GRANT pg_read_all_stats TO the role)`,
        );
      }
      return {
        inRecovery: row.in_recovery,
        state: row.status ?? 'absent',
        ...(row.sender_host ? { senderHost: row.sender_host } : {}),
        ...(row.sender_port ? { senderPort: row.sender_port } : {}),
        ...(row.last_msg_ms !== null ? { lastMessageAt: Math.round(row.last_msg_ms) } : {}),
        ...(row.heard_s_ago !== null ? { heardSecondsAgo: row.heard_s_ago } : {}),
        ...(row.replay_lsn ? { replayLsn: row.replay_lsn } : {}),
        ...(row.received_lsn ? { receivedLsn: row.received_lsn } : {}),
      };
    });
  }

  /**
   * Runs CHECKPOINT (a primary before a planned stop: the shutdown checkpoint then has
   * little left to write, which shortens the stop and the write-unavailable window).
   */
  async checkpoint(segment: SegmentRow, timeoutMs: number): Promise<void> {
    await this.run(segment, 'checkpoint', { statementTimeoutMs: timeoutMs, deadlineMs: this.connectTimeoutMs + timeoutMs + 5000 }, async (client) => {
      await client.query('CHECKPOINT');
    });
  }

  /**
   * Commits one row in `fts_write_check` (created if missing, which takes CREATE on
   * schema public: scripts/fts-role.sql creates it for its role) within `timeoutMs`.
   * Throws NotWritableError when the instance is read-only, does not answer, or the
   * commit is still waiting for a synchronous standby at the timeout: the wait is then
   * cancelled (the row stays committed locally, unacknowledged) and the message says so.
   * WrongInstanceError (nothing written) when another instance answers at the address.
   */
  async verifyWritable(segment: SegmentRow, timeoutMs: number): Promise<void> {
    let cancelled: { waitEvent: string | null } | undefined;
    try {
      await withSegmentClient(
        segment,
        this.credentials,
        { connectTimeoutMs: this.connectTimeoutMs, statementTimeoutMs: timeoutMs, deadlineMs: this.connectTimeoutMs + timeoutMs + 5000, tls: this.tls },
        async (client) => {
          await checkIdentity(client, segment);
          const warnings: string[] = [];
          client.on('notice', (n) => warnings.push(n.message ?? ''));
          // CREATE TABLE IF NOT EXISTS needs CREATE on the schema even when the table exists: only when it is missing.
          const { pid, present } = (await client.query<{ pid: number; present: boolean }>(`SELECT pg_backend_pid() AS pid, to_regclass('${WRITE_CHECK_TABLE}') IS NOT NULL AS present`)).rows[0];
          // statement_timeout is disarmed before COMMIT, so it never ends a wait for a
          // synchronous standby: cancel the backend from a second session instead.
          const timer = setTimeout(() => {
            void this.cancelBackend(segment, pid).then((waitEvent) => (cancelled = { waitEvent }), () => undefined);
          }, timeoutMs);
          try {
            // One simple-protocol query = one transaction = one commit (and one sync rep wait).
            const create = present ? '' : `CREATE TABLE IF NOT EXISTS ${WRITE_CHECK_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());\n`;
            await client.query(
              `${create}INSERT INTO ${WRITE_CHECK_TABLE} DEFAULT VALUES;
               DELETE FROM ${WRITE_CHECK_TABLE} WHERE at < now() - interval '1 day'`,
            );
          } finally {
            clearTimeout(timer);
          }
          // A cancelled sync rep wait is a WARNING and a successful commit, not an error.
          if (warnings.some((w) => /synchronous replication/i.test(w))) {
            throw new NotWritableError(
              `dbid ${segment.dbid}: the write was still waiting for a synchronous standby after ${timeoutMs} ms and was cancelled (committed locally, not acknowledged): sync rep is on and no mirror acknowledges`,
            );
          }
        },
      );
    } catch (e) {
      if (e instanceof NotWritableError || e instanceof WrongInstanceError) throw e;
      const code = (e as { code?: string }).code;
      if (e instanceof SegmentTimeoutError || code === '57014') {
        const waiting = cancelled?.waitEvent === 'SyncRep' ? ': it was waiting for a synchronous standby (sync rep on, no mirror acknowledges)' : cancelled?.waitEvent ? ` (waiting on ${cancelled.waitEvent})` : '';
        throw new NotWritableError(
          `dbid ${segment.dbid}: the write did not finish within ${timeoutMs} ms${waiting || ' (a commit waiting for a synchronous standby that does not answer ends this way)'}`,
        );
      }
      throw new NotWritableError(`dbid ${segment.dbid} did not accept a write: ${describe(e)}`);
    }
  }

  /** Cancels one backend's current statement from a new session; returns what it was waiting on. */
  private async cancelBackend(segment: SegmentRow, pid: number): Promise<string | null> {
    return withSegmentClient(segment, this.credentials, { connectTimeoutMs: this.connectTimeoutMs, statementTimeoutMs: this.statementTimeoutMs, tls: this.tls }, async (client) => {
      const { rows } = await client.query<{ wait_event: string | null }>(
        'SELECT wait_event, pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1',
        [pid],
      );
      return rows[0]?.wait_event ?? null;
    });
  }

  /** Sets synchronous_standby_names, reloads, and waits until this session sees the new value. */
  private async applySyncStandbyNames(client: Client, value: string, deadline: number, guard?: () => boolean): Promise<void> {
    // The last moment to find out that the caller lost its right to change it.
    if (guard && !guard()) throw new NotLeaseHolderError(`synchronous_standby_names not changed: the caller's lease is no longer live`);
    // ALTER SYSTEM takes no bind parameters; the value is a quoted literal.
    await client.query(`ALTER SYSTEM SET synchronous_standby_names = ${client.escapeLiteral(value)}`);
    await client.query('SELECT pg_reload_conf()');
    // The reload is asynchronous: once this backend has re-read the file, so has the
    // postmaster, and new sessions (the next probe) see the new value.
    for (;;) {
      const { rows } = await client.query<{ v: string }>(`SELECT current_setting('synchronous_standby_names') AS v`);
      if (rows[0].v === value) return;
      if (Date.now() > deadline) throw new HostCommandError(`synchronous_standby_names did not take effect after pg_reload_conf()`);
      await sleep(this.pollIntervalMs);
    }
  }

  /**
   * Runs one control call after the identity check (WrongInstanceError, nothing done);
   * connection-level failures become SegmentUnreachableError, SQL ones HostCommandError.
   */
  private async run<T>(
    segment: SegmentRow,
    what: string,
    timeouts: { statementTimeoutMs?: number; deadlineMs?: number },
    work: (client: Client) => Promise<T>,
  ): Promise<T> {
    try {
      return await withSegmentClient(
        segment,
        this.credentials,
        {
          connectTimeoutMs: this.connectTimeoutMs,
          statementTimeoutMs: timeouts.statementTimeoutMs ?? this.statementTimeoutMs,
          deadlineMs: timeouts.deadlineMs ?? this.connectTimeoutMs + (timeouts.statementTimeoutMs ?? this.statementTimeoutMs) + 5000,
          tls: this.tls,
        },
        async (client) => {
          await checkIdentity(client, segment);
          return work(client);
        },
      );
    } catch (e) {
      if (e instanceof FtsError) throw e;
      const code = (e as { code?: string }).code ?? '';
      const message = `${what} on dbid ${segment.dbid} (${segment.address}:${segment.port}) failed: ${describe(e)}`;
      // No SQLSTATE, or connection exception / cannot connect now / auth: we never got to run the SQL.
      if (!/^[0-9A-Z]{5}$/.test(code) || code.startsWith('08') || code.startsWith('57P') || code.startsWith('28')) {
        throw new SegmentUnreachableError(message);
      }
      throw new HostCommandError(message);
    }
  }
}

async function inRecovery(client: Client): Promise<boolean> {
  const { rows } = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
  return rows[0].r;
}

function describe(e: unknown): string {
  const code = (e as { code?: string }).code;
  const message = e instanceof Error ? e.message : String(e);
  return code ? `${message} (${code})` : message;
}
