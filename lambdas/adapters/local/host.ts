/**
 * SegmentHost for local mode: the segment instances are child processes on this machine,
 * controlled with pg_ctl, pg_rewind and pg_basebackup run as the PostgreSQL OS user
 * (what SSM Run Command does on EC2 hosts; see ../aws/ssm-host.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostCommandError, ValidationError } from '../../core/errors';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { RebuildMethod, SegmentControl, SegmentHost } from '../../ports/segments';
import { confQuote, primaryConninfo } from '../aws/shell';
import { trustCredentials, withSegmentClient, type PgCredentialsProvider } from '../postgres/connection';
import { PgSegmentControl } from '../postgres/control';
import { DEFAULT_SUPERUSER, chownToPgUser, ensurePgDir, runPgBinary, writePgFile } from './postgres-binaries';

/** Construction options; all optional. */
export interface LocalSegmentHostOptions {
  /** PostgreSQL bin directory; default the newest installed (env PG_BIN overrides). */
  pgBin?: string;
  /**
   * Role (and password) mirrors, pg_rewind and pg_basebackup connect to the primary as;
   * default `postgres` without password (loopback trust). A password goes to the tools
   * through PGPASSWORD, never on a command line.
   */
  replicationCredentials?: PgCredentialsProvider;
  /** Creates the mirror's slot on the primary; default a PgSegmentControl with the replication credentials. */
  control?: Pick<SegmentControl, 'ensureSlot'>;
  /** `pg_ctl -t` seconds; default 60. */
  pgCtlTimeoutSeconds?: number;
  /** Milliseconds pg_rewind or pg_basebackup may take; default 600000. */
  rebuildTimeoutMs?: number;
  /** `wal_retrieve_retry_interval` written with the mirror config; default `100ms` (fast promotion). */
  walRetrieveRetryInterval?: string;
  /** Where pg_ctl writes an instance's server log; default `<datadir>.log` beside the data directory. */
  logFileOf?: (segment: SegmentRow) => string;
}

/** Starts, stops and rebuilds local segment instances. */
export class LocalSegmentHost implements SegmentHost {
  private readonly pgBin?: string;
  private readonly credentials: PgCredentialsProvider;
  private readonly control: Pick<SegmentControl, 'ensureSlot'>;
  private readonly pgCtlTimeoutSeconds: number;
  private readonly rebuildTimeoutMs: number;
  private readonly walRetrieveRetryInterval: string;
  private readonly logFileOf: (segment: SegmentRow) => string;

  constructor(options: LocalSegmentHostOptions = {}) {
    this.pgBin = options.pgBin;
    this.credentials = options.replicationCredentials ?? trustCredentials(DEFAULT_SUPERUSER);
    this.control = options.control ?? new PgSegmentControl({ credentials: this.credentials });
    this.pgCtlTimeoutSeconds = options.pgCtlTimeoutSeconds ?? 60;
    this.rebuildTimeoutMs = options.rebuildTimeoutMs ?? 600_000;
    this.walRetrieveRetryInterval = options.walRetrieveRetryInterval ?? '100ms';
    this.logFileOf = options.logFileOf ?? ((s) => join(dirname(s.datadir), `${basename(s.datadir)}.log`));
  }

  /**
   * Starts the instance on the catalog's port (`pg_ctl start -w`, which returns once it
   * accepts connections or, for a mirror, has reached a consistent standby state).
   * A no-op if it runs. Throws HostCommandError with the server log's tail on failure.
   */
  async start(segment: SegmentRow): Promise<void> {
    checkSegment(segment);
    if (isRunning(segment.datadir)) return;
    await clearStalePidFile(segment.datadir);
    const log = this.logFileOf(segment);
    // Created by us so the PostgreSQL user can write it even if it cannot create files beside the data directory.
    if (!existsSync(log)) await writeFile(log, '', { mode: 0o600 });
    await chownToPgUser(log);
    try {
      await runPgBinary(
        'pg_ctl',
        // The catalog's port wins over the copied config: a mirror made by pg_basebackup carries its primary's port.
        ['start', '-w', '-t', String(this.pgCtlTimeoutSeconds), '-D', segment.datadir, '-l', log, '-o', `-p ${segment.port}`],
        { pgBin: this.pgBin, timeoutMs: (this.pgCtlTimeoutSeconds + 10) * 1000 },
      );
    } catch (e) {
      const logTail = await readTail(log, 1500);
      const err = e as HostCommandError;
      throw new HostCommandError(`start of dbid ${segment.dbid} failed: ${err.message}; server log: ${logTail.split('\n').slice(-3).join(' | ')}`, err.exitCode, `${err.output ?? ''}\n${logTail}`);
    }
  }

