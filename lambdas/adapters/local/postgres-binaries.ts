/**
 * Local PostgreSQL tooling for local mode and tests: where the binaries are, which OS
 * user runs them (PostgreSQL refuses to run as root, like Greenplum's `gpadmin`
 * convention), running a tool with captured output, `initdb` and the instance config a
 * segment needs (loopback only, streaming replication, `wal_log_hints` for pg_rewind,
 * optionally TLS only), the control plane's role (`scripts/fts-role.sql`) and test
 * certificates made with openssl.
 */
import { randomBytes } from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { HostCommandError, ValidationError } from '../../core/errors';
import { DEFAULT_OS_USER, writeIdentityScript, type ShellOptions } from '../aws/shell';
import { DEFAULT_DATABASE, DEFAULT_FTS_ROLE } from '../postgres/connection';

/** Characters of a tool's output kept in a HostCommandError. */
const OUTPUT_TAIL_CHARS = 2000;
/** Conf file this project owns inside each data directory, included from postgresql.conf. */
export const INSTANCE_CONF_FILE = 'fts_instance.conf';
/** Superuser role `initdbInstance` creates; local mode connects as it (trust on loopback). */
export const DEFAULT_SUPERUSER = 'postgres';
/** Unprivileged system user created when running as root and no `postgres` user exists. */
export const FALLBACK_OS_USER = 'fts';

/** The OS user PostgreSQL runs as. */
export interface PgOsUser {
  name: string;
  uid: number;
  gid: number;
  /** Home directory: libpq reads `~/.pgpass` there. */
  home: string;
}

/**
 * The PostgreSQL bin directory: env `PG_BIN` if set, else the newest
 * `/usr/lib/postgresql/<major>/bin` holding `pg_ctl`. Throws ValidationError if none.
 */
export function findPgBin(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.PG_BIN;
  if (fromEnv) {
    if (!existsSync(join(fromEnv, 'pg_ctl'))) throw new ValidationError(`PG_BIN=${fromEnv} has no pg_ctl`);
    return fromEnv;
  }
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((d) => /^\d+(\.\d+)?$/.test(d) && existsSync(join(root, d, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0) throw new ValidationError(`no PostgreSQL found under ${root}; install it or set PG_BIN`);
  return join(root, majors[0], 'bin');
}

let cachedOsUser: PgOsUser | null | undefined;

/**
 * The unprivileged OS user to run PostgreSQL as when this process is root: `postgres` if
 * it exists, else a system user `fts` created once (`useradd --system`). Undefined when
 * not root: tools then run as the current user.
 */
export function pgOsUser(): PgOsUser | undefined {
  if (cachedOsUser !== undefined) return cachedOsUser ?? undefined;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    cachedOsUser = null;
    return undefined;
  }
  let user = lookupUser('postgres');
  if (!user) {
    user = lookupUser(FALLBACK_OS_USER);
    if (!user) {
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', FALLBACK_OS_USER], { stdio: 'pipe' });
      user = lookupUser(FALLBACK_OS_USER);
    }
  }
  if (!user) throw new HostCommandError(`could not find or create an unprivileged OS user for PostgreSQL`);
  cachedOsUser = user;
  return user;
}

function lookupUser(name: string): PgOsUser | undefined {
  try {
    // getent: name:password:uid:gid:gecos:home:shell
    const fields = execFileSync('getent', ['passwd', name], { stdio: 'pipe' }).toString().trim().split(':');
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    return fields.length >= 7 && Number.isInteger(uid) && Number.isInteger(gid) ? { name, uid, gid, home: fields[5] || '/tmp' } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes `path` (and, with `recursive`, everything under it) belong to the PostgreSQL OS
 * user. A no-op when not root.
 */
export async function chownToPgUser(path: string, recursive = false): Promise<void> {
  const user = pgOsUser();
  if (!user) return;
  if (recursive) {
    // chown -R is one process instead of a tree walk in JS.
    execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, '--', path], { stdio: 'pipe' });
  } else {
    await chown(path, user.uid, user.gid);
  }
}

/** Creates a directory (and parents) owned by the PostgreSQL OS user with the given mode. */
export async function ensurePgDir(dir: string, mode = 0o700): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  await chmod(dir, mode);
  await chownToPgUser(dir);
}

