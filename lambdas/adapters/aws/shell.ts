/**
 * Pure builders of the bash scripts a segment host runs to start, stop and rebuild a
 * segment instance (Greenplum's gpssh + pg_ctl work, here sent through SSM Run Command
 * or run as a local child process).
 *
 * Every script starts with `set -euo pipefail`, runs the PostgreSQL tools as the OS user
 * that owns the data directories (Greenplum's `gpadmin`), and quotes every value that
 * comes from the catalog or the options with {@link shellQuote}: a data directory is
 * operator input and must never be able to run a command. Scripts are idempotent, so a
 * workflow step that crashed can send the same script again.
 */
import { ValidationError } from '../../core/errors';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { RebuildMethod } from '../../ports/segments';

/** OS user that owns the PostgreSQL data directories by default (Greenplum's convention). */
export const DEFAULT_OS_USER = 'gpadmin';
/** PostgreSQL binaries of Debian/Ubuntu's `postgresql-15` package. */
export const DEFAULT_PG_BIN = '/usr/lib/postgresql/15/bin';
/** Seconds `pg_ctl -w` waits for a start or stop by default. */
export const DEFAULT_PG_CTL_TIMEOUT_SECONDS = 300;
/**
 * Mirrors retry WAL retrieval this often: with PostgreSQL's 5 s default a promotion right
 * after the primary died took 5.2 s, with 100 ms it took 0.2-0.3 s (DESIGN.md section 2).
 */
export const DEFAULT_WAL_RETRIEVE_RETRY_INTERVAL = '100ms';

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
}

interface Resolved {
  osUser: string;
  pgBin: string;
  runAs: RunAs;
  replicationUser: string;
  pgCtlTimeoutSeconds: number;
  walRetrieveRetryInterval: string;
}

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

/** Script that starts an instance and waits until it accepts connections (a no-op if it runs). */
export function startScript(segment: SegmentRow, options: ShellOptions = {}): string {
  const o = resolve(options);
  checkSegment(segment);
  return script(o, [`# start dbid ${segment.dbid} (content ${segment.content})`, ...startLines(o, segment)]);
}

/**
 * Script that stops an instance with `pg_ctl stop -m fast|immediate`. An instance that
 * is not running (or whose data directory is gone) counts as stopped: exit 0.
 */
export function stopScript(segment: SegmentRow, mode: 'fast' | 'immediate', options: ShellOptions = {}): string {
  const o = resolve(options);
  checkSegment(segment);
  if (mode !== 'fast' && mode !== 'immediate') throw new ValidationError(`stop mode must be fast or immediate, not ${String(mode)}`);
  return script(o, [`# stop dbid ${segment.dbid} (content ${segment.content}) -m ${mode}`, ...stopLines(o, segment, mode)]);
}

/**
 * Script that makes an instance a standby of `primary`: rewrites `primary_conninfo`,
 * `primary_slot_name` (and `wal_retrieve_retry_interval`) in `postgresql.auto.conf`,
 * keeping its other lines, and touches `standby.signal`. It does not restart the instance.
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
  let rebuild: string[];
  if (method === 'rewind') {
    // psql and pg_rewind connect with the same parameters; a password, if any, comes from
    // the OS user's ~/.pgpass on the host, never from this script (psql -w never prompts).
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
      `${asUser(o)} ${shellQuote(bin(o, 'pg_rewind'))} --target-pgdata=${shellQuote(datadir)} --source-server=${shellQuote(source)} --progress`,
      // Slots this instance may keep from its time as a primary would pin WAL on the
      // mirror forever; a mirror serves none (as LocalSegmentHost does).
      `if ${asUser(o)} test -d ${slots}; then ${asUser(o)} find ${slots} -mindepth 1 -delete; fi`,
    ];
  } else if (method === 'basebackup') {
    rebuild = [
      `echo ${shellQuote(`pg_basebackup of ${primary.address}:${primary.port} into ${datadir}`)}`,
      // Keep the directory itself (its parent may not be writable by the OS user); empty it.
      `${asUser(o)} mkdir -p -m 700 -- ${shellQuote(datadir)}`,
      `${asUser(o)} find ${shellQuote(datadir)} -mindepth 1 -delete`,
      `${asUser(o)} ${shellQuote(bin(o, 'pg_basebackup'))} -D ${shellQuote(datadir)} -h ${shellQuote(primary.address)} -p ${shellQuote(primary.port)} -U ${shellQuote(o.replicationUser)} -X stream -S ${shellQuote(mirrorSlotName(mirror.dbid))} --checkpoint=fast --no-password`,
    ];
  } else {
    throw new ValidationError(`rebuild method must be rewind or basebackup, not ${String(method)}`);
  }
  return script(o, [
    `# rebuild dbid ${mirror.dbid} (content ${mirror.content}) as mirror of dbid ${primary.dbid} by ${method}`,
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
  };
  const issues: string[] = [];
  // sudo/runuser take a user name, not a shell word: reject anything that is not one.
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(resolved.osUser)) issues.push(`osUser ${JSON.stringify(resolved.osUser)} is not a valid OS user name`);
  if (resolved.replicationUser === '') issues.push('replicationUser must not be empty');
  if (!resolved.pgBin.startsWith('/')) issues.push(`pgBin ${JSON.stringify(resolved.pgBin)} must be an absolute path`);
  if (!['sudo', 'runuser', 'none'].includes(resolved.runAs)) issues.push(`runAs must be sudo, runuser or none, not ${String(resolved.runAs)}`);
  if (!Number.isInteger(resolved.pgCtlTimeoutSeconds) || resolved.pgCtlTimeoutSeconds < 1) {
    issues.push(`pgCtlTimeoutSeconds must be a positive integer, not ${resolved.pgCtlTimeoutSeconds}`);
  }
  if (issues.length > 0) throw new ValidationError(`invalid shell options: ${issues.join('; ')}`, issues);
  return resolved;
}

/** Rejects rows a script must not act on: a relative or root data directory would be wiped or misread. */
function checkSegment(segment: SegmentRow): void {
  const issues: string[] = [];
  const d = segment.datadir;
  if (typeof d !== 'string' || !d.startsWith('/') || /^\/+$/.test(d)) issues.push(`datadir ${JSON.stringify(d)} must be an absolute path other than /`);
  else if (/[\n\r\0]/.test(d)) issues.push('datadir must not contain a newline or NUL');
  if (!Number.isInteger(segment.port) || segment.port < 1 || segment.port > 65535) issues.push(`port ${segment.port} is not a TCP port`);
  if (issues.length > 0) throw new ValidationError(`segment dbid ${segment.dbid}: ${issues.join('; ')}`, issues);
}