  /**
   * Stops the instance: `fast` (clean shutdown, a checkpoint) or `immediate` (no
   * checkpoint: the next start runs crash recovery). An instance that is not running
   * counts as stopped.
   */
  async stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<void> {
    checkSegment(segment);
    if (mode !== 'fast' && mode !== 'immediate') throw new ValidationError(`stop mode must be fast or immediate, not ${String(mode)}`);
    if (!isRunning(segment.datadir)) return;
    try {
      await runPgBinary('pg_ctl', ['stop', '-w', '-t', String(this.pgCtlTimeoutSeconds), '-m', mode, '-D', segment.datadir], {
        pgBin: this.pgBin,
        timeoutMs: (this.pgCtlTimeoutSeconds + 10) * 1000,
      });
    } catch (e) {
      // It may have exited on its own between the check and pg_ctl: that is stopped too.
      if (isRunning(segment.datadir)) throw e;
    }
  }

  /**
   * Makes the instance a standby of `primary`: sets `primary_conninfo` (application_name
   * = the mirror's slot name, which the primary's synchronous_standby_names lists),
   * `primary_slot_name` and `wal_retrieve_retry_interval` in postgresql.auto.conf,
   * keeping its other lines, and creates `standby.signal`. Takes effect at the next start.
   */
  async writeMirrorConfig(mirror: SegmentRow, primary: SegmentRow): Promise<void> {
    checkPair(mirror, primary);
    const user = (await this.credentials()).user;
    const conf = join(mirror.datadir, 'postgresql.auto.conf');
    const settings: Array<[string, string]> = [
      ['primary_conninfo', primaryConninfo(mirror, primary, user)],
      ['primary_slot_name', mirrorSlotName(mirror.dbid)],
    ];
    if (this.walRetrieveRetryInterval !== '') settings.push(['wal_retrieve_retry_interval', this.walRetrieveRetryInterval]);
    const names = new Set(settings.map(([n]) => n));
    const current = existsSync(conf)
      ? await readFile(conf, 'utf8')
      : '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n';
    const kept = current.split('\n').filter((line) => {
      const m = /^\s*([A-Za-z_.]+)\s*=/.exec(line);
      return !(m && names.has(m[1].toLowerCase()));
    });
    const text = `${kept.join('\n').replace(/\n*$/, '\n')}${settings.map(([n, v]) => `${n} = ${confQuote(v)}`).join('\n')}\n`;
    await writePgFile(conf, text, 0o600);
    await writePgFile(join(mirror.datadir, 'standby.signal'), '', 0o600);
  }

  /**
   * Rebuilds `mirror` from `primary` and starts it streaming: stops it (fast; a crashed
   * instance is left as is), makes sure its slot exists on the primary (so the WAL it
   * needs is kept from now on), then `pg_rewind` (incremental; PostgreSQL 13+ first runs
   * crash recovery in single-user mode if the target did not shut down cleanly) or
   * `pg_basebackup` through the slot (full copy into the emptied data directory), writes
   * the mirror config and starts it.
   */
  async rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void> {
    checkPair(mirror, primary);
    if (method !== 'rewind' && method !== 'basebackup') throw new ValidationError(`rebuild method must be rewind or basebackup, not ${String(method)}`);
    await this.stop(mirror, 'fast');
    await clearStalePidFile(mirror.datadir);
    await this.control.ensureSlot(primary, mirror.dbid);
    const creds = await this.credentials();
    const env = creds.password ? { PGPASSWORD: creds.password } : undefined;
    if (method === 'rewind') {
      // A standby cannot run in single-user mode, which pg_rewind uses to finish crash recovery.
      await rm(join(mirror.datadir, 'standby.signal'), { force: true });
      await this.checkpoint(primary);
      const source = `${primaryConninfo(mirror, primary, creds.user)} dbname='postgres'`;
      await runPgBinary('pg_rewind', [`--target-pgdata=${mirror.datadir}`, `--source-server=${source}`], {
        pgBin: this.pgBin,
        timeoutMs: this.rebuildTimeoutMs,
        env,
      });
      // Slots the instance had as a primary would pin WAL on the mirror forever; a mirror serves none.
      const slots = join(mirror.datadir, 'pg_replslot');
      if (existsSync(slots)) for (const entry of await readdir(slots)) await rm(join(slots, entry), { recursive: true, force: true });
    } else {
      await emptyDir(mirror.datadir);
      await ensurePgDir(mirror.datadir);
      await runPgBinary(
        'pg_basebackup',
        ['-D', mirror.datadir, '-h', primary.address, '-p', String(primary.port), '-U', creds.user, '-X', 'stream', '-S', mirrorSlotName(mirror.dbid), '-c', 'fast', '--no-password'],
        { pgBin: this.pgBin, timeoutMs: this.rebuildTimeoutMs, env },
      );
      await ensurePgDir(mirror.datadir);
    }
    await this.writeMirrorConfig(mirror, primary);
    await this.start(mirror);
  }