/** Writes a file owned by the PostgreSQL OS user, atomically (temp file + rename). */
export async function writePgFile(path: string, content: string, mode = 0o600): Promise<void> {
  const tmp = `${path}.fts-tmp`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await chownToPgUser(tmp);
  await rename(tmp, path);
}

/** Options of one tool run. */
export interface RunPgOptions {
  /** Kill the tool after this long; default 120 s. */
  timeoutMs?: number;
  /** Extra environment variables (e.g. PGPASSWORD; never logged). */
  env?: Record<string, string>;
  /** Exit codes that count as success; default [0]. */
  okExitCodes?: number[];
  /** Bin directory; default {@link findPgBin}. */
  pgBin?: string;
}

/** What a tool printed and how it ended. */
export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a PostgreSQL tool (`initdb`, `pg_ctl`, `pg_rewind`, ...) as the PostgreSQL OS user
 * and captures its output. Throws HostCommandError with the exit code and the output's
 * tail when it exits with a code not in `okExitCodes`, cannot start, or times out.
 */
export function runPgBinary(tool: string, args: readonly string[], options: RunPgOptions = {}): Promise<RunResult> {
  if (!/^[a-z_]+$/.test(tool)) return Promise.reject(new ValidationError(`not a PostgreSQL tool name: ${tool}`));
  const bin = join(options.pgBin ?? findPgBin(), tool);
  const user = pgOsUser();
  const timeoutMs = options.timeoutMs ?? 120_000;
  const ok = options.okExitCodes ?? [0];
  const env = toolEnv(user ? { HOME: user.home, USER: user.name, LOGNAME: user.name } : undefined);
  Object.assign(env, options.env ?? {});
  // cwd `/`: the OS user may not be able to enter the caller's working directory.
  return runCaptured(tool, bin, args, { cwd: '/', env, uid: user?.uid, gid: user?.gid }, timeoutMs, ok);
}

/** The caller's environment without libpq variables (the arguments say where to connect), C locale, plus `extra`. */
function toolEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
  return Object.assign(env, { LC_ALL: 'C', LANG: 'C' }, extra ?? {});
}

interface SpawnSettings {
  cwd: string;
  env: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  /** Own process group, killed as a whole at the timeout (a script's tools die with it). */
  detached?: boolean;
}

