/**
 * SegmentHost for local mode: the segment instances are child processes on this machine.
 * Every operation runs the same bash script SsmSegmentHost sends to EC2 hosts (built by
 * ../aws/shell), as a local `bash` process: as root the scripts switch to the PostgreSQL
 * OS user with `runuser`, otherwise the tools run as this process's user. A background
 * rebuild (startRebuild) runs as a detached bash whose output and exit code go to a job
 * directory, which is the job's id.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostCommandError, ValidationError } from '../../core/errors';
import type { SegmentRow } from '../../core/model';
import type { FenceReport, HostJob, HostJobStatus, RebuildMethod, SegmentControl, SegmentHost, StopReport } from '../../ports/segments';
import {
  DEFAULT_FENCE_TIMEOUT_SECONDS,
  fenceScript,
  outputTail,
  parseFenceReport,
  parseProgress,
  parseStopReport,
  rebuildAsMirrorScript,
  rebuildOutcome,
  REBUILD_STATE_DIR,
  startScript,
  stopScript,
  writeIdentityScript,
  writeMirrorConfigScript,
  type ShellOptions,
  type StartOptions,
} from '../aws/shell';
import { trustCredentials, type PgCredentialsProvider } from '../postgres/connection';
import { PgSegmentControl } from '../postgres/control';
import { cancelHostJob, chownToPgUser, DEFAULT_SUPERUSER, localShellOptions, readHostJob, runHostScript, startHostJob, type RunResult } from './postgres-binaries';

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
  /** Seconds a fence gives `pg_ctl stop -m immediate` before it kills the instance; default 10. */
  fenceTimeoutSeconds?: number;
  /**
   * Directory of the background jobs' directories (absolute); default `.fts-jobs` in the
   * parent of the mirror's data directory, where the rebuild script keeps its lock too.
   */
  jobsDir?: string;
}

/** Extra milliseconds a script may run past the timeouts of the tools inside it. */
const SCRIPT_GRACE_MS = 15_000;
/** File of a job directory naming the rebuild, for messages. */
const JOB_META_FILE = 'job.json';
/** File of a job directory in which the rebuild script keeps its latest PROGRESS line. */
const JOB_PROGRESS_FILE = 'progress';

/** Starts, stops, fences and rebuilds local segment instances with the host scripts. */
export class LocalSegmentHost implements SegmentHost {
  private readonly pgBin?: string;
  private readonly credentials: PgCredentialsProvider;
  private readonly control: Pick<SegmentControl, 'ensureSlot'>;
  private readonly pgCtlTimeoutSeconds: number;
  private readonly rebuildTimeoutMs: number;
  private readonly walRetrieveRetryInterval: string;
  private readonly logFileOf: (segment: SegmentRow) => string;
  private readonly fenceTimeoutSeconds: number;
  private readonly jobsDir?: string;

  constructor(options: LocalSegmentHostOptions = {}) {
    this.pgBin = options.pgBin;
    this.credentials = options.replicationCredentials ?? trustCredentials(DEFAULT_SUPERUSER);
    this.control = options.control ?? new PgSegmentControl({ credentials: this.credentials });
    this.pgCtlTimeoutSeconds = options.pgCtlTimeoutSeconds ?? 60;
    this.rebuildTimeoutMs = options.rebuildTimeoutMs ?? 600_000;
    this.walRetrieveRetryInterval = options.walRetrieveRetryInterval ?? '100ms';
    this.logFileOf = options.logFileOf ?? ((s) => join(dirname(s.datadir), `${basename(s.datadir)}.log`));
    this.fenceTimeoutSeconds = options.fenceTimeoutSeconds ?? DEFAULT_FENCE_TIMEOUT_SECONDS;
    if (options.jobsDir !== undefined && !isAbsolute(options.jobsDir)) throw new ValidationError(`jobsDir ${options.jobsDir} must be an absolute path`);
    this.jobsDir = options.jobsDir;
  }

