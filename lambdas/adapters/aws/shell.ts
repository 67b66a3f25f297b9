/**
 * Pure builders of the bash scripts a segment host runs to start, stop, fence and
 * rebuild a segment instance (Greenplum's gpssh + pg_ctl work). The same scripts run
 * everywhere: SsmSegmentHost sends them through SSM Run Command, LocalSegmentHost runs
 * them as local child processes, so the tests of local mode exercise the AWS scripts.
 *
 * Every script starts with `set -euo pipefail`, runs the PostgreSQL tools as the OS user
 * that owns the data directories (Greenplum's `gpadmin`), and quotes every value that
 * comes from the catalog or the options with {@link shellQuote}: a data directory is
 * operator input and must never be able to run a command. Scripts are idempotent, so a
 * workflow step that crashed can send the same script again.
 *
 * A `postmaster.pid` is trusted only when its PID is a live (not zombie) process working
 * in the data directory (every PostgreSQL process chdirs into it): after a crash the PID
 * may be an unreaped zombie or belong to another program, which `pg_ctl` would wait for
 * or signal, and which makes the postmaster refuse to start. Such a file is removed.
 */
import { HostCommandError, ValidationError } from '../../core/errors';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { FenceReport, RebuildMethod } from '../../ports/segments';

/** OS user that owns the PostgreSQL data directories by default (Greenplum's convention). */
export const DEFAULT_OS_USER = 'gpadmin';
/** PostgreSQL binaries of Debian/Ubuntu's `postgresql-15` package. */
export const DEFAULT_PG_BIN = '/usr/lib/postgresql/15/bin';
/** Seconds `pg_ctl -w` waits for a start or stop by default. */
export const DEFAULT_PG_CTL_TIMEOUT_SECONDS = 300;
/**
 * Seconds a fence gives `pg_ctl stop -m immediate` before it kills the instance, and
 * then the killed processes to disappear. An immediate stop of a healthy instance takes
 * well under a second; one that takes longer is frozen or stuck.
 */
export const DEFAULT_FENCE_TIMEOUT_SECONDS = 10;
/**
 * Mirrors retry WAL retrieval this often: with PostgreSQL's 5 s default a promotion right
 * after the primary died took 5.2 s, with 100 ms it took 0.2-0.3 s (measured on PostgreSQL 15, loopback).
 */
export const DEFAULT_WAL_RETRIEVE_RETRY_INTERVAL = '100ms';
/** Custom setting naming the instance's dbid (Greenplum's `gp_dbid`). */
export const DBID_SETTING = 'fts.dbid';
/** Custom setting naming the instance's content id (Greenplum's `gp_contentid`). */
export const CONTENT_SETTING = 'fts.content';
/** First word of the last line a fence script prints; see {@link parseFenceReport}. */
export const FENCE_REPORT_PREFIX = 'FENCE';

/**
 * How the scripts switch to the PostgreSQL OS user. SSM Run Command runs as root, so
 * `sudo` (non-interactive, `-n`) or `runuser` both work; `none` runs the tools as the
 * caller (local mode, where the caller already is that user).
 */
export type RunAs = 'sudo' | 'runuser' | 'none';

/** Options shared by every script. */
export interface ShellOptions {
  /** OS user that owns PostgreSQL; default `gpadmin`. */
  osUser?: string;
  /** Directory with `pg_ctl`, `pg_rewind`, `pg_basebackup`; default {@link DEFAULT_PG_BIN}. */
  pgBin?: string;
  /** Default `sudo`. */
  runAs?: RunAs;
  /** Role the mirror uses to connect to its primary (replication and pg_rewind); default the OS user. */
  replicationUser?: string;
  /** `pg_ctl -t`; default {@link DEFAULT_PG_CTL_TIMEOUT_SECONDS}. */
  pgCtlTimeoutSeconds?: number;
  /**
   * `wal_retrieve_retry_interval` written with the mirror config; default `100ms`.
   * An empty string leaves the instance's own setting alone.
   */
  walRetrieveRetryInterval?: string;
  /**
   * Server log `pg_ctl start -l` appends to, for the instance the script acts on (an
   * absolute path). When the script runs as root and the file is missing, it is created
   * owned by the OS user (its directory need not be writable by that user). Default
   * `<datadir>/log/startup.log`.
   */
  logFile?: string;
  /** Seconds of a fence's immediate stop, and of its wait for killed processes; default {@link DEFAULT_FENCE_TIMEOUT_SECONDS}. */
  fenceTimeoutSeconds?: number;
}