function runCaptured(what: string, file: string, args: readonly string[], spawnSettings: SpawnSettings, timeoutMs: number, ok: number[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...spawnSettings, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (spawnSettings.detached && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new HostCommandError(`${what} could not start: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const exitCode = code ?? -1;
      if (!timedOut && ok.includes(exitCode)) {
        resolve({ exitCode, stdout, stderr });
        return;
      }
      const output = tail(`${stdout}\n${stderr}`.trim());
      const why = timedOut ? `timed out after ${timeoutMs} ms` : signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
      reject(new HostCommandError(`${what} ${why}: ${output.split('\n').slice(-3).join(' | ')}`, exitCode, output));
    });
  });
}

/**
 * Shell options (../aws/shell) for host scripts run on this machine: as root they switch
 * to the PostgreSQL OS user with `runuser` ({@link pgOsUser}); otherwise the tools run
 * as this process's user (`runAs: 'none'`).
 */
export function localShellOptions(pgBin?: string): ShellOptions {
  const user = pgOsUser();
  if (user) return { osUser: user.name, runAs: 'runuser', pgBin: pgBin ?? findPgBin() };
  let self = DEFAULT_OS_USER;
  try {
    self = userInfo().username;
  } catch {
    // No passwd entry for this uid: the name only appears in a comment of the script.
  }
  return { osUser: /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(self) ? self : DEFAULT_OS_USER, runAs: 'none', pgBin: pgBin ?? findPgBin() };
}

/** Options of {@link runHostScript}. */
export interface HostScriptOptions {
  /** Kill the script (its whole process group) after this long; default 120 s. */
  timeoutMs?: number;
  /** Extra environment variables (e.g. PGPASSWORD; passed on by runuser, never logged). */
  env?: Record<string, string>;
  /** Names the script in errors; default `host script`. */
  what?: string;
}

/**
 * Runs a bash script built by ../aws/shell as this process (root switches to the
 * PostgreSQL user inside the script) and captures its output. Throws HostCommandError
 * with the exit code and the output's tail unless it exits 0.
 */
export function runHostScript(script: string, options: HostScriptOptions = {}): Promise<RunResult> {
  return runCaptured(options.what ?? 'host script', 'bash', ['-c', script], { cwd: '/', env: toolEnv(options.env), detached: true }, options.timeoutMs ?? 120_000, [0]);
}

function tail(s: string): string {
  return s.length > OUTPUT_TAIL_CHARS ? s.slice(-OUTPUT_TAIL_CHARS) : s;
}

/** Files of a background host job's directory ({@link startHostJob}). */
export const HOST_JOB_FILES = {
  /** The script, as given. */
  script: 'script.sh',
  /** `<pid> <start time in clock ticks>` of the job's process, which leads its own process group. */
  pid: 'pid',
  stdout: 'stdout',
  stderr: 'stderr',
  /** The script's exit code, written (temp file + rename) when it ends; absent while it runs or when it was killed. */
  exit: 'exit',
  /** Written by {@link cancelHostJob} before it stops the job. */
  cancelled: 'cancelled',
} as const;

/** Characters of each output file {@link readHostJob} returns (the end). */
const JOB_OUTPUT_READ_CHARS = 256 * 1024;

/**
 * Bash that runs the job's script with its output in files, then records its exit code.
 * Killed (with the script) it records nothing: that absence is how a killed job is told
 * from one that ended.
 */
const JOB_WRAPPER = [
  'bash "$1/script.sh" > "$1/stdout" 2> "$1/stderr" < /dev/null',
  'rc=$?',
  'printf \'%s\\n\' "$rc" > "$1/exit.tmp" && mv -f -- "$1/exit.tmp" "$1/exit"',
].join('\n');

/** Options of {@link startHostJob}. */
export interface HostJobOptions {
  /** Extra environment variables (e.g. PGPASSWORD; passed on by runuser, never logged). */
  env?: Record<string, string>;
}

/**
 * Starts a bash script built by ../aws/shell as a background job of this machine: a
 * detached `bash` (its own session and process group, so it outlives this process and
 * can be stopped as a whole) that writes the script's stdout, stderr and finally its exit
 * code into `dir` ({@link HOST_JOB_FILES}; created, mode 700). Returns once it runs.
 */
export async function startHostJob(dir: string, script: string, options: HostJobOptions = {}): Promise<{ pid: number }> {
  if (!dir.startsWith('/')) throw new ValidationError(`job directory ${dir} must be an absolute path`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, HOST_JOB_FILES.script), script, { mode: 0o600 });
  const child = spawn('bash', ['-c', JOB_WRAPPER, 'fts-host-job', dir], { cwd: '/', env: toolEnv(options.env), detached: true, stdio: 'ignore' });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new HostCommandError(`host job in ${dir} could not start: ${e.message}`)));
    child.once('spawn', () => resolve(child.pid as number));
  });
  // Not waited for: the job is polled through its files.
  child.unref();
  await writeFile(join(dir, HOST_JOB_FILES.pid), `${pid} ${processStartTime(pid) ?? ''}\n`, { mode: 0o600 });
  return { pid };
}

/** What a background host job's files and processes say. */
export interface HostJobState {
  /**
   * `running`: no exit code yet and processes of its group live; `exited`: it wrote its
   * exit code; `vanished`: neither: it was killed (kill -9, the OOM killer, a cancel) or
   * the machine restarted, so no exit code will ever come.
   */
  state: 'running' | 'exited' | 'vanished';
  exitCode?: number;
  /** {@link cancelHostJob} was called for it. */
  cancelled: boolean;
  pid?: number;
  /** The end of its stdout and stderr so far. */
  stdout: string;
  stderr: string;
}

/** Reads a background host job's state. Throws ValidationError when `dir` is not a job directory. */
export async function readHostJob(dir: string): Promise<HostJobState> {
  if (!dir.startsWith('/') || !existsSync(join(dir, HOST_JOB_FILES.script))) throw new ValidationError(`${dir} is not a host job directory`);
  const exitCode = async (): Promise<number | undefined> => {
    const text = await readFile(join(dir, HOST_JOB_FILES.exit), 'utf8').catch(() => undefined);
    const code = text === undefined ? NaN : Number(text.trim());
    return Number.isInteger(code) ? code : undefined;
  };
  const cancelled = existsSync(join(dir, HOST_JOB_FILES.cancelled));
  // startHostJob writes the pid file before it returns the job to anyone.
  const [pidField, startField] = (await readFile(join(dir, HOST_JOB_FILES.pid), 'utf8').catch(() => '')).trim().split(/\s+/);
  const pid = Number(pidField) > 0 ? Number(pidField) : undefined;
  let code = await exitCode();
  let state: HostJobState['state'] = 'exited';
  if (code === undefined) {
    const alive = pid !== undefined && jobGroupAlive(pid, startField);
    // It may have ended between the two reads.
    code = await exitCode();
    if (code === undefined) state = alive ? 'running' : 'vanished';
  }
  const [stdout, stderr] = await Promise.all([readEnd(join(dir, HOST_JOB_FILES.stdout)), readEnd(join(dir, HOST_JOB_FILES.stderr))]);
  return { state, ...(code !== undefined ? { exitCode: code } : {}), cancelled, ...(pid !== undefined ? { pid } : {}), stdout, stderr };
}

/**
 * Stops a background host job: marks it cancelled, SIGTERM to its process group, SIGKILL
 * to what is left after `graceMs`, then waits until the group is gone. No error when it
 * is already over. Processes the script started in a session of their own (a postmaster
 * started by pg_ctl) are not part of the job and keep running.
 */
export async function cancelHostJob(dir: string, graceMs = 5000): Promise<void> {
  const job = await readHostJob(dir);
  if (job.state !== 'running' || job.pid === undefined) return;
  await writeFile(join(dir, HOST_JOB_FILES.cancelled), `${new Date().toISOString()}\n`);
  const pgid = job.pid;
  const startTime = readFileSync(join(dir, HOST_JOB_FILES.pid), 'utf8').trim().split(/\s+/)[1];
  for (const [signal, waitMs] of [['SIGTERM', graceMs], ['SIGKILL', 10_000]] as const) {
    if (!jobGroupAlive(pgid, startTime)) return;
    try {
      process.kill(-pgid, signal);
    } catch {
      // The group ended meanwhile.
    }
    const deadline = Date.now() + waitMs;
    while (jobGroupAlive(pgid, startTime) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
  if (jobGroupAlive(pgid, startTime)) throw new HostCommandError(`host job ${dir} (process group ${pgid}) survived SIGKILL for 10 s`);
}

/** The start time (clock ticks since boot, /proc/<pid>/stat field 22) of a process, told apart from a later one with the same PID. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Whether the job's process group (led by `pgid`, which was started at `startTime`) still
 * has a live (not zombie) process. A PID is not reused while a process group of that
 * number exists, so members of group `pgid` are the job's even when its leader is gone;
 * a leader of another start time is a later process that reused the number.
 */
function jobGroupAlive(pgid: number, startTime: string | undefined): boolean {
  if (!existsSync('/proc/self/stat')) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  // After the command name: state, ppid, pgrp, ..., starttime (the 20th).
  const fieldsOf = (pid: string): string[] | undefined => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    } catch {
      return undefined;
    }
  };
  const live = (fields: string[]): boolean => fields[0] !== 'Z' && fields[0] !== 'X';
  const leader = fieldsOf(String(pgid));
  if (leader && startTime && leader[19] !== startTime) return false;
  if (leader && live(leader)) return true;
  return readdirSync('/proc').some((entry) => {
    if (!/^\d+$/.test(entry)) return false;
    const fields = fieldsOf(entry);
    return fields !== undefined && Number(fields[2]) === pgid && live(fields);
  });
}

/** The last {@link JOB_OUTPUT_READ_CHARS} bytes of a file (empty when missing). */
async function readEnd(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, JOB_OUTPUT_READ_CHARS);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}

/** Options of {@link initdbInstance}. */
export interface InitdbOptions {
  /** Superuser role name; default `postgres`. */
  superuser?: string;
  /** `initdb --data-checksums` (pg_rewind also works with them instead of wal_log_hints). */
  dataChecksums?: boolean;
  /** `initdb --no-sync`: faster for tests; never for real data. */
  noSync?: boolean;
  pgBin?: string;
}

/**
 * Initializes an empty data directory owned by the PostgreSQL OS user (trust auth,
 * UTF8, C locale). Throws HostCommandError if initdb fails (e.g. the directory is not empty).
 */
export async function initdbInstance(datadir: string, options: InitdbOptions = {}): Promise<void> {
  if (!datadir.startsWith('/')) throw new ValidationError(`datadir ${datadir} must be an absolute path`);
  await ensurePgDir(datadir);
  const args = ['-D', datadir, '-U', options.superuser ?? DEFAULT_SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C'];
  if (options.dataChecksums) args.push('--data-checksums');
  if (options.noSync) args.push('--no-sync');
  await runPgBinary('initdb', args, { pgBin: options.pgBin, timeoutMs: 180_000 });
}

/** Settings a segment instance runs with; see {@link writeInstanceConfig}. */
export interface InstanceConfig {
  port: number;
  /**
   * The instance's catalog dbid and content id, written as `fts.dbid` and `fts.content`
   * into postgresql.auto.conf (Greenplum's `gp_dbid`): probes and control calls check
   * them. Give both or neither.
   */
  dbid?: number;
  content?: number;
  /** Default `127.0.0.1`. */
  listenAddresses?: string;
  /** Default `''` (no Unix socket): pg_basebackup copies the config to the mirror, a shared socket dir would be confusing. */
  unixSocketDirectories?: string;
  /** Default 10. */
  maxWalSenders?: number;
  /** Default 10. */
  maxReplicationSlots?: number;
  /** Default 50. */
  maxConnections?: number;
  /** Default `16MB`. */
  sharedBuffers?: string;
  /** Default `100ms`: promotion right after a primary death takes 0.2 s instead of 5 s (measured on PostgreSQL 15). */
  walRetrieveRetryInterval?: string;
  /** `max_slot_wal_keep_size`: caps WAL a slot of a long-dead mirror retains; default -1 (unlimited, PostgreSQL's default). */
  maxSlotWalKeepSize?: string;
  /** `wal_keep_size`: WAL kept beyond slots, so a mirror rewound after a failover finds what it needs; default `256MB`. */
  walKeepSize?: string;
  /**
   * `wal_sender_timeout`; default `6s`. The walsender pings its mirror after half of it
   * without a reply (the mirror's own status replies come every
   * `wal_receiver_status_interval`, 10 s), so a mirror hears from a live primary every
   * 3 s even when nothing is written: the PromoteMirror second opinion relies on it.
   */
  walSenderTimeout?: string;
  /** Default `on`; tests may turn it off for speed. */
  fsync?: boolean;
  /** Networks (CIDR) trusted without password for normal and replication connections; default `['127.0.0.1/32']`. */
  trustedNetworks?: string[];
  /** pg_hba lines placed before the trust lines (first match wins), e.g. a password-checked role ({@link ftsRoleHbaLines}). */
  extraHbaLines?: string[];
  /** TLS: `ssl = on` with this certificate and key (absolute paths, readable by the PostgreSQL OS user; e.g. {@link makeServerCertificate}). */
  ssl?: { certFile: string; keyFile: string };
  /** TCP connections only over TLS: the trust lines are `hostssl`, not `host` (needs `ssl`); default false. */
  tlsOnly?: boolean;
}

/**
 * Writes the instance's settings into `fts_instance.conf` (included at the end of
 * postgresql.conf, so it wins over initdb's defaults; ALTER SYSTEM still wins over it)
 * and rewrites pg_hba.conf: extra lines, then trust for local sockets and the trusted
 * networks, normal and replication connections. With `dbid` and `content` it also writes
 * the instance's identity into postgresql.auto.conf (the host script of
 * ../aws/shell's writeIdentityScript). Idempotent; takes effect at the next start (or reload).
 */
export async function writeInstanceConfig(datadir: string, config: InstanceConfig): Promise<void> {
  if (!Number.isInteger(config.port) || config.port < 1 || config.port > 65535) throw new ValidationError(`port ${config.port} is not a TCP port`);
  if ((config.dbid === undefined) !== (config.content === undefined)) throw new ValidationError('writeInstanceConfig needs both dbid and content, or neither');
  if (config.tlsOnly && !config.ssl) throw new ValidationError('tlsOnly needs ssl (a certificate and key): no TCP connection could be made');
  const q = (v: string): string => `'${v.replace(/['\\]/g, (c) => c + c)}'`;
  const lines = [
    '# written by serverless-fts (writeInstanceConfig); edits are overwritten',
    `port = ${config.port}`,
    `listen_addresses = ${q(config.listenAddresses ?? '127.0.0.1')}`,
    `unix_socket_directories = ${q(config.unixSocketDirectories ?? '')}`,
    `max_connections = ${config.maxConnections ?? 50}`,
    `shared_buffers = ${q(config.sharedBuffers ?? '16MB')}`,
    `wal_level = replica`,
    `max_wal_senders = ${config.maxWalSenders ?? 10}`,
    `max_replication_slots = ${config.maxReplicationSlots ?? 10}`,
    `max_slot_wal_keep_size = ${q(config.maxSlotWalKeepSize ?? '-1')}`,
    `wal_keep_size = ${q(config.walKeepSize ?? '256MB')}`,
    `wal_sender_timeout = ${q(config.walSenderTimeout ?? '6s')}`,
    `hot_standby = on`,
    // pg_rewind needs hint-bit changes WAL-logged (or data checksums).
    `wal_log_hints = on`,
    `wal_retrieve_retry_interval = ${q(config.walRetrieveRetryInterval ?? '100ms')}`,
    `synchronous_commit = on`,
    `fsync = ${config.fsync === false ? 'off' : 'on'}`,
    `logging_collector = off`,
    ...(config.ssl ? ['ssl = on', `ssl_cert_file = ${q(config.ssl.certFile)}`, `ssl_key_file = ${q(config.ssl.keyFile)}`] : []),
    '',
  ];
  await writePgFile(join(datadir, INSTANCE_CONF_FILE), lines.join('\n'));

  const mainConf = join(datadir, 'postgresql.conf');
  const include = `include_if_exists = '${INSTANCE_CONF_FILE}'`;
  const current = await readFile(mainConf, 'utf8');
  if (!current.split('\n').some((l) => l.trim() === include)) {
    await writePgFile(mainConf, `${current.replace(/\n*$/, '\n')}${include}\n`);
  }

  const nets = config.trustedNetworks ?? ['127.0.0.1/32'];
  const host = config.tlsOnly ? 'hostssl' : 'host';
  const hba = [
    '# written by serverless-fts (writeInstanceConfig)',
    ...(config.extraHbaLines ?? []),
    // Unix-socket connections (when unixSocketDirectories is set) come from this host's users.
    'local all all trust',
    'local replication all trust',
    ...nets.flatMap((net) => [`${host} all all ${net} trust`, `${host} replication all ${net} trust`]),
    '',
  ];
  await writePgFile(join(datadir, 'pg_hba.conf'), hba.join('\n'));

  if (config.dbid !== undefined && config.content !== undefined) {
    await runHostScript(writeIdentityScript({ dbid: config.dbid, content: config.content, datadir }, localShellOptions()), { what: `identity of ${datadir}`, timeoutMs: 30_000 });
  }
}