  /**
   * Starts the instance on the catalog's port (`pg_ctl start -w`, which returns once it
   * accepts connections or, for a mirror, has reached a consistent standby state), after
   * removing a stale postmaster.pid. A no-op if it runs. Throws HostCommandError with the
   * server log's tail on failure.
   */
  async start(segment: SegmentRow, start: StartOptions = {}): Promise<void> {
    const { options, env } = await this.shellOptions(segment);
    await this.run(`start of dbid ${segment.dbid}`, startScript(segment, options, start), env, this.pgCtlMs());
  }

  /**
   * Stops the instance: `fast` (clean shutdown, a checkpoint) or `immediate` (no
   * checkpoint: the next start runs crash recovery). An instance that is not running
   * counts as stopped. Reports whether it ran and what pg_controldata says afterwards.
   */
  async stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<StopReport> {
    const { options, env } = await this.shellOptions(segment);
    const result = await this.run(`stop -m ${mode} of dbid ${segment.dbid}`, stopScript(segment, mode, options), env, this.pgCtlMs());
    return parseStopReport(result.stdout);
  }

  /**
   * Fences the instance (see SegmentHost.fence and ../aws/shell's fenceScript): standby
   * config pointing at `newPrimary` first, then an immediate stop, then SIGKILL for what
   * did not stop. Idempotent.
   */
  async fence(segment: SegmentRow, newPrimary: SegmentRow | undefined): Promise<FenceReport> {
    const { options, env } = await this.shellOptions(segment);
    const script = fenceScript(segment, newPrimary, options);
    const result = await this.run(`fence of dbid ${segment.dbid}`, script, env, 2 * this.fenceTimeoutSeconds * 1000 + SCRIPT_GRACE_MS);
    return parseFenceReport(result.stdout);
  }

  /**
   * Makes the instance a standby of `primary`: sets `primary_conninfo` (application_name
   * = the mirror's slot name, which the primary's synchronous_standby_names lists),
   * `primary_slot_name`, `wal_retrieve_retry_interval` and the mirror's own `fts.dbid` and
   * `fts.content` in postgresql.auto.conf, keeping its other lines, and creates
   * `standby.signal`. Takes effect at the next start.
   */
  async writeMirrorConfig(mirror: SegmentRow, primary: SegmentRow): Promise<void> {
    const { options, env } = await this.shellOptions(mirror);
    await this.run(`mirror config of dbid ${mirror.dbid}`, writeMirrorConfigScript(mirror, primary, options), env, SCRIPT_GRACE_MS);
  }

  /** Writes the instance's `fts.dbid` and `fts.content` into its postgresql.auto.conf (e.g. after initdb). */
  async writeIdentity(segment: SegmentRow): Promise<void> {
    const { options, env } = await this.shellOptions(segment);
    await this.run(`identity of dbid ${segment.dbid}`, writeIdentityScript(segment, options), env, SCRIPT_GRACE_MS);
  }