interface Resolved {
  osUser: string;
  pgBin: string;
  runAs: RunAs;
  replicationUser: string;
  pgCtlTimeoutSeconds: number;
  walRetrieveRetryInterval: string;
  logFile?: string;
  fenceTimeoutSeconds: number;
}

/** Who an instance is, as written into its `postgresql.auto.conf`. */
export type InstanceIdentity = Pick<SegmentRow, 'dbid' | 'content' | 'datadir'>;

/**
 * Quotes one value for bash: wraps it in single quotes, inside which nothing is special,
 * and writes each embedded `'` as `'\''` (close, escaped quote, reopen).
 */
export function shellQuote(value: string | number): string {
  return `'${String(value).replace(/'/g, `'\\''`)}'`;
}

/**
 * Quotes one value of a libpq connection string: single quotes, with `\` and `'`
 * backslash-escaped, so an address or user name with spaces or quotes stays one value.
 */
export function conninfoQuote(value: string | number): string {
  return `'${String(value).replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/**
 * Quotes a string value for `postgresql.conf`: single quotes, with `'` and `\` doubled
 * (the config parser reads backslash escapes), as ALTER SYSTEM writes them.
 */
export function confQuote(value: string): string {
  return `'${value.replace(/['\\]/g, (c) => c + c)}'`;
}

/**
 * The `primary_conninfo` a mirror streams with: the primary's address and port, the
 * replication user, and `application_name` = the mirror's slot name, which is the name
 * the primary's `synchronous_standby_names` lists.
 */
export function primaryConninfo(mirror: SegmentRow, primary: SegmentRow, replicationUser: string = DEFAULT_OS_USER): string {
  return [
    `host=${conninfoQuote(primary.address)}`,
    `port=${conninfoQuote(primary.port)}`,
    `user=${conninfoQuote(replicationUser)}`,
    `application_name=${conninfoQuote(mirrorSlotName(mirror.dbid))}`,
  ].join(' ');
}

/**
 * Script that starts an instance and waits until it accepts connections (a no-op if it
 * runs). A stale `postmaster.pid` is removed first. On failure it prints the tail of the
 * server log to stderr.
 */
export function startScript(segment: SegmentRow, options: ShellOptions = {}): string {
  const o = resolve(options);
  checkSegment(segment);
  return script(o, [`# start dbid ${segment.dbid} (content ${segment.content})`, ...processFunctions(o), ...startLines(o, segment)]);
}

/**
 * Script that stops an instance with `pg_ctl stop -m fast|immediate`. An instance that
 * is not running (or whose data directory is gone) counts as stopped: exit 0. A stale
 * `postmaster.pid` is removed.
 */
export function stopScript(segment: SegmentRow, mode: 'fast' | 'immediate', options: ShellOptions = {}): string {
  const o = resolve(options);
  checkSegment(segment);
  if (mode !== 'fast' && mode !== 'immediate') throw new ValidationError(`stop mode must be fast or immediate, not ${String(mode)}`);
  return script(o, [`# stop dbid ${segment.dbid} (content ${segment.content}) -m ${mode}`, ...processFunctions(o), ...stopLines(o, segment, mode)]);
}

/**
 * Script that makes an instance a standby of `primary`: rewrites `primary_conninfo`,
 * `primary_slot_name`, `wal_retrieve_retry_interval` and the instance's own identity
 * (`fts.dbid`, `fts.content`: a pg_basebackup copy carries the primary's) in
 * `postgresql.auto.conf`, keeping its other lines, and touches `standby.signal`. It does
 * not restart the instance.
 */
export function writeMirrorConfigScript(mirror: SegmentRow, primary: SegmentRow, options: ShellOptions = {}): string {
  const o = resolve(options);
  checkPair(mirror, primary);
  return script(o, [
    `# write mirror config of dbid ${mirror.dbid} (content ${mirror.content}), primary dbid ${primary.dbid}`,
    ...mirrorConfigLines(o, mirror, primary),
  ]);
}

/**
 * Script that writes the instance's identity, `fts.dbid` and `fts.content`, into its
 * `postgresql.auto.conf` (keeping the other lines), e.g. right after initdb. Takes
 * effect at the next start or reload.
 */
export function writeIdentityScript(instance: InstanceIdentity, options: ShellOptions = {}): string {
  const o = resolve(options);
  checkIdentity(instance);
  return script(o, [`# write identity of dbid ${instance.dbid} (content ${instance.content})`, ...autoConfLines(o, instance.datadir, identitySettings(instance))]);
}

/**
 * Script that fences an instance that must never accept writes again (an old primary
 * after a failover):
 *
 * 1. If the data directory does not exist (or holds no `PG_VERSION`): nothing to fence.
 * 2. First it writes `standby.signal`, the instance's identity and, when `newPrimary` is
 *    given, `primary_conninfo`/`primary_slot_name` pointing at it, so that whoever
 *    restarts it (systemd, a reboot, an operator) gets a read-only standby.
 * 3. Then `pg_ctl stop -m immediate` with the fence timeout. What still runs afterwards
 *    (a SIGSTOPped or otherwise frozen postmaster and its backends, or backends a dead
 *    postmaster left behind) is stopped with SIGSTOP, SIGKILLed (which ends stopped
 *    processes too) and waited for; its stale `postmaster.pid` is removed.
 * 4. The last line is `FENCE wasRunning=0|1 killed=0|1 missing=0|1` ({@link parseFenceReport}).
 *
 * When the config of step 2 cannot be written (a full or read-only disk) it still stops
 * the instance, then fails: the fence is not durable.
 *
 * Idempotent: fencing a fenced, stopped instance rewrites the same config and succeeds.
 */
export function fenceScript(segment: SegmentRow, newPrimary: SegmentRow | undefined, options: ShellOptions = {}): string {
  const o = resolve(options);
  if (newPrimary) checkPair(segment, newPrimary);
  else checkSegment(segment);
  const d = shellQuote(segment.datadir);
  const config = newPrimary ? mirrorConfigLines(o, segment, newPrimary) : [...autoConfLines(o, segment.datadir, identitySettings(segment)), ...standbySignalLines(o, segment.datadir)];
  return script(o, [
    `# fence dbid ${segment.dbid} (content ${segment.content})${newPrimary ? `, new primary dbid ${newPrimary.dbid}` : ''}`,
    ...processFunctions(o),
    'was_running=0 killed=0 missing=0 config_rc=0',
    `if [ ! -d ${d} ] || [ ! -f ${shellQuote(`${segment.datadir}/PG_VERSION`)} ]; then`,
    '  missing=1',
    `  echo ${shellQuote(`${segment.datadir} holds no data directory: no standby config to write`)}`,
    'else',
    // Config first: should the stop below fail, or the host reboot right now, any restart
    // is a standby. A failed write (a full or read-only disk, a common reason to fence)
    // must not keep the stop from happening: the subshell's status is kept for the end.
    '  set +e',
    '  (',
    '    set -e',
    ...config.map((line) => `    ${line}`),
    '  )',
    '  config_rc=$?',
    '  set -e',
    'fi',
    `pm=$(fts_postmaster ${d})`,
    'if [ -n "$pm" ]; then',
    '  was_running=1',
    `  ${asUser(o)} ${shellQuote(bin(o, 'pg_ctl'))} stop -w -t ${shellQuote(o.fenceTimeoutSeconds)} -m immediate -D ${d} || echo 'the immediate stop did not end the instance'`,
    'fi',
    // A frozen postmaster ignores the stop; orphaned backends of a dead one can still serve their sessions.
    `if [ -n "$(fts_instance_pids ${d} "$pm")" ]; then`,
    '  killed=1',
    `  fts_kill ${d} "$pm"`,
    'fi',
    `fts_clear_stale ${d}`,
    'if [ "$config_rc" -ne 0 ]; then',
    `  echo ${shellQuote(`dbid ${segment.dbid} is stopped, but its standby config could not be written: a restart would make it a writable primary`)} >&2`,
    '  exit "$config_rc"',
    'fi',
    `echo "${FENCE_REPORT_PREFIX} wasRunning=$was_running killed=$killed missing=$missing"`,
  ]);
}

/**
 * Reads the report line of a fence script's output (the last `FENCE ...` line). Throws
 * HostCommandError when there is none: the script did not run to its end.
 */
export function parseFenceReport(output: string): FenceReport {
  const lines = output.split('\n').map((l) => l.trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^FENCE wasRunning=([01]) killed=([01]) missing=([01])$/.exec(lines[i]);
    if (m) return { wasRunning: m[1] === '1', killed: m[2] === '1', missing: m[3] === '1' };
  }
  throw new HostCommandError(`the fence script printed no report line (${FENCE_REPORT_PREFIX} wasRunning=... killed=... missing=...)`, undefined, output.slice(-2000));
}

/**
 * Script that rebuilds `mirror` from `primary` and starts it as a streaming standby:
 * stop (fast, tolerant), then `pg_rewind` (incremental: needs `wal_log_hints=on` or data
 * checksums) or `pg_basebackup` (full copy: empties the data directory first), then the
 * mirror config, then start. Before `pg_rewind` it removes `standby.signal` (pg_rewind's
 * single-user crash recovery cannot run as a standby) and runs CHECKPOINT on the primary
 * (the replication user needs superuser or `pg_checkpoint`); after it, it empties
 * `pg_replslot/`. `pg_basebackup` streams through the mirror's physical
 * replication slot, so the slot must exist on the primary (SegmentControl.ensureSlot)
 * before this runs; that way no WAL the mirror needs is recycled between copy and start.
 */
export function rebuildAsMirrorScript(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod, options: ShellOptions = {}): string {
  const o = resolve(options);
  checkPair(mirror, primary);
  const datadir = mirror.datadir;
  const d = shellQuote(datadir);
  let rebuild: string[];
  if (method === 'rewind') {
    // psql and pg_rewind connect with the same parameters; a password, if any, comes from
    // the OS user's ~/.pgpass on the host (or PGPASSWORD in local mode), never from this
    // script (psql -w never prompts).
    const source = `${primaryConninfo(mirror, primary, o.replicationUser)} dbname='postgres'`;
    const slots = shellQuote(`${datadir}/pg_replslot`);
    rebuild = [
      `echo ${shellQuote(`pg_rewind of ${datadir} from ${primary.address}:${primary.port}`)}`,
      // pg_rewind (PostgreSQL 13+) finishes an unclean shutdown with crash recovery in
      // single-user mode, which a standby cannot run; the mirror config writes it back.
      `${asUser(o)} rm -f -- ${shellQuote(`${datadir}/standby.signal`)}`,
      // A just-promoted source still shows its old timeline in pg_control until its first
      // checkpoint; pg_rewind (PostgreSQL <= 15) would then say "no rewind required" and
      // leave this instance diverged, unable to stream. Patroni checkpoints first too.
      `${asUser(o)} ${shellQuote(bin(o, 'psql'))} -X -q -w -v ON_ERROR_STOP=1 -d ${shellQuote(source)} -c CHECKPOINT`,
      `${asUser(o)} ${shellQuote(bin(o, 'pg_rewind'))} --target-pgdata=${d} --source-server=${shellQuote(source)} --progress`,
      // Slots this instance may keep from its time as a primary would pin WAL on the
      // mirror forever; a mirror serves none.
      `if ${asUser(o)} test -d ${slots}; then ${asUser(o)} find ${slots} -mindepth 1 -delete; fi`,
    ];
  } else if (method === 'basebackup') {
    rebuild = [
      `echo ${shellQuote(`pg_basebackup of ${primary.address}:${primary.port} into ${datadir}`)}`,
      // Keep the directory itself (it may be a mount point); create it when missing.
      ...makeDataDirLines(o, datadir),
      // Emptied only when it is a directory and nothing of an instance runs in it any more.
      `if [ ! -d ${d} ]; then echo ${shellQuote(`${datadir} is not a directory`)} >&2; exit 1; fi`,
      `if [ -n "$(fts_instance_pids ${d} '')" ]; then echo ${shellQuote(`PostgreSQL processes still run in ${datadir}; not emptying it`)} >&2; exit 1; fi`,
      `${asUser(o)} find ${d} -mindepth 1 -delete`,
      `${asUser(o)} ${shellQuote(bin(o, 'pg_basebackup'))} -D ${d} -h ${shellQuote(primary.address)} -p ${shellQuote(primary.port)} -U ${shellQuote(o.replicationUser)} -X stream -S ${shellQuote(mirrorSlotName(mirror.dbid))} --checkpoint=fast --no-password`,
    ];
  } else {
    throw new ValidationError(`rebuild method must be rewind or basebackup, not ${String(method)}`);
  }
  return script(o, [
    `# rebuild dbid ${mirror.dbid} (content ${mirror.content}) as mirror of dbid ${primary.dbid} by ${method}`,
    ...processFunctions(o),
    ...stopLines(o, mirror, 'fast'),
    ...rebuild,
    ...mirrorConfigLines(o, mirror, primary),
    ...startLines(o, mirror),
  ]);
}

function resolve(options: ShellOptions): Resolved {
  const osUser = options.osUser ?? DEFAULT_OS_USER;
  const resolved: Resolved = {
    osUser,
    pgBin: (options.pgBin ?? DEFAULT_PG_BIN).replace(/\/+$/, '') || '/',
    runAs: options.runAs ?? 'sudo',
    replicationUser: options.replicationUser ?? osUser,
    pgCtlTimeoutSeconds: options.pgCtlTimeoutSeconds ?? DEFAULT_PG_CTL_TIMEOUT_SECONDS,
    walRetrieveRetryInterval: options.walRetrieveRetryInterval ?? DEFAULT_WAL_RETRIEVE_RETRY_INTERVAL,
    logFile: options.logFile,
    fenceTimeoutSeconds: options.fenceTimeoutSeconds ?? DEFAULT_FENCE_TIMEOUT_SECONDS,
  };
  const issues: string[] = [];
  // sudo/runuser take a user name, not a shell word: reject anything that is not one.
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(resolved.osUser)) issues.push(`osUser ${JSON.stringify(resolved.osUser)} is not a valid OS user name`);
  if (resolved.replicationUser === '') issues.push('replicationUser must not be empty');
  if (!resolved.pgBin.startsWith('/')) issues.push(`pgBin ${JSON.stringify(resolved.pgBin)} must be an absolute path`);
  if (!['sudo', 'runuser', 'none'].includes(resolved.runAs)) issues.push(`runAs must be sudo, runuser or none, not ${String(resolved.runAs)}`);
  for (const key of ['pgCtlTimeoutSeconds', 'fenceTimeoutSeconds'] as const) {
    if (!Number.isInteger(resolved[key]) || resolved[key] < 1) issues.push(`${key} must be a positive integer, not ${resolved[key]}`);
  }
  const log = resolved.logFile;
  if (log !== undefined && (!log.startsWith('/') || log.endsWith('/') || /[\n\r\0]/.test(log))) {
    issues.push(`logFile ${JSON.stringify(log)} must be an absolute file path without newlines`);
  }
  if (issues.length > 0) throw new ValidationError(`invalid shell options: ${issues.join('; ')}`, issues);
  return resolved;
}

/** Rejects a data directory a script must not act on: a relative or root one would be wiped or misread. */
function datadirIssues(d: unknown): string[] {
  if (typeof d !== 'string' || !d.startsWith('/') || /^\/+$/.test(d)) return [`datadir ${JSON.stringify(d)} must be an absolute path other than /`];
  if (/[\n\r\0]/.test(d)) return ['datadir must not contain a newline or NUL'];
  return [];
}

function checkSegment(segment: SegmentRow): void {
  const issues = datadirIssues(segment.datadir);
  if (!Number.isInteger(segment.port) || segment.port < 1 || segment.port > 65535) issues.push(`port ${segment.port} is not a TCP port`);
  if (issues.length > 0) throw new ValidationError(`segment dbid ${segment.dbid}: ${issues.join('; ')}`, issues);
}

function checkIdentity(instance: InstanceIdentity): void {
  const issues = datadirIssues(instance.datadir);
  if (!Number.isInteger(instance.dbid) || instance.dbid < 0) issues.push(`dbid ${instance.dbid} is not a non-negative integer`);
  if (!Number.isInteger(instance.content) || instance.content < -1) issues.push(`content ${instance.content} is not an integer >= -1`);
  if (issues.length > 0) throw new ValidationError(`instance dbid ${instance.dbid}: ${issues.join('; ')}`, issues);
}

/** Refuses pairs a script must never act on: a rebuild would wipe the primary's own data. */
function checkPair(mirror: SegmentRow, primary: SegmentRow): void {
  checkSegment(mirror);
  checkIdentity(mirror);
  const issues: string[] = [];
  if (!primary.address) issues.push(`primary dbid ${primary.dbid} has no address`);
  if (!Number.isInteger(primary.port) || primary.port < 1 || primary.port > 65535) issues.push(`primary dbid ${primary.dbid} port ${primary.port} is not a TCP port`);
  if (primary.dbid === mirror.dbid) issues.push(`dbid ${mirror.dbid} cannot be its own primary`);
  if (primary.content !== mirror.content) issues.push(`mirror dbid ${mirror.dbid} (content ${mirror.content}) and primary dbid ${primary.dbid} (content ${primary.content}) are not a pair`);
  if (primary.hostname === mirror.hostname && typeof primary.datadir === 'string' && primary.datadir.replace(/\/+$/, '') === mirror.datadir.replace(/\/+$/, '')) {
    issues.push(`mirror dbid ${mirror.dbid} and primary dbid ${primary.dbid} share the data directory ${mirror.datadir} on ${mirror.hostname}`);
  }
  if (issues.length > 0) throw new ValidationError(issues.join('; '), issues);
}

function script(o: Resolved, body: string[]): string {
  return [
    '#!/bin/bash',
    'set -euo pipefail',
    // The OS user may not be able to read root's working directory; tools would warn.
    'cd /',
    `# generated by serverless-fts; PostgreSQL runs as ${o.osUser}`,
    ...body,
    '',
  ].join('\n');
}

/** Prefix that runs the rest of the line as the PostgreSQL OS user. */
function asUser(o: Resolved): string {
  switch (o.runAs) {
    case 'sudo':
      return `sudo -n -u ${shellQuote(o.osUser)} --`;
    case 'runuser':
      return `runuser -u ${shellQuote(o.osUser)} --`;
    case 'none':
      return 'command';
  }
}

function bin(o: Resolved, tool: string): string {
  return o.pgBin === '/' ? `/${tool}` : `${o.pgBin}/${tool}`;
}

/**
 * Bash functions that find an instance's processes through /proc. They run as the
 * script's caller (root on SSM hosts, the PostgreSQL user in local mode), which may
 * read every PostgreSQL process's working directory. Arguments are the data directory
 * (quoted by the caller) and a postmaster PID.
 */
function processFunctions(o: Resolved): string[] {
  const waitTenths = o.fenceTimeoutSeconds * 10;
  return [
    // The data directory as /proc/<pid>/cwd shows it (symlinks resolved).
    'fts_realdir() { readlink -f -- "$1" 2>/dev/null || printf \'%s\\n\' "$1"; }',
    // fts_alive PID REALDIR: PID is a live process, not a zombie, working in REALDIR.
    'fts_alive() {',
    '  local stat state cwd',
    '  if [ ! -r /proc/self/stat ]; then kill -0 "$1" 2>/dev/null; return; fi',
    '  { IFS= read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1',
    "  state=${stat##*') '}; state=${state%% *}",
    '  case "$state" in Z|X|x) return 1 ;; esac',
    '  cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || return 1',
    '  [ "$cwd" = "$2" ]',
    '}',
    // fts_postmaster DATADIR: the PID of the live postmaster of DATADIR, else nothing.
    'fts_postmaster() {',
    '  local pid',
    '  { IFS= read -r pid < "$1/postmaster.pid"; } 2>/dev/null || return 0',
    '  [[ "$pid" =~ ^[1-9][0-9]{0,9}$ ]] || return 0',
    '  if fts_alive "$pid" "$(fts_realdir "$1")"; then printf \'%s\\n\' "$pid"; fi',
    '}',
    // fts_instance_pids DATADIR [POSTMASTER]: live processes of the instance: the
    // postmaster, its children, and postgres processes left in DATADIR by a dead one.
    'fts_instance_pids() {',
    '  local dir f p stat rest ppid comm',
    '  dir=$(fts_realdir "$1")',
    '  for f in /proc/[0-9]*/stat; do',
    '    p=${f#/proc/}; p=${p%/stat}',
    '    { IFS= read -r stat < "$f"; } 2>/dev/null || continue',
    // After the command name (which may hold spaces and parentheses): state, then ppid.
    "    rest=${stat##*') '}; ppid=${rest#* }; ppid=${ppid%% *}",
    '    comm=${stat#*(}; comm=${comm%)*}',
    '    if [ "$p" = "${2:-}" ] || [ "$ppid" = "${2:-}" ] || [ "$comm" = postgres ] || [ "$comm" = postmaster ]; then',
    '      if fts_alive "$p" "$dir"; then printf \'%s\\n\' "$p"; fi',
    '    fi',
    '  done',
    '}',
    // fts_kill DATADIR [POSTMASTER]: SIGKILL the instance's processes and wait until they are gone.
    'fts_kill() {',
    '  local pids i',
    // A stopped postmaster forks no new backend between the listing and the kill.
    '  if [ -n "${2:-}" ]; then kill -STOP "$2" 2>/dev/null || true; fi',
    `  for ((i = 0; i < ${waitTenths}; i++)); do`,
    '    pids=$(fts_instance_pids "$1" "${2:-}")',
    '    if [ -z "$pids" ]; then return 0; fi',
    '    echo "SIGKILL to" $pids',
    '    kill -KILL $pids 2>/dev/null || true',
    '    sleep 0.1',
    '  done',
    `  echo "processes of $1 survived SIGKILL for ${o.fenceTimeoutSeconds} s:" $(fts_instance_pids "$1" "\${2:-}") >&2`,
    '  return 1',
    '}',
    // fts_clear_stale DATADIR: remove a postmaster.pid that names no live postmaster of DATADIR.
    'fts_clear_stale() {',
    '  if [ -f "$1/postmaster.pid" ] && [ -z "$(fts_postmaster "$1")" ]; then',
    '    echo "removing the stale $1/postmaster.pid (its process is gone, a zombie, or another program)"',
    `    ${asUser(o)} rm -f -- "$1/postmaster.pid"`,
    '  fi',
    '}',
  ];
}

function startLines(o: Resolved, segment: SegmentRow): string[] {
  const d = shellQuote(segment.datadir);
  const pgCtl = shellQuote(bin(o, 'pg_ctl'));
  const logFile = shellQuote(o.logFile ?? `${segment.datadir}/log/startup.log`);
  let prepareLog: string[];
  if (o.logFile === undefined) {
    prepareLog = [`${asUser(o)} mkdir -p -- ${shellQuote(`${segment.datadir}/log`)}`];
  } else if (o.runAs === 'none') {
    prepareLog = [`(umask 077 && touch -- ${logFile})`];
  } else {
    prepareLog = [
      // Created by root, so the log may live where the OS user cannot create files (beside
      // the data directory); a symlink is never followed by root's chown.
      `if [ ! -e ${logFile} ] && [ ! -L ${logFile} ]; then install -m 600 -o ${shellQuote(o.osUser)} /dev/null ${logFile}; fi`,
      `if ! ${asUser(o)} test -w ${logFile}; then chown -h -- ${shellQuote(o.osUser)} ${logFile}; fi`,
    ];
  }
  return [
    `if [ -n "$(fts_postmaster ${d})" ]; then`,
    `  echo ${shellQuote(`dbid ${segment.dbid} is already running`)}`,
    'else',
    `  fts_clear_stale ${d}`,
    ...prepareLog.map((line) => `  ${line}`),
    '  start_rc=0',
    // The catalog's port wins over postgresql.conf: the prober and the peers use it (a
    // mirror made by pg_basebackup carries its primary's port).
    `  ${asUser(o)} ${pgCtl} start -w -t ${shellQuote(o.pgCtlTimeoutSeconds)} -D ${d} -l ${logFile} -o ${shellQuote(`-p ${segment.port}`)} || start_rc=$?`,
    '  if [ "$start_rc" -ne 0 ]; then',
    `    echo ${shellQuote(`start of dbid ${segment.dbid} failed; the server log ends with:`)} >&2`,
    `    ${asUser(o)} tail -n 5 -- ${logFile} >&2 || true`,
    '    exit "$start_rc"',
    '  fi',
    'fi',
  ];
}

function stopLines(o: Resolved, segment: SegmentRow, mode: 'fast' | 'immediate'): string[] {
  const d = shellQuote(segment.datadir);
  const pgCtl = shellQuote(bin(o, 'pg_ctl'));
  return [
    `pm=$(fts_postmaster ${d})`,
    'if [ -z "$pm" ]; then',
    `  echo ${shellQuote(`dbid ${segment.dbid} is not running`)}`,
    'else',
    '  stop_rc=0',
    `  ${asUser(o)} ${pgCtl} stop -w -t ${shellQuote(o.pgCtlTimeoutSeconds)} -m ${shellQuote(mode)} -D ${d} || stop_rc=$?`,
    // It may have exited on its own meanwhile: that is a stop, not a failure.
    `  if [ "$stop_rc" -ne 0 ] && fts_alive "$pm" "$(fts_realdir ${d})"; then exit "$stop_rc"; fi`,
    'fi',
    `fts_clear_stale ${d}`,
  ];
}

/** Creates a missing data directory owned by the OS user, also where only root may create it. */
function makeDataDirLines(o: Resolved, datadir: string): string[] {
  const d = shellQuote(datadir);
  if (o.runAs === 'none') return [`if [ ! -d ${d} ]; then mkdir -p -m 700 -- ${d}; fi`];
  return [`if [ ! -d ${d} ]; then ${asUser(o)} mkdir -p -m 700 -- ${d} 2>/dev/null || { mkdir -p -m 700 -- ${d} && chown -- ${shellQuote(o.osUser)} ${d}; }; fi`];
}

function identitySettings(instance: InstanceIdentity): Array<[string, string]> {
  return [
    [DBID_SETTING, String(instance.dbid)],
    [CONTENT_SETTING, String(instance.content)],
  ];
}

function mirrorConfigLines(o: Resolved, mirror: SegmentRow, primary: SegmentRow): string[] {
  const settings: Array<[string, string]> = [
    ['primary_conninfo', primaryConninfo(mirror, primary, o.replicationUser)],
    ['primary_slot_name', mirrorSlotName(mirror.dbid)],
  ];
  if (o.walRetrieveRetryInterval !== '') settings.push(['wal_retrieve_retry_interval', o.walRetrieveRetryInterval]);
  settings.push(...identitySettings(mirror));
  return [...autoConfLines(o, mirror.datadir, settings), ...standbySignalLines(o, mirror.datadir)];
}

function standbySignalLines(o: Resolved, datadir: string): string[] {
  return [`${asUser(o)} touch -- ${shellQuote(`${datadir}/standby.signal`)}`];
}

/** Sets `settings` in the data directory's postgresql.auto.conf, keeping every other line. */
function autoConfLines(o: Resolved, datadir: string, settings: Array<[string, string]>): string[] {
  const conf = shellQuote(`${datadir}/postgresql.auto.conf`);
  const tmp = shellQuote(`${datadir}/postgresql.auto.conf.fts-tmp`);
  const names = settings.map(([name]) => name.replace(/\./g, '\\.')).join('|');
  const lines = settings.map(([name, value]) => shellQuote(`${name} = ${confQuote(value)}`)).join(' ');
  return [
    `${asUser(o)} touch -- ${conf}`,
    // Drop earlier values of these settings, keep every other line, append the new ones;
    // write a temporary file and rename it so a crash never leaves a half-written config.
    `{ ${asUser(o)} sed -E ${shellQuote(`/^[[:space:]]*(${names})[[:space:]]*=/d`)} ${conf}; printf '%s\\n' ${lines}; } | ${asUser(o)} tee ${tmp} >/dev/null`,
    `${asUser(o)} mv -f -- ${tmp} ${conf}`,
  ];
}