/** The control plane's role script, `scripts/fts-role.sql` (see docs/deploy.md, "The database role"). */
export const FTS_ROLE_SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'fts-role.sql');

/** Options of {@link applyFtsRoleScript}. */
export interface FtsRoleScriptOptions {
  /** Where the instance listens. */
  address: string;
  port: number;
  /** Superuser that runs the script (trusted on loopback); default `postgres`. */
  superuser?: string;
  /** Role to create or update; default {@link DEFAULT_FTS_ROLE}. */
  role?: string;
  /** Its new password (through the environment, never on a command line); default: unchanged. */
  password?: string;
  /** Extra libpq environment for psql (e.g. `PGSSLMODE`, `PGPASSWORD` of the superuser). */
  env?: Record<string, string>;
  pgBin?: string;
  /** Default 60 s. */
  timeoutMs?: number;
}

/**
 * Runs `scripts/fts-role.sql` with psql (as this process's user) on one instance,
 * database `postgres`: creates or updates the control plane's role without superuser
 * and the tables it writes. An instance in recovery is left alone (it replicates its
 * primary's). Throws HostCommandError with psql's message when the script fails.
 */
export function applyFtsRoleScript(options: FtsRoleScriptOptions): Promise<RunResult> {
  const role = options.role ?? DEFAULT_FTS_ROLE;
  const args = ['-X', '-q', '-w', '-v', 'ON_ERROR_STOP=1', '-h', options.address, '-p', String(options.port), '-U', options.superuser ?? DEFAULT_SUPERUSER, '-d', DEFAULT_DATABASE];
  args.push('-v', `fts_role=${role}`, '-f', FTS_ROLE_SCRIPT);
  const env = toolEnv({ ...(options.env ?? {}), ...(options.password !== undefined ? { FTS_ROLE_PASSWORD: options.password } : {}) });
  return runCaptured(`fts-role.sql for role ${role} on ${options.address}:${options.port}`, join(options.pgBin ?? findPgBin(), 'psql'), args, { cwd: '/', env }, options.timeoutMs ?? 60_000, [0]);
}