  /**
   * Rebuilds `mirror` from `primary` and starts it streaming: makes sure its slot exists
   * on the primary (so the WAL it needs is kept from now on), then one script stops it
   * (fast; a crashed instance is left as is), runs `pg_rewind` (incremental; PostgreSQL
   * 13+ first runs crash recovery in single-user mode if the target did not shut down
   * cleanly) or `pg_basebackup` through the slot (full copy into the emptied data
   * directory), writes the mirror config and starts it. It is {@link startRebuild} polled
   * until it ends (cancelled after `rebuildTimeoutMs` plus the start and stop timeouts);
   * the job directory is removed afterwards. Throws HostCommandError with the exit code
   * and the output's tail when it fails.
   */
  async rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void> {
    const job = await this.startRebuild(mirror, primary, method);
    const timeoutMs = this.rebuildTimeoutMs + 2 * this.pgCtlMs();
    const deadline = Date.now() + timeoutMs;
    let over = false;
    try {
      for (let wait = 10; ; wait = Math.min(wait * 2, 200)) {
        const status = await this.jobStatus(job);
        if (status.state === 'succeeded') {
          over = true;
          return;
        }
        if (status.state === 'failed') {
          over = true;
          const files = await readHostJob(job.id).catch(() => undefined);
          const output = files ? `${files.stdout}\n${files.stderr}`.trim().slice(-2000) : undefined;
          throw new HostCommandError(status.message ?? `rebuild of dbid ${mirror.dbid} by ${method} failed`, status.exitCode, output);
        }
        if (Date.now() > deadline) {
          await this.cancelJob(job);
          over = true;
          throw new HostCommandError(`rebuild of dbid ${mirror.dbid} by ${method} timed out after ${timeoutMs} ms; cancelled it`);
        }
        await sleep(wait);
      }
    } finally {
      if (over) await rm(job.id, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /**
   * Starts the rebuild of {@link rebuildAsMirror} in the background and returns at once:
   * ensures the mirror's slot on the primary, then runs the rebuild script (progress on,
   * kept in the job directory's `progress` file) as a detached `bash` in its own process
   * group, writing stdout, stderr and finally its exit code into a new job directory
   * (`<jobsDir>/<dbid>-<time>-<random>`), whose absolute path is the job's id.
   */
  async startRebuild(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<HostJob> {
    const { options, env } = await this.shellOptions(mirror);
    const jobsDir = this.jobsDir ?? join(dirname(resolvePath(mirror.datadir)), REBUILD_STATE_DIR);
    const startedAt = new Date().toISOString();
    const dir = join(jobsDir, `${mirror.dbid}-${startedAt.replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`);
    // Built (and so validated) before anything is done to the primary.
    const script = rebuildAsMirrorScript(mirror, primary, method, { ...options, progressFile: join(dir, JOB_PROGRESS_FILE) });
    await this.control.ensureSlot(primary, mirror.dbid);
    if (this.jobsDir === undefined && !existsSync(dirname(jobsDir))) {
      // A recovery to a new location: the data directory's parent belongs to the PostgreSQL user, as the script would make it.
      await mkdir(dirname(jobsDir), { recursive: true });
      await chownToPgUser(dirname(jobsDir));
    }
    await mkdir(jobsDir, { recursive: true, mode: 0o700 });
    await mkdir(dir, { mode: 0o700 });
    const what = `rebuild of dbid ${mirror.dbid} (content ${mirror.content}) by ${method} from dbid ${primary.dbid}`;
    await writeFile(join(dir, JOB_META_FILE), `${JSON.stringify({ what, dbid: mirror.dbid, datadir: mirror.datadir, method, startedAt })}\n`, { mode: 0o600 });
    await startHostJob(dir, script, { env });
    return { id: dir, dbid: mirror.dbid, startedAt };
  }

  /**
   * Where a background rebuild stands, from its job directory: no exit code and its
   * processes alive is `running` (with the progress file's latest report); an exit code
   * is `succeeded` (0) or `failed` with the parsed RECOVERY line, `wipeRefused` and the
   * tail of stderr; no exit code and no process left (killed, cancelled, the machine
   * restarted) is `failed` with a message that says so: start the rebuild again.
   */
  async jobStatus(job: HostJob): Promise<HostJobStatus> {
    const dir = jobDir(job);
    if (!existsSync(dir)) return { state: 'failed', message: `the job directory ${dir} of the rebuild of dbid ${job.dbid} is gone; start the rebuild again` };
    const files = await readHostJob(dir);
    const what = await readFile(join(dir, JOB_META_FILE), 'utf8')
      .then((text) => String((JSON.parse(text) as { what?: unknown }).what ?? ''))
      .catch(() => '');
    const name = `${what || `rebuild of dbid ${job.dbid}`} (job ${dir})`;
    const progressReports = parseProgress(await readFile(join(dir, JOB_PROGRESS_FILE), 'utf8').catch(() => ''));
    const fileProgress = progressReports[progressReports.length - 1];
    if (files.state === 'running') return fileProgress ? { state: 'running', progress: fileProgress } : { state: 'running' };
    const outcome = rebuildOutcome(files.exitCode, files.stdout, files.stderr);
    if (!outcome.progress && fileProgress) outcome.progress = fileProgress;
    if (files.state === 'exited' && files.exitCode === 0) return { state: 'succeeded', exitCode: 0, ...outcome };
    const tailText = outputTail(files.stderr);
    if (files.state === 'exited') {
      const code = files.exitCode as number;
      const signal = code > 128 && code < 160 ? ` (killed by signal ${code - 128})` : '';
      return { state: 'failed', exitCode: code, ...outcome, message: `${name} exited with code ${code}${signal}${tailText ? `: ${tailText}` : ''}` };
    }
    const why = files.cancelled
      ? 'was cancelled'
      : `ended without an exit code: its process${files.pid !== undefined ? ` group ${files.pid}` : ''} is gone (killed, e.g. kill -9 or the OOM killer, or the machine restarted); start the rebuild again, the script is idempotent`;
    return { state: 'failed', ...outcome, ...(files.cancelled ? {} : { lost: true }), message: `${name} ${why}${tailText ? `; its stderr ends with: ${tailText}` : ''}` };
  }

  /**
   * Stops a background rebuild: SIGTERM to its process group, SIGKILL after 5 s, and
   * waits until it is gone. No error when it is already over. An instance the script
   * already started keeps running (pg_ctl starts it in a session of its own).
   */
  async cancelJob(job: HostJob): Promise<void> {
    const dir = jobDir(job);
    if (!existsSync(dir)) return;
    await cancelHostJob(dir);
  }

  private pgCtlMs(): number {
    return this.pgCtlTimeoutSeconds * 1000 + SCRIPT_GRACE_MS;
  }

  /** Script options for one instance, and the environment that carries the replication password. */
  private async shellOptions(segment: SegmentRow): Promise<{ options: ShellOptions; env: Record<string, string> }> {
    const creds = await this.credentials();
    const options: ShellOptions = {
      ...localShellOptions(this.pgBin),
      replicationUser: creds.user,
      pgCtlTimeoutSeconds: this.pgCtlTimeoutSeconds,
      walRetrieveRetryInterval: this.walRetrieveRetryInterval,
      logFile: this.logFileOf(segment),
      fenceTimeoutSeconds: this.fenceTimeoutSeconds,
    };
    return { options, env: creds.password ? { PGPASSWORD: creds.password } : {} };
  }

  private run(what: string, script: string, env: Record<string, string>, timeoutMs: number): Promise<RunResult> {
    return runHostScript(script, { what, env, timeoutMs });
  }
}

/** The job directory a local job names; ValidationError for an id this adapter did not make. */
function jobDir(job: HostJob): string {
  const id = typeof job?.id === 'string' ? job.id : '';
  if (!isAbsolute(id) || /[\n\0]/.test(id)) throw new ValidationError(`job id ${JSON.stringify(id)} is not a local job directory`);
  return id;
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
 * (not zombie) process working in the data directory, as the host scripts check. A stale
 * file left by a crash, whose PID is gone, a zombie or reused by another program, counts
 * as not running.
 */
export function isRunning(datadir: string): boolean {
  const pid = postmasterPid(datadir);
  return pid !== undefined && isPostgresAlive(pid, datadir);
}

function isPostgresAlive(pid: number, datadir: string): boolean {
  if (existsSync('/proc/self/stat')) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') return false;
    } catch {
      return false;
    }
    try {
      // Every PostgreSQL process works in its data directory; a reused PID does not.
      return readlinkSync(`/proc/${pid}/cwd`) === realpathSync(datadir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EACCES' && (e as NodeJS.ErrnoException).code !== 'EPERM') return false;
      // Another user's process (not root): its command line is all we may read.
      try {
        return /postgres|postmaster/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
      } catch {
        return false;
      }
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
  if (pid === undefined || !isPostgresAlive(pid, datadir)) return false;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    process.kill(pid, 'SIGKILL');
  }
  const deadline = Date.now() + 10_000;
  while (isPostgresAlive(pid, datadir)) {
    if (Date.now() > deadline) throw new HostCommandError(`postmaster ${pid} of ${datadir} survived SIGKILL for 10 s`);
    await sleep(20);
  }
  return true;
}