function checkPair(mirror: SegmentRow, primary: SegmentRow): void {
  checkSegment(mirror);
  const issues: string[] = [];
  if (!primary.address) issues.push(`primary dbid ${primary.dbid} has no address`);
  if (!Number.isInteger(primary.port) || primary.port < 1 || primary.port > 65535) issues.push(`primary dbid ${primary.dbid} port ${primary.port} is not a TCP port`);
  if (primary.dbid === mirror.dbid) issues.push(`dbid ${mirror.dbid} cannot be its own primary`);
  if (primary.content !== mirror.content) issues.push(`mirror dbid ${mirror.dbid} (content ${mirror.content}) and primary dbid ${primary.dbid} (content ${primary.content}) are not a pair`);
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

function startLines(o: Resolved, segment: SegmentRow): string[] {
  const d = shellQuote(segment.datadir);
  const pgCtl = shellQuote(bin(o, 'pg_ctl'));
  const logDir = shellQuote(`${segment.datadir}/log`);
  const logFile = shellQuote(`${segment.datadir}/log/startup.log`);
  return [
    // pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
    `if ${asUser(o)} ${pgCtl} status -D ${d} >/dev/null 2>&1; then`,
    `  echo ${shellQuote(`dbid ${segment.dbid} is already running`)}`,
    'else',
    `  ${asUser(o)} mkdir -p -- ${logDir}`,
    // The catalog's port wins over postgresql.conf: the prober and the peers use it.
    `  ${asUser(o)} ${pgCtl} start -w -t ${shellQuote(o.pgCtlTimeoutSeconds)} -D ${d} -l ${logFile} -o ${shellQuote(`-p ${segment.port}`)}`,
    'fi',
  ];
}

function stopLines(o: Resolved, segment: SegmentRow, mode: 'fast' | 'immediate'): string[] {
  const d = shellQuote(segment.datadir);
  const pgCtl = shellQuote(bin(o, 'pg_ctl'));
  return [
    'pg_status=0',
    `${asUser(o)} ${pgCtl} status -D ${d} >/dev/null 2>&1 || pg_status=$?`,
    'if [ "$pg_status" -eq 3 ] || [ "$pg_status" -eq 4 ]; then',
    `  echo ${shellQuote(`dbid ${segment.dbid} is not running`)}`,
    'else',
    '  stop_rc=0',
    `  ${asUser(o)} ${pgCtl} stop -w -t ${shellQuote(o.pgCtlTimeoutSeconds)} -m ${shellQuote(mode)} -D ${d} || stop_rc=$?`,
    '  if [ "$stop_rc" -ne 0 ]; then',
    // It may have exited on its own between status and stop: that is a stop, not a failure.
    '    pg_status=0',
    `    ${asUser(o)} ${pgCtl} status -D ${d} >/dev/null 2>&1 || pg_status=$?`,
    '    if [ "$pg_status" -ne 3 ] && [ "$pg_status" -ne 4 ]; then exit "$stop_rc"; fi',
    '  fi',
    'fi',
  ];
}

function mirrorConfigLines(o: Resolved, mirror: SegmentRow, primary: SegmentRow): string[] {
  const conf = shellQuote(`${mirror.datadir}/postgresql.auto.conf`);
  const tmp = shellQuote(`${mirror.datadir}/postgresql.auto.conf.fts-tmp`);
  const signal = shellQuote(`${mirror.datadir}/standby.signal`);
  const settings: Array<[string, string]> = [
    ['primary_conninfo', primaryConninfo(mirror, primary, o.replicationUser)],
    ['primary_slot_name', mirrorSlotName(mirror.dbid)],
  ];
  if (o.walRetrieveRetryInterval !== '') settings.push(['wal_retrieve_retry_interval', o.walRetrieveRetryInterval]);
  const names = settings.map(([name]) => name).join('|');
  const lines = settings.map(([name, value]) => shellQuote(`${name} = ${confQuote(value)}`)).join(' ');
  return [
    `${asUser(o)} touch -- ${conf}`,
    // Drop earlier values of these settings, keep every other line, append the new ones;
    // write a temporary file and rename it so a crash never leaves a half-written config.
    `{ ${asUser(o)} sed -E ${shellQuote(`/^[[:space:]]*(${names})[[:space:]]*=/d`)} ${conf}; printf '%s\\n' ${lines}; } | ${asUser(o)} tee ${tmp} >/dev/null`,
    `${asUser(o)} mv -f -- ${tmp} ${conf}`,
    `${asUser(o)} touch -- ${signal}`,
  ];
}