/**
 * pg_hba.conf lines that let the control plane's role into database `postgres` from
 * `networks` (default loopback) with `method` (default scram-sha-256: the password of
 * the Lambdas' secret), over TLS only (`hostssl`) when `tls`. No `replication` line: the
 * role has the REPLICATION attribute for slots, not to stream.
 */
export function ftsRoleHbaLines(options: { role?: string; networks?: string[]; method?: 'scram-sha-256' | 'trust' | 'cert'; tls?: boolean } = {}): string[] {
  const role = options.role ?? DEFAULT_FTS_ROLE;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(role)) throw new ValidationError(`role ${role} must be a plain identifier to be named in pg_hba.conf`);
  return (options.networks ?? ['127.0.0.1/32']).map((net) => `${options.tls ? 'hostssl' : 'host'} ${DEFAULT_DATABASE} ${role} ${net} ${options.method ?? 'scram-sha-256'}`);
}

/** A certificate authority made by {@link makeTestCa}. */
export interface TestCa {
  certFile: string;
  keyFile: string;
  /** The CA certificate as PEM text (what a client trusts). */
  pem: string;
}

/** A server certificate and key made by {@link makeServerCertificate}, readable by the PostgreSQL OS user only. */
export interface ServerCertificate {
  certFile: string;
  keyFile: string;
}