  /**
   * pg_rewind up to PostgreSQL 15 reads the source's timeline from its pg_control, which
   * a just-promoted primary updates only at its first checkpoint: without one it says
   * "no rewind required" and the rewound mirror cannot follow the new timeline.
   */
  private async checkpoint(primary: SegmentRow): Promise<void> {
    try {
      await withSegmentClient(primary, this.credentials, { connectTimeoutMs: 10_000, statementTimeoutMs: false, deadlineMs: this.rebuildTimeoutMs }, (c) => c.query('CHECKPOINT'));
    } catch (e) {
      throw new HostCommandError(`CHECKPOINT on primary dbid ${primary.dbid} before pg_rewind failed: ${(e as Error).message}`);
    }
  }
}

/** PID of the postmaster recorded in the data directory's postmaster.pid, if any. */
export function postmasterPid(datadir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(datadir, 'postmaster.pid'), 'utf8').split('\n')[0].trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the instance of this data directory runs: its postmaster.pid names a live
 * (not zombie) postgres process. A stale file left by a crash counts as not running.
 */
export function isRunning(datadir: string): boolean {
  const pid = postmasterPid(datadir);
  return pid !== undefined && isPostgresAlive(pid);
}

function isPostgresAlive(pid: number): boolean {
  if (existsSync('/proc/self/stat')) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') return false;
      // The PID may have been reused by another program since the crash.
      return /postgres|postmaster/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Crashes the instance like a power cut: SIGKILL to the postmaster's process group (pg_ctl
 * starts it as a session leader, so its backends die with it), then waits until it is
 * gone. postmaster.pid stays behind, as after a real crash. Returns false if it was not running.
 */
export async function killInstance(datadir: string): Promise<boolean> {
  const pid = postmasterPid(datadir);
  if (pid === undefined || !isPostgresAlive(pid)) return false;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    process.kill(pid, 'SIGKILL');
  }
  const deadline = Date.now() + 10_000;
  while (isPostgresAlive(pid)) {
    if (Date.now() > deadline) throw new HostCommandError(`postmaster ${pid} of ${datadir} survived SIGKILL for 10 s`);
    await sleep(20);
  }
  return true;
}

/**
 * Removes a postmaster.pid whose process is gone or a zombie: PostgreSQL treats a zombie
 * (an unreaped child of a crashed postmaster's parent) as a live postmaster and refuses to start.
 */
async function clearStalePidFile(datadir: string): Promise<void> {
  if (postmasterPid(datadir) !== undefined && !isRunning(datadir)) {
    await unlink(join(datadir, 'postmaster.pid')).catch(() => undefined);
  }
}

/** Deletes what is inside a directory but keeps the directory (it may be a mount point). */
async function emptyDir(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
}

async function readTail(path: string, chars: number): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text.slice(-chars).trim();
  } catch {
    return '(no server log)';
  }
}

function checkSegment(segment: SegmentRow): void {
  const d = segment.datadir;
  if (typeof d !== 'string' || !d.startsWith('/') || /^\/+$/.test(d)) throw new ValidationError(`dbid ${segment.dbid}: datadir ${JSON.stringify(d)} must be an absolute path other than /`);
  if (!Number.isInteger(segment.port) || segment.port < 1 || segment.port > 65535) throw new ValidationError(`dbid ${segment.dbid}: port ${segment.port} is not a TCP port`);
}

/** Refuses pairs a rebuild must never act on: it would wipe the primary's own data. */
function checkPair(mirror: SegmentRow, primary: SegmentRow): void {
  checkSegment(mirror);
  checkSegment(primary);
  const issues: string[] = [];
  if (primary.dbid === mirror.dbid) issues.push(`dbid ${mirror.dbid} cannot be its own primary`);
  if (primary.content !== mirror.content) issues.push(`mirror dbid ${mirror.dbid} (content ${mirror.content}) and primary dbid ${primary.dbid} (content ${primary.content}) are not a pair`);
  if (primary.hostname === mirror.hostname && primary.datadir.replace(/\/+$/, '') === mirror.datadir.replace(/\/+$/, '')) {
    issues.push(`mirror dbid ${mirror.dbid} and primary dbid ${primary.dbid} share the data directory ${mirror.datadir}`);
  }
  if (issues.length > 0) throw new ValidationError(issues.join('; '), issues);
}