/** Runs openssl in `dir` (keys: EC P-256, quick to make). */
function openssl(dir: string, args: readonly string[]): Promise<RunResult> {
  return runCaptured(`openssl ${args[0]}`, 'openssl', args, { cwd: dir, env: toolEnv(undefined) }, 60_000, [0]);
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * Makes a self-signed certificate authority `<name>.crt`/`<name>.key` in `dir` (made a
 * directory of the PostgreSQL OS user) with openssl, valid for two days: for tests only.
 */
export async function makeTestCa(dir: string, name = 'fts-test-ca'): Promise<TestCa> {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new ValidationError(`certificate name ${name} must be letters, digits, _ . -`);
  await ensurePgDir(dir, 0o700);
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await openssl(dir, ['req', '-x509', '-new', ...EC_KEY, '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { certFile, keyFile, pem: await readFile(certFile, 'utf8') };
}

/**
 * Makes a server certificate `<name>.crt`/`<name>.key` in `dir` signed by `ca`, for
 * `altNames` (subjectAltName entries, e.g. `DNS:localhost`, `IP:127.0.0.1`), valid for
 * two days; both files belong to the PostgreSQL OS user with mode 600, as PostgreSQL
 * requires of its key. For tests only.
 */
export async function makeServerCertificate(dir: string, ca: TestCa, options: { name?: string; altNames?: string[] } = {}): Promise<ServerCertificate> {
  const name = options.name ?? 'server';
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new ValidationError(`certificate name ${name} must be letters, digits, _ . -`);
  const altNames = options.altNames ?? ['DNS:localhost', 'IP:127.0.0.1'];
  if (altNames.some((a) => !/^(DNS:[A-Za-z0-9*_.-]+|IP:[0-9A-Fa-f:.]+)$/.test(a))) throw new ValidationError(`subjectAltName entries must be DNS:<name> or IP:<address>: ${altNames.join(', ')}`);
  await ensurePgDir(dir, 0o700);
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, [`subjectAltName = ${altNames.join(',')}`, 'basicConstraints = CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment', 'extendedKeyUsage = serverAuth', ''].join('\n'));
  await openssl(dir, ['req', '-new', ...EC_KEY, '-keyout', keyFile, '-out', csr, '-subj', `/CN=${name}`]);
  await openssl(dir, ['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-out', certFile, '-extfile', ext]);
  for (const file of [certFile, keyFile]) {
    await chmod(file, 0o600);
    await chownToPgUser(file);
  }
  return { certFile, keyFile };
}
