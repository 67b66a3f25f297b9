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
 *
 * Instances are started and stopped with `pg_ctl` by default, or through systemd units
 * ({@link ShellOptions.serviceManager}). Exit codes of the rebuild script that mean more
 * than "failed": {@link INCREMENTAL_IMPOSSIBLE_EXIT_CODE} (pg_rewind cannot work, a full
 * copy is needed), {@link WIPE_REFUSED_EXIT_CODE} (the target directory is not one a
 * full copy may empty) and {@link REBUILD_BUSY_EXIT_CODE} (another rebuild of the
 * directory runs). Lines a caller can parse: `FENCE ...` ({@link parseFenceReport}),
 * `STOP ...` ({@link parseStopReport}), `RECOVERY ...` ({@link parseRecoveryReport}),
 * `PROGRESS ...` ({@link parseProgress}).
 */
import { posix } from 'node:path';
import { HostCommandError, ValidationError } from '../../core/errors';
import { mirrorSlotName, type SegmentRow } from '../../core/model';
import type { FenceReport, HostJobStatus, RebuildMethod, StopReport } from '../../ports/segments';

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
/** First word of the last line a stop script prints; see {@link parseStopReport}. */
export const STOP_REPORT_PREFIX = 'STOP';
/** First word of the line a rebuild script ends with when it reports why it cannot work; see {@link parseRecoveryReport}. */
export const RECOVERY_REPORT_PREFIX = 'RECOVERY';
/** First word of the progress lines of a rebuild script with {@link ShellOptions.progress}; see {@link parseProgress}. */
export const PROGRESS_PREFIX = 'PROGRESS';
/**
 * Exit code of a rebuild script by `rewind` whose pg_rewind failed because an
 * incremental recovery cannot work (see {@link INCREMENTAL_IMPOSSIBLE_REASONS}); its last
 * line, on stdout and on stderr, is `RECOVERY incremental-impossible reason=<reason>`.
 * A full recovery (rebuild by `basebackup`, Greenplum's `gprecoverseg -F`) is the remedy.
 * No PostgreSQL tool the scripts run exits with it (they use 1 to 3).
 */
export const INCREMENTAL_IMPOSSIBLE_EXIT_CODE = 10;
/**
 * Exit code of a rebuild script by `basebackup` that refused to empty its target
 * directory because it is neither empty nor a data directory of the mirror's content
 * (see {@link rebuildAsMirrorScript}); nothing was deleted.
 */
export const WIPE_REFUSED_EXIT_CODE = 11;
/**
 * Exit code of a rebuild script that found another rebuild of the same data directory
 * running (it holds the directory's lock, see {@link rebuildStateFiles}); nothing was done.
 */
export const REBUILD_BUSY_EXIT_CODE = 12;
/**
 * Directory, beside each data directory (in its parent), where the rebuild scripts keep
 * their state files ({@link rebuildStateFiles}) and local mode its job directories.
 */
export const REBUILD_STATE_DIR = '.fts-jobs';

/**
 * pg_rewind failures that mean an incremental recovery cannot work and a full one can,
 * as `reason` tokens of the `RECOVERY incremental-impossible` line, each with the parts of
 * the message (PostgreSQL 13-17 wording, matched in order, `*` between the parts) that
 * identifies it. pg_rewind runs with `LC_ALL=C`, so the messages are not translated.
 *
 * - `wal-missing`: the target's WAL back to the last checkpoint before the fork is gone
 *   (`could not find previous WAL record at X/Y`, after `could not open file
 *   ".../pg_wal/...": No such file or directory`).
 * - `wal-removed`: a server no longer has a WAL segment (`requested WAL segment ... has
 *   already been removed`).
 * - `wal-unreadable`: the target's WAL cannot be read (`could not read WAL record at X/Y`).
 * - `no-common-ancestor`: the timelines share no history (`could not find common ancestor
 *   of the source and target cluster's timelines`).
 * - `no-wal-log-hints`: the target runs without data checksums and `wal_log_hints`, so
 *   pg_rewind cannot know which blocks changed.
 */
export const INCREMENTAL_IMPOSSIBLE_REASONS: ReadonlyArray<{ reason: string; parts: readonly string[] }> = [
  { reason: 'wal-missing', parts: ['could not find previous WAL record'] },
  { reason: 'wal-missing', parts: ['could not open file "', '/pg_wal/', '": No such file or directory'] },
  { reason: 'wal-removed', parts: ['requested WAL segment ', ' has already been removed'] },
  { reason: 'wal-unreadable', parts: ['could not read WAL record'] },
  { reason: 'no-common-ancestor', parts: ['could not find common ancestor'] },
  { reason: 'no-wal-log-hints', parts: ['target server needs to use either data checksums or "wal_log_hints = on"'] },
];

/**
 * How a systemd unit's instance name (`%i` of the unit template) is derived from a row:
 *
 * - `gpseg` (default): `gpseg<content>`, the name Greenplum gives a content's data
 *   directories (`/data/primary/gpseg0`, `/data/mirror/gpseg0`, the coordinator's
 *   `gpseg-1`). A host never holds two instances of one content, so it is unique there.
 * - `basename`: the data directory's last component (`/data/mirror/gpseg3` → `gpseg3`).
 * - `path`: the data directory escaped as `systemd-escape --path` does
 *   (`/data/mirror/gpseg3` → `data-mirror-gpseg3`), so the unit file gets the directory
 *   back with `%f`: `ExecStart=/usr/lib/postgresql/15/bin/postgres -D %f`.
 *
 * `gpseg` and `basename` names must consist of `A-Z a-z 0-9 : _ . -` (else ValidationError).
 */
export type SystemdInstanceName = 'gpseg' | 'basename' | 'path';

/**
 * Who starts and stops the instances: `pg_ctl` (default), or systemd units named by a
 * template in which `%i` stands for the instance name ({@link SystemdInstanceName}), e.g.
 * `fts-segment@%i` or, for Debian's `postgresql@.service` (clusters made with
 * `pg_createcluster 15 gpseg0 -d /data/primary/gpseg0`), `postgresql@15-%i`.
 *
 * With systemd (the scripts must run as root, as SSM Run Command does):
 *
 * - start: `systemctl enable` (a reboot starts it again), the catalog's `port` written to
 *   `postgresql.auto.conf` (a unit cannot be given `-p`; a pg_basebackup copy carries the
 *   primary's file), `systemctl start`, then a wait until `postmaster.pid` says `ready` or
 *   `standby` (what `pg_ctl start -w` waits for), all within `pgCtlTimeoutSeconds`; on
 *   failure the unit's journal tail goes to stderr.
 * - stop `fast`: `systemctl stop` (the unit should stop with SIGINT, PostgreSQL's fast
 *   shutdown: `KillSignal=SIGINT`, `KillMode=mixed`, as PostgreSQL's documentation
 *   suggests); `immediate`: `systemctl kill --kill-who=main --signal=SIGQUIT` first when
 *   the unit's main PID is the instance's postmaster, then `systemctl stop`, which also
 *   cancels a restart systemd may have scheduled (`Restart=`). An instance still running
 *   afterwards (started outside systemd) is stopped with `pg_ctl`, as without systemd.
 * - fence: the same SIGQUIT when the unit runs the postmaster (`pg_ctl stop -m immediate`
 *   otherwise), and `systemctl stop --no-block`, which never waits. The unit stays
 *   enabled: whatever systemd starts later comes up read-only, because the fence wrote
 *   `standby.signal` first.
 *
 * The template may hold `A-Z a-z 0-9 : _ . - @` and `%i`: a name, `@`, then at least one
 * `%i` (optionally `.service` at the end). It is shell-quoted anyway.
 */
export type ServiceManager = { kind: 'pg_ctl' } | { kind: 'systemd'; unit: string; instance?: SystemdInstanceName };

/** Linux distributions whose PostgreSQL packages {@link pgBinFor} knows. */
export type PgDistro = 'debian' | 'ubuntu' | 'amazon-linux-2023' | 'pgdg-rhel';

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
   * `<datadir>/log/startup.log`. Unused with systemd (the unit's journal has the log).
   */
  logFile?: string;
  /** Seconds of a fence's immediate stop, and of its wait for killed processes; default {@link DEFAULT_FENCE_TIMEOUT_SECONDS}. */
  fenceTimeoutSeconds?: number;
  /**
   * Who starts and stops instances; default `{ kind: 'pg_ctl' }`, with which every script
   * is exactly what it was before this option existed. See {@link ServiceManager}.
   */
  serviceManager?: ServiceManager;
  /**
   * Rebuild scripts print `PROGRESS bytes=<n> total=<m> tool=<pg_basebackup|pg_rewind>`
   * lines on stdout while copying ({@link parseProgress}); `pg_basebackup` gets `-P` for it
   * (`pg_rewind` always runs with `--progress`). The tools' own lines still go to stderr.
   * Default false.
   */
  progress?: boolean;
  /**
   * For a rebuild run as a background job that may copy for hours (SegmentHost.startRebuild):
   * the file (absolute path) in which the rebuild script keeps only its latest `PROGRESS`
   * line, rewritten in place with one write of the whole line (a reader sees that line,
   * or rarely an empty file, never half a line). It implies {@link progress}. The script's output then stays short however long
   * the copy takes: no `PROGRESS` line on stdout while copying, and the tools' own
   * progress lines (one a second) are not copied to stderr; when a tool ends, its last
   * `PROGRESS` line is printed on stdout once. SSM's GetCommandInvocation returns only the
   * first 24,000 characters of stdout and 8,000 of stderr: a line a second would fill them in minutes,
   * hiding both the current progress and the error at the end of stderr.
   */
  progressFile?: string;
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
  /** Set when systemd starts and stops the instances. */
  systemd?: { unit: string; instance: SystemdInstanceName };
  progress: boolean;
  progressFile?: string;
}

/** Who an instance is, as written into its `postgresql.auto.conf`. */
export type InstanceIdentity = Pick<SegmentRow, 'dbid' | 'content' | 'datadir'>;

/**
 * Where each distribution's packages install a major version's PostgreSQL tools
 * (`pg_ctl`, `pg_rewind`, `pg_basebackup`, `psql`); see {@link pgBinFor}.
 */
export const PG_BIN_PRESETS: Readonly<Record<PgDistro, (major: number) => string>> = {
  /**
   * Debian: `postgresql-N` (server tools) and `postgresql-client-N` (psql, pg_basebackup)
   * install into `/usr/lib/postgresql/N/bin`; majors live side by side, and `/usr/bin`
   * holds only pg_wrapper links.
   */
  debian: (major) => `/usr/lib/postgresql/${major}/bin`,
  /** Ubuntu: Debian's packaging (`postgresql-N`, `/usr/lib/postgresql/N/bin`), also from apt.postgresql.org. */
  ubuntu: (major) => `/usr/lib/postgresql/${major}/bin`,
  /**
   * Amazon Linux 2023: `postgresqlN` and `postgresqlN-server` (e.g. `postgresql15-server`,
   * initialized with `postgresql-setup --initdb`) follow Fedora's packaging, which puts
   * the tools in `%{_bindir}`, i.e. `/usr/bin`: one major's tools per host.
   */
  'amazon-linux-2023': () => '/usr/bin',
  /**
   * The PostgreSQL project's RPMs (PGDG, download.postgresql.org) on RHEL, Rocky, Alma
   * and Oracle Linux: `postgresqlN-server` installs into `/usr/pgsql-N/bin`, majors side by side.
   */
  'pgdg-rhel': (major) => `/usr/pgsql-${major}/bin`,
};

/** Every {@link PgDistro}. */
export const PG_DISTROS = Object.keys(PG_BIN_PRESETS) as readonly PgDistro[];

/**
 * The PostgreSQL bin directory of a major version as a distribution's packages install
 * it ({@link PG_BIN_PRESETS}), for {@link ShellOptions.pgBin}: `pgBinFor('debian', 15)` is
 * `/usr/lib/postgresql/15/bin`. Throws ValidationError for an unknown distribution or a
 * major that is not an integer from 10 to 99.
 */
export function pgBinFor(distro: PgDistro, major: number): string {
  if (typeof distro !== 'string' || !Object.prototype.hasOwnProperty.call(PG_BIN_PRESETS, distro)) {
    throw new ValidationError(`unknown distribution ${JSON.stringify(distro)}; known: ${PG_DISTROS.join(', ')}`);
  }
  if (!Number.isInteger(major) || major < 10 || major > 99) throw new ValidationError(`PostgreSQL major version must be an integer from 10 to 99, not ${String(major)}`);
  return PG_BIN_PRESETS[distro](major);
}

/**
 * Escapes a path as `systemd-escape --path` does: without the leading and trailing `/`,
 * `/` becomes `-`, and every byte other than `A-Z a-z 0-9 : _ .` (and a leading `.`) becomes
 * `\xNN`. A unit file turns it back into the path with `%f`.
 */
export function systemdEscapePath(path: string): string {
  const trimmed = path.replace(/\/+/g, '/').replace(/^\/|\/$/g, '');
  if (trimmed === '') return '-';
  let out = '';
  const bytes = Buffer.from(trimmed, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const ch = String.fromCharCode(bytes[i]);
    if (ch === '/') out += '-';
    else if (bytes[i] < 0x80 && /[A-Za-z0-9:_.]/.test(ch) && !(ch === '.' && i === 0)) out += ch;
    else out += `\\x${bytes[i].toString(16).padStart(2, '0')}`;
  }
  return out;
}

/**
 * The systemd unit of an instance: `template` with every `%i` replaced by the instance
 * name `instance` derives from the row ({@link SystemdInstanceName}). Throws
 * ValidationError for a template or a name systemd would not accept.
 */
export function systemdUnitName(template: string, segment: Pick<SegmentRow, 'content' | 'datadir'>, instance: SystemdInstanceName = 'gpseg'): string {
  const issues = unitTemplateIssues(template);
  let name: string;
  if (instance === 'gpseg') name = `gpseg${segment.content}`;
  else if (instance === 'basename') name = String(segment.datadir).replace(/\/+$/, '').replace(/^.*\//, '');
  else if (instance === 'path') name = systemdEscapePath(String(segment.datadir));
  else throw new ValidationError(`systemd instance name must be gpseg, basename or path, not ${String(instance)}`);
  if (instance !== 'path' && !/^[A-Za-z0-9:_.-]+$/.test(name)) {
    issues.push(`instance name ${JSON.stringify(name)} (${instance}) may only hold A-Z a-z 0-9 : _ . - (use instance 'path')`);
  }
  const unit = template.split('%i').join(name);
  if (unit.length + (unit.endsWith('.service') ? 0 : '.service'.length) > 255) issues.push(`unit name ${unit} is longer than systemd's 255 characters`);
  if (issues.length > 0) throw new ValidationError(`systemd unit of ${segment.datadir}: ${issues.join('; ')}`, issues);
  return unit;
}

function unitTemplateIssues(template: unknown): string[] {
  if (typeof template !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9:_.-]*@(?:[A-Za-z0-9:_.-]|%i)*$/.test(template) || !template.includes('%i')) {
    return [`systemd unit template ${JSON.stringify(template)} must be a name, @, then the instance with %i (A-Z a-z 0-9 : _ . - only), e.g. fts-segment@%i`];
  }
  const suffix = /\.([a-z]+)$/.exec(template.slice(template.lastIndexOf('%i') + 2));
  if (suffix && suffix[1] !== 'service') return [`systemd unit template ${template} names a .${suffix[1]} unit; an instance needs a .service`];
  return [];
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

/**
 * Script that starts an instance and waits until it accepts connections (a no-op if it
 * runs). A stale `postmaster.pid` is removed first. On failure it prints the tail of the
 * server log to stderr. With systemd: `systemctl enable` and `start` of the instance's
 * unit, see {@link ServiceManager}.
 */
export function startScript(segment: SegmentRow, options: ShellOptions = {}, start: StartOptions = {}): string {
  const o = resolve(options);
  checkSegment(segment);
  // Back as a primary (a switchover undone): the standby config written for its next start must go first.
  const asPrimary = start.asPrimary ? [`${asUser(o)} rm -f -- ${shellQuote(`${segment.datadir}/standby.signal`)}`] : [];
  return script(o, [`# start dbid ${segment.dbid} (content ${segment.content})${start.asPrimary ? ' as a primary' : ''}`, ...processFunctions(o), ...serviceFunctions(o), ...asPrimary, ...startLines(o, segment)]);
}

/** How {@link startScript} starts an instance. */
export interface StartOptions {
  /** Remove `standby.signal` first: the instance comes up writable (a planned switchover undone before its flip). */
  asPrimary?: boolean;
}

/**
 * Script that stops an instance with `pg_ctl stop -m fast|immediate`. An instance that
 * is not running (or whose data directory is gone) counts as stopped: exit 0. A stale
 * `postmaster.pid` is removed. With systemd: `systemctl stop` of its unit (after a
 * SIGQUIT through `systemctl kill` for `immediate`), see {@link ServiceManager}.
 *
 * Its last line is `STOP wasRunning=0|1 [latestCheckpointLsn=<lsn>] [clusterState=<state>]`
 * ({@link parseStopReport}), read from `pg_controldata` after the stop (both absent
 * without a control file).
 */
export function stopScript(segment: SegmentRow, mode: 'fast' | 'immediate', options: ShellOptions = {}): string {
  const o = resolve(options);
  checkSegment(segment);
  if (mode !== 'fast' && mode !== 'immediate') throw new ValidationError(`stop mode must be fast or immediate, not ${String(mode)}`);
  const control = shellQuote(`${segment.datadir}/global/pg_control`);
  return script(o, [
    `# stop dbid ${segment.dbid} (content ${segment.content}) -m ${mode}`,
    ...processFunctions(o),
    ...serviceFunctions(o),
    ...stopLines(o, segment, mode),
    'was_running=0',
    'if [ -n "$pm" ]; then was_running=1; fi',
    'stop_checkpoint= stop_state=',
    `if [ -f ${control} ]; then`,
    // Untranslated, so the labels can be recognized; a tool that fails leaves both empty.
    '  while IFS= read -r line; do',
    '    case "$line" in',
    "      'Latest checkpoint location:'*) read -r stop_checkpoint <<< \"${line#*:}\" ;;",
    "      'Database cluster state:'*) read -r stop_state <<< \"${line#*:}\" ;;",
    '    esac',
    `  done < <(${asUser(o)} env LC_ALL=C ${shellQuote(bin(o, 'pg_controldata'))} -D ${shellQuote(segment.datadir)} 2>/dev/null || true)`,
    'fi',
    `echo "${STOP_REPORT_PREFIX} wasRunning=$was_running\${stop_checkpoint:+ latestCheckpointLsn=$stop_checkpoint}\${stop_state:+ clusterState=$stop_state}"`,
  ]);
}

/**
 * Reads the report line of a stop script's output (the last `STOP ...` line). Throws
 * HostCommandError when there is none: the script did not run to its end.
 */
export function parseStopReport(output: string): StopReport {
  const lines = output.split('\n').map((l) => l.trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^STOP wasRunning=([01])(?: latestCheckpointLsn=([0-9A-Fa-f]+\/[0-9A-Fa-f]+))?(?: clusterState=(.+))?$/.exec(lines[i]);
    if (!m) continue;
    const report: StopReport = { wasRunning: m[1] === '1' };
    if (m[2] !== undefined) report.latestCheckpointLsn = m[2];
    if (m[3] !== undefined) report.clusterState = m[3];
    return report;
  }
  throw new HostCommandError(`the stop script printed no report line (${STOP_REPORT_PREFIX} wasRunning=...)`, undefined, output.slice(-2000));
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
 * With systemd ({@link ServiceManager}) step 3 sends the SIGQUIT through `systemctl kill`
 * when the unit runs the postmaster, and stops the unit without waiting (no restart by
 * `Restart=`); the unit stays enabled, and what it starts later is a standby.
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
  const config = newPrimary ? mirrorConfigLines(o, segment, newPrimary) : [...autoConfLines(o, segment.datadir, instanceSettings(o, segment)), ...standbySignalLines(o, segment.datadir)];
  const immediateStop = `${asUser(o)} ${shellQuote(bin(o, 'pg_ctl'))} stop -w -t ${shellQuote(o.fenceTimeoutSeconds)} -m immediate -D ${d} || echo 'the immediate stop did not end the instance'`;
  let stop: string[];
  if (o.systemd) {
    const unit = shellQuote(unitOf(o, segment));
    stop = [
      `pm=$(fts_postmaster ${d})`,
      'unit_quit=0',
      'if [ -n "$pm" ]; then',
      '  was_running=1',
      // SIGQUIT through systemd only when the unit runs this very postmaster.
      // A hung systemd (D-Bus) must not eat the fence's budget: each call gets 5 s.
      `  if fts_unit_runs ${unit} "$pm" && timeout -k 1 5 systemctl kill --kill-who=main --signal=SIGQUIT -- ${unit}; then unit_quit=1; fi`,
      'fi',
      // Also when nothing runs: cancels a restart the unit may have scheduled. Never waits for the stop.
      `timeout -k 1 5 systemctl stop --no-block -- ${unit} || echo ${shellQuote(`systemctl stop of ${unitOf(o, segment)} failed`)}`,
      'if [ -n "$pm" ]; then',
      '  if [ "$unit_quit" -eq 0 ]; then',
      `    ${immediateStop}`,
      `  elif ! fts_wait_gone "$pm" ${d} ${shellQuote(o.fenceTimeoutSeconds)}; then`,
      "    echo 'the immediate stop did not end the instance'",
      '  fi',
      'fi',
    ];
  } else {
    stop = [`pm=$(fts_postmaster ${d})`, 'if [ -n "$pm" ]; then', '  was_running=1', `  ${immediateStop}`, 'fi'];
  }
  return script(o, [
    `# fence dbid ${segment.dbid} (content ${segment.content})${newPrimary ? `, new primary dbid ${newPrimary.dbid}` : ''}`,
    ...processFunctions(o),
    ...serviceFunctions(o),
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
    ...stop,
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

/** Why a rebuild script could not rebuild the instance the way it was asked to. */
export interface RecoveryReport {
  /** `incremental-impossible`: pg_rewind cannot work; a full recovery (basebackup) can. */
  outcome: 'incremental-impossible';
  /** One of the reasons of {@link INCREMENTAL_IMPOSSIBLE_REASONS}. */
  reason: string;
}

/**
 * Reads the `RECOVERY incremental-impossible reason=<reason>` line a rebuild script ends
 * with when it exits with {@link INCREMENTAL_IMPOSSIBLE_EXIT_CODE} (from its stdout or its
 * stderr); undefined when there is none (success, or another failure).
 */
export function parseRecoveryReport(output: string): RecoveryReport | undefined {
  const lines = output.split('\n').map((l) => l.trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^RECOVERY incremental-impossible reason=([a-z0-9-]+)$/.exec(lines[i]);
    if (m) return { outcome: 'incremental-impossible', reason: m[1] };
  }
  return undefined;
}

/** One progress line of a rebuild script ({@link ShellOptions.progress}). */
export interface ProgressReport {
  /** Bytes copied so far (the tool counts kB: a multiple of 1024). */
  bytes: number;
  /** Bytes the tool expects to copy in all (an estimate; pg_basebackup raises it when passed). */
  total: number;
  /** `pg_basebackup` or `pg_rewind`. */
  tool: string;
}

/**
 * Reads every `PROGRESS bytes=<n> total=<m> tool=<tool>` line of a rebuild script's
 * stdout, in order. The scripts make them from the lines `pg_basebackup -P` and
 * `pg_rewind --progress` print to stderr when it is not a terminal, one a second at most:
 * `<done>/<total> kB (<pct>%), <i>/<n> tablespace(s)` and `<done>/<total> kB (<pct>%) copied`.
 */
export function parseProgress(output: string): ProgressReport[] {
  const reports: ProgressReport[] = [];
  for (const line of output.split('\n')) {
    const m = /^PROGRESS bytes=(\d+) total=(\d+) tool=(\S+)$/.exec(line.trim());
    if (m) reports.push({ bytes: Number(m[1]), total: Number(m[2]), tool: m[3] });
  }
  return reports;
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
 *
 * `pg_rewind` runs with `LC_ALL=C`; when it fails for one of the
 * {@link INCREMENTAL_IMPOSSIBLE_REASONS}, the script ends with the line
 * `RECOVERY incremental-impossible reason=<reason>` (on stdout and stderr) and exits with
 * {@link INCREMENTAL_IMPOSSIBLE_EXIT_CODE}; other failures keep pg_rewind's exit code.
 *
 * Before `pg_basebackup` empties the data directory, the script checks what it holds and
 * deletes nothing, exiting with {@link WIPE_REFUSED_EXIT_CODE} and the message
 * `refusing to wipe <dir>: it is not a data directory of content <N> (found ...)`, unless
 * it is empty (or was just created), or a data directory (`PG_VERSION`) whose
 * `postgresql.auto.conf` sets `fts.content` to the mirror's content (the identity every
 * script writes; the last setting wins, as in PostgreSQL), or an interrupted copy of this
 * script for the same content (its `backup_label` says `LABEL: fts rebuild of content <N>`:
 * the script passes that label to pg_basebackup), or what is left of an interrupted copy
 * of this script for the same content whatever state it stopped in (the wipe marker of
 * {@link rebuildStateFiles} says `content=<N>`: written before the directory is emptied,
 * removed once pg_basebackup succeeded). A directory of random files, a data directory
 * of another content, or one without `fts.content` is left alone.
 *
 * Every rebuild first takes the data directory's lock ({@link rebuildStateFiles}, `flock`,
 * held by the script and the tools it runs, so also by an orphaned pg_basebackup whose
 * script was killed): while another rebuild of the directory runs, it exits at once with
 * {@link REBUILD_BUSY_EXIT_CODE} and does nothing. The lock is released before the start,
 * so the started instance does not hold it. Killed, the script can be run again: it
 * stops, checks and wipes as the first time. With {@link ShellOptions.progressFile} the
 * output stays short however long the copy takes.
 */
export function rebuildAsMirrorScript(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod, options: ShellOptions = {}): string {
  const o = resolve(options);
  checkPair(mirror, primary);
  const datadir = mirror.datadir;
  const d = shellQuote(datadir);
  const state = rebuildStateFiles(datadir);
  let rebuild: string[];
  let functions: string[];
  if (method === 'rewind') {
    // psql and pg_rewind connect with the same parameters; a password, if any, comes from
    // the OS user's ~/.pgpass on the host (or PGPASSWORD in local mode), never from this
    // script (psql -w never prompts).
    const source = `${primaryConninfo(mirror, primary, o.replicationUser)} dbname='postgres'`;
    const slots = shellQuote(`${datadir}/pg_replslot`);
    const rewind = `${asUser(o)} ${shellQuote(bin(o, 'pg_rewind'))} --target-pgdata=${d} --source-server=${shellQuote(source)} --progress`;
    functions = toolOutputFunctions(o, true);
    rebuild = [
      // A mirror that stopped or crashed as a standby has no WAL of its own: there is
      // nothing to rewind, and pg_rewind's crash recovery (run as a primary's, see below)
      // would write checkpoints of its own that no primary has: it could never stream again.
      `fts_state=$({ LC_ALL=C ${asUser(o)} ${shellQuote(bin(o, 'pg_controldata'))} -D ${d} 2>/dev/null || true; } | sed -n 's/^Database cluster state: *//p')`,
      'case "$fts_state" in',
      `  'in archive recovery'|'shut down in recovery') echo ${shellQuote(`dbid ${mirror.dbid} stopped as a standby`)}" ($fts_state): nothing to rewind" ;;`,
      '  *)',
      `echo ${shellQuote(`pg_rewind of ${datadir} from ${primary.address}:${primary.port}`)}`,
      // pg_rewind (PostgreSQL 13+) finishes an unclean shutdown with crash recovery in
      // single-user mode, which a standby cannot run; the mirror config writes it back.
      `${asUser(o)} rm -f -- ${shellQuote(`${datadir}/standby.signal`)}`,
      // A just-promoted source still shows its old timeline in pg_control until its first
      // checkpoint; pg_rewind (PostgreSQL <= 15) would then say "no rewind required" and
      // leave this instance diverged, unable to stream. Patroni checkpoints first too.
      `${asUser(o)} ${shellQuote(bin(o, 'psql'))} -X -q -w -v ON_ERROR_STOP=1 -d ${shellQuote(source)} -c CHECKPOINT`,
      // Its messages (stderr) pass through fts_tool_output, which recognizes the ones that
      // make an incremental recovery impossible; untranslated, so they can be recognized.
      'rewind_rc=0',
      `{ LC_ALL=C ${rewind} 2>&1 >&3 3>&- | fts_tool_output pg_rewind; } 3>&1 || rewind_rc=$?`,
      'if [ "$rewind_rc" -ne 0 ]; then',
      '  if [ -n "$fts_reason" ]; then',
      `    echo ${shellQuote(`pg_rewind cannot rebuild dbid ${mirror.dbid} incrementally; a full recovery (rebuild by basebackup, gprecoverseg -F) can`)} >&2`,
      `    echo "${RECOVERY_REPORT_PREFIX} incremental-impossible reason=$fts_reason" >&2`,
      `    echo "${RECOVERY_REPORT_PREFIX} incremental-impossible reason=$fts_reason"`,
      `    exit ${INCREMENTAL_IMPOSSIBLE_EXIT_CODE}`,
      '  fi',
      '  exit "$rewind_rc"',
      'fi',
      // Slots this instance may keep from its time as a primary would pin WAL on the
      // mirror forever; a mirror serves none.
      `if ${asUser(o)} test -d ${slots}; then ${asUser(o)} find ${slots} -mindepth 1 -delete; fi`,
      '  ;;',
      'esac',
    ];
  } else if (method === 'basebackup') {
    const label = `fts rebuild of content ${mirror.content}`;
    const basebackup =
      `${asUser(o)} ${shellQuote(bin(o, 'pg_basebackup'))} -D ${d} -h ${shellQuote(primary.address)} -p ${shellQuote(primary.port)} -U ${shellQuote(o.replicationUser)} ` +
      `-X stream -S ${shellQuote(mirrorSlotName(mirror.dbid))} --checkpoint=fast --no-password -l ${shellQuote(label)}`;
    functions = [...wipeCheckFunctions(), ...(o.progress ? toolOutputFunctions(o, false) : [])];
    rebuild = [
      `echo ${shellQuote(`pg_basebackup of ${primary.address}:${primary.port} into ${datadir}`)}`,
      // Keep the directory itself (it may be a mount point); create it when missing.
      ...makeDataDirLines(o, datadir),
      // Emptied only when it is a directory, nothing of an instance runs in it any more,
      // and it holds nothing but this content's data.
      `if [ ! -d ${d} ]; then echo ${shellQuote(`${datadir} is not a directory`)} >&2; exit 1; fi`,
      `if [ -n "$(fts_instance_pids ${d} '')" ]; then echo ${shellQuote(`PostgreSQL processes still run in ${datadir}; not emptying it`)} >&2; exit 1; fi`,
      `fts_check_wipe ${d} ${shellQuote(mirror.content)} ${shellQuote(label)} ${shellQuote(state.wipeMarkerFile)} || exit ${WIPE_REFUSED_EXIT_CODE}`,
      // From here until the copy is complete, whatever the directory holds is a partial copy.
      `printf 'content=%s\\n' ${shellQuote(mirror.content)} > ${shellQuote(`${state.wipeMarkerFile}.tmp`)}`,
      `mv -f -- ${shellQuote(`${state.wipeMarkerFile}.tmp`)} ${shellQuote(state.wipeMarkerFile)}`,
      `${asUser(o)} find ${d} -mindepth 1 -delete`,
      o.progress ? `{ LC_ALL=C ${basebackup} -P 2>&1 >&3 3>&- | fts_tool_output pg_basebackup; } 3>&1` : basebackup,
      `rm -f -- ${shellQuote(state.wipeMarkerFile)}`,
    ];
  } else {
    throw new ValidationError(`rebuild method must be rewind or basebackup, not ${String(method)}`);
  }
  const lock = shellQuote(state.lockFile);
  return script(o, [
    `# rebuild dbid ${mirror.dbid} (content ${mirror.content}) as mirror of dbid ${primary.dbid} by ${method}`,
    ...processFunctions(o),
    ...serviceFunctions(o),
    ...functions,
    // A missing parent (a recovery to a new location) is made by the OS user when it can, as the data directory would be.
    `if [ ! -d ${shellQuote(posix.dirname(state.dir))} ]; then ${asUser(o)} mkdir -p -- ${shellQuote(posix.dirname(state.dir))} 2>/dev/null || mkdir -p -- ${shellQuote(posix.dirname(state.dir))}; fi`,
    `mkdir -p -m 700 -- ${shellQuote(state.dir)}`,
    'fts_lock_fd=',
    'if command -v flock >/dev/null 2>&1; then',
    // The tools inherit the descriptor: an orphaned pg_basebackup keeps the lock too.
    `  exec {fts_lock_fd}>>${lock}`,
    '  if ! flock -n "$fts_lock_fd"; then',
    `    echo ${shellQuote(`another rebuild of ${datadir} is running (it holds ${state.lockFile}); nothing was done`)} >&2`,
    `    exit ${REBUILD_BUSY_EXIT_CODE}`,
    '  fi',
    'else',
    `  echo ${shellQuote(`flock (util-linux) is missing: rebuilding ${datadir} without its lock`)} >&2`,
    'fi',
    ...(o.progressFile !== undefined ? [`rm -f -- ${shellQuote(o.progressFile)}`] : []),
    // Never stop or empty another instance: a directory whose identity names another dbid is not this mirror's.
    'fts_owner=',
    `if ${asUser(o)} test -f ${shellQuote(`${datadir}/postgresql.auto.conf`)}; then`,
    `  fts_owner=$({ ${asUser(o)} sed -n "s/^[[:space:]]*${DBID_SETTING.replace('.', '\\.')}[[:space:]]*=[[:space:]]*'\\{0,1\\}\\([0-9]*\\)'\\{0,1\\}.*/\\1/p" ${shellQuote(`${datadir}/postgresql.auto.conf`)} || true; } | tail -n 1)`,
    'fi',
    `if [ -n "$fts_owner" ] && [ "$fts_owner" != ${shellQuote(String(mirror.dbid))} ]; then`,
    `  echo ${shellQuote(`refusing to rebuild ${datadir}: it is the data directory of dbid `)}"$fts_owner"${shellQuote(`, not of dbid ${mirror.dbid}; nothing was done`)} >&2`,
    `  exit ${WIPE_REFUSED_EXIT_CODE}`,
    'fi',
    ...stopLines(o, mirror, 'fast'),
    ...rebuild,
    ...mirrorConfigLines(o, mirror, primary),
    // The postmaster must not inherit the lock: it would hold it as long as it runs.
    'if [ -n "$fts_lock_fd" ]; then exec {fts_lock_fd}>&-; fi',
    ...startLines(o, mirror),
  ]);
}

/** Files a rebuild script keeps beside a data directory, in {@link REBUILD_STATE_DIR} of its parent. */
export interface RebuildStateFiles {
  /** `<parent>/.fts-jobs`, created (mode 700) by the script. */
  dir: string;
  /** `<name>.lock`: held (flock) while a rebuild of the directory runs. */
  lockFile: string;
  /** `<name>.wiping`: present (`content=<N>`) from just before a full copy empties the directory until the copy succeeded. */
  wipeMarkerFile: string;
  /** `<name>.progress`: the latest PROGRESS line of a background rebuild on an SSM host ({@link ShellOptions.progressFile}). */
  progressFile: string;
}

/**
 * The state files of the rebuilds of a data directory (`/data/mirror/gpseg0` →
 * `/data/mirror/.fts-jobs/gpseg0.lock`, ...): in its parent, so on the same file system
 * (they survive a reboot) and unique per directory.
 */
export function rebuildStateFiles(datadir: string): RebuildStateFiles {
  const issues = datadirIssues(datadir);
  if (issues.length > 0) throw new ValidationError(issues.join('; '), issues);
  const normalized = posix.normalize(datadir).replace(/\/+$/, '');
  const dir = posix.join(posix.dirname(normalized), REBUILD_STATE_DIR);
  const name = posix.basename(normalized);
  return { dir, lockFile: `${dir}/${name}.lock`, wipeMarkerFile: `${dir}/${name}.wiping`, progressFile: `${dir}/${name}.progress` };
}

/**
 * Script that prints a progress file ({@link ShellOptions.progressFile}): a short second
 * command that reads the current progress of a rebuild that has run for hours, whose own
 * output SSM returns only the beginning of. Prints nothing when there is no file yet.
 */
export function readProgressScript(progressFile: string): string {
  if (typeof progressFile !== 'string' || !progressFile.startsWith('/') || /[\n\r\0]/.test(progressFile)) {
    throw new ValidationError(`progress file ${JSON.stringify(progressFile)} must be an absolute path without newlines`);
  }
  return ['#!/bin/bash', 'set -uo pipefail', `cat -- ${shellQuote(progressFile)} 2>/dev/null || true`, ''].join('\n');
}

/** What a rebuild's output says, for a {@link HostJobStatus}. */
export type RebuildOutcome = Pick<HostJobStatus, 'progress' | 'incrementalImpossible' | 'wipeRefused' | 'busy'>;

/**
 * Reads a rebuild script's output (stdout and stderr) and exit code: its last `PROGRESS`
 * line, the reason of a `RECOVERY incremental-impossible` line, and whether the full copy
 * refused to wipe ({@link WIPE_REFUSED_EXIT_CODE}).
 */
export function rebuildOutcome(exitCode: number | undefined, stdout: string, stderr: string): RebuildOutcome {
  const outcome: RebuildOutcome = {};
  const progress = parseProgress(stdout);
  if (progress.length > 0) outcome.progress = progress[progress.length - 1];
  const report = exitCode === INCREMENTAL_IMPOSSIBLE_EXIT_CODE ? (parseRecoveryReport(stdout) ?? parseRecoveryReport(stderr)) : undefined;
  if (report) outcome.incrementalImpossible = report.reason;
  if (exitCode === WIPE_REFUSED_EXIT_CODE) outcome.wipeRefused = true;
  if (exitCode === REBUILD_BUSY_EXIT_CODE) outcome.busy = true;
  return outcome;
}

/** The last `lines` non-empty lines of a script's stderr joined by ` | `, at most `chars` characters (the end kept). */
export function outputTail(text: string, lines = 5, chars = 1000): string {
  const kept = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '')
    .slice(-lines)
    .join(' | ');
  return kept.length > chars ? `...${kept.slice(-(chars - 3))}` : kept;
}

/**
 * Parses a service manager as written in configuration (the Lambda variable
 * `FTS_PG_SERVICE_MANAGER`): `pg_ctl`, or `systemd:<unit template>` optionally followed by
 * `,instance=gpseg|basename|path` ({@link SystemdInstanceName}, default `gpseg`), e.g.
 * `systemd:postgresql@15-%i.service` or `systemd:fts-segment@%i,instance=path`. The
 * template follows {@link ServiceManager}'s rules. Throws ValidationError saying what is wrong.
 */
export function parseServiceManager(text: string): ServiceManager {
  const value = typeof text === 'string' ? text.trim() : '';
  const usage = 'pg_ctl, or systemd:<unit template>[,instance=gpseg|basename|path] (e.g. systemd:postgresql@15-%i.service)';
  if (value === 'pg_ctl') return { kind: 'pg_ctl' };
  if (!value.startsWith('systemd:')) throw new ValidationError(`service manager ${JSON.stringify(text)} must be ${usage}`);
  const [unit, ...rest] = value.slice('systemd:'.length).split(',');
  const issues = unitTemplateIssues(unit);
  let instance: SystemdInstanceName | undefined;
  for (const part of rest) {
    const m = /^instance=(gpseg|basename|path)$/.exec(part.trim());
    if (m) instance = m[1] as SystemdInstanceName;
    else issues.push(`unknown part ${JSON.stringify(part)} (only instance=gpseg|basename|path)`);
  }
  if (issues.length > 0) throw new ValidationError(`service manager ${JSON.stringify(text)}: ${issues.join('; ')}; expected ${usage}`, issues);
  return instance ? { kind: 'systemd', unit, instance } : { kind: 'systemd', unit };
}

/** Validates script options as every script builder does; throws ValidationError listing every problem. */
export function checkShellOptions(options: ShellOptions): void {
  resolve(options);
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
    progress: options.progress ?? options.progressFile !== undefined,
    progressFile: options.progressFile,
  };
  const issues: string[] = [];
  const manager = options.serviceManager as { kind?: unknown; unit?: unknown; instance?: unknown } | undefined;
  if (manager !== undefined && manager.kind === 'systemd') {
    const instance = (manager.instance ?? 'gpseg') as SystemdInstanceName;
    if (!['gpseg', 'basename', 'path'].includes(instance)) issues.push(`systemd instance name must be gpseg, basename or path, not ${String(instance)}`);
    issues.push(...unitTemplateIssues(manager.unit));
    resolved.systemd = { unit: String(manager.unit), instance };
  } else if (manager !== undefined && manager.kind !== 'pg_ctl') {
    issues.push(`serviceManager kind must be pg_ctl or systemd, not ${String(manager.kind)}`);
  }
  if (typeof resolved.progress !== 'boolean') issues.push(`progress must be true or false, not ${String(resolved.progress)}`);
  const pf = resolved.progressFile;
  if (pf !== undefined) {
    if (typeof pf !== 'string' || !pf.startsWith('/') || pf.endsWith('/') || /[\n\r\0]/.test(pf)) issues.push(`progressFile ${JSON.stringify(pf)} must be an absolute file path without newlines`);
    if (resolved.progress === false) issues.push('progressFile needs progress on');
  }
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

/** The systemd unit of the instance; only with a systemd service manager. */
function unitOf(o: Resolved, segment: SegmentRow): string {
  if (!o.systemd) throw new ValidationError('no systemd service manager configured');
  return systemdUnitName(o.systemd.unit, segment, o.systemd.instance);
}

/**
 * Bash functions of the systemd service manager (none with pg_ctl): whether a unit runs
 * a given postmaster, and waits for a postmaster to be gone or ready.
 */
function serviceFunctions(o: Resolved): string[] {
  if (!o.systemd) return [];
  return [
    // fts_unit_runs UNIT PID: the unit's main process is PID.
    'fts_unit_runs() { [ "$(timeout -k 1 5 systemctl show -p MainPID --value -- "$1" 2>/dev/null)" = "$2" ]; }',
    // fts_wait_gone PID DATADIR SECONDS: waits until PID no longer is a live process of DATADIR.
    'fts_wait_gone() {',
    '  local i dir',
    '  dir=$(fts_realdir "$2")',
    '  for ((i = 0; i < $3 * 10; i++)); do',
    '    if ! fts_alive "$1" "$dir"; then return 0; fi',
    '    sleep 0.1',
    '  done',
    '  return 1',
    '}',
    // fts_wait_ready DATADIR DEADLINE UNIT: waits until the postmaster.pid of a live
    // postmaster says ready or standby (what pg_ctl start -w waits for), until $SECONDS
    // reaches DEADLINE; gives up at once when the unit failed.
    'fts_wait_ready() {',
    '  local lines',
    '  while :; do',
    '    if [ -n "$(fts_postmaster "$1")" ]; then',
    '      lines=()',
    '      { mapfile -t -n 8 lines < "$1/postmaster.pid"; } 2>/dev/null || true',
    '      case "${lines[7]:-}" in ready*|standby*) return 0 ;; esac',
    '    fi',
    '    if systemctl is-failed --quiet -- "$3" 2>/dev/null; then echo "systemd unit $3 failed" >&2; return 1; fi',
    '    if [ "$SECONDS" -ge "$2" ]; then echo "$1 did not accept connections in time" >&2; return 1; fi',
    '    sleep 0.1',
    '  done',
    '}',
  ];
}

/**
 * Bash function `fts_tool_output TOOL` that reads a PostgreSQL tool's stderr and copies it
 * to stderr line by line; with progress on it also prints `PROGRESS bytes=<n> total=<m>
 * tool=<TOOL>` on stdout for each of the tool's progress lines (`<done>/<total> kB (`...,
 * in kB); with a progress file ({@link ShellOptions.progressFile}) it writes that line
 * into the file instead, copies the tool's progress lines nowhere, and prints the last
 * `PROGRESS` line once when the tool's output ends. With `reasons` it sets `fts_reason`
 * to the first of {@link INCREMENTAL_IMPOSSIBLE_REASONS} a line shows. It runs as the
 * last command of a pipeline, in this shell (lastpipe), so `fts_reason` survives it.
 */
function toolOutputFunctions(o: Resolved, reasons: boolean): string[] {
  const cases = INCREMENTAL_IMPOSSIBLE_REASONS.map(({ reason, parts }) => `        *${parts.map((p) => shellQuote(p)).join('*')}*) fts_reason=${reason} ;;`);
  const report = `"${PROGRESS_PREFIX} bytes=$((10#\${BASH_REMATCH[1]} * 1024)) total=$((10#\${BASH_REMATCH[2]} * 1024)) tool=$1"`;
  let progress: string[];
  if (o.progressFile !== undefined) {
    const file = shellQuote(o.progressFile);
    progress = [
      '    if [[ $line =~ $re ]]; then',
      `      last=${report}`,
      // One write of a short line, by a builtin (no process a second); a report that
      // cannot be written must not end the copy.
      `      { printf '%s\\n' "$last" > ${file}; } 2>/dev/null || true`,
      '    else',
      '      printf \'%s\\n\' "$line" >&2',
      '    fi',
    ];
  } else if (o.progress) {
    progress = ['    printf \'%s\\n\' "$line" >&2', '    if [[ $line =~ $re ]]; then', `      printf '%s\\n' ${report}`, '    fi'];
  } else {
    progress = ['    printf \'%s\\n\' "$line" >&2'];
  }
  return [
    'shopt -s lastpipe',
    'fts_reason=',
    'fts_tool_output() {',
    "  local line last= re='^[[:space:]]*([0-9]+)/([0-9]+) kB \\('",
    '  while IFS= read -r line || [ -n "$line" ]; do',
    ...progress,
    ...(reasons ? ['    if [ -z "$fts_reason" ]; then', '      case "$line" in', ...cases, '      esac', '    fi'] : []),
    '  done',
    ...(o.progressFile !== undefined ? ['  if [ -n "$last" ]; then printf \'%s\\n\' "$last"; fi'] : []),
    '}',
  ];
}

/**
 * Bash function `fts_check_wipe DIR CONTENT LABEL MARKER`: succeeds when a full copy may
 * empty DIR (see {@link rebuildAsMirrorScript}), otherwise says why not on stderr and fails.
 */
function wipeCheckFunctions(): string[] {
  return [
    'fts_check_wipe() {',
    '  local dir=$1 content=$2 label=$3 marker=$4 found value= has_value=0 line entries shown',
    `  local re=${shellQuote(`^[[:space:]]*${CONTENT_SETTING.replace('.', '\\.')}[[:space:]]*=[[:space:]]*'?([^'#[:space:]]*)'?[[:space:]]*(#.*)?$`)}`,
    '  if [ ! -r "$dir" ] || [ ! -x "$dir" ]; then',
    '    echo "refusing to wipe $dir: it is not a data directory of content $content (found a directory this script cannot read)" >&2',
    '    return 1',
    '  fi',
    '  entries=()',
    '  shopt -s nullglob dotglob',
    '  entries=("$dir"/*)',
    '  shopt -u nullglob dotglob',
    '  if [ "${#entries[@]}" -eq 0 ]; then return 0; fi',
    // A copy this script began and could not finish, wherever it stopped: while emptying
    // the directory, or before pg_basebackup wrote backup_label (it creates pg_wal/ first).
    '  if [ -f "$marker" ] && [ "$(cat -- "$marker" 2>/dev/null)" = "content=$content" ]; then',
    '    echo "$dir holds what is left of an interrupted full copy of content $content ($marker): emptying it again"',
    '    return 0',
    '  fi',
    '  if [ -f "$dir/PG_VERSION" ]; then',
    '    if [ -f "$dir/postgresql.auto.conf" ]; then',
    '      while IFS= read -r line || [ -n "$line" ]; do',
    '        if [[ $line =~ $re ]]; then value=${BASH_REMATCH[1]}; has_value=1; fi',
    '      done < "$dir/postgresql.auto.conf"',
    '    fi',
    '    if [ "$has_value" -eq 1 ] && [ "$value" = "$content" ]; then return 0; fi',
    `    if [ "$has_value" -eq 1 ]; then found="a data directory whose postgresql.auto.conf says ${CONTENT_SETTING} = '$value'"; else found="a data directory without ${CONTENT_SETTING} in postgresql.auto.conf"; fi`,
    '  else',
    '    shown=("${entries[@]:0:3}")',
    '    shown=("${shown[@]##*/}")',
    '    found="no PG_VERSION but ${#entries[@]} entries: $(IFS=,; printf \'%s\' "${shown[*]}")"',
    '    if [ "${#entries[@]}" -gt 3 ]; then found="$found,..."; fi',
    '  fi',
    // A copy this script began and could not finish (killed, host rebooted): pg_basebackup writes backup_label first.
    '  if [ -f "$dir/backup_label" ] && grep -qxF -- "LABEL: $label" "$dir/backup_label" 2>/dev/null; then return 0; fi',
    '  echo "refusing to wipe $dir: it is not a data directory of content $content (found $found)" >&2',
    '  return 1',
    '}',
  ];
}

function startLines(o: Resolved, segment: SegmentRow): string[] {
  if (o.systemd) return systemdStartLines(o, segment);
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

/** startLines with systemd: see {@link ServiceManager}. */
function systemdStartLines(o: Resolved, segment: SegmentRow): string[] {
  const d = shellQuote(segment.datadir);
  const name = unitOf(o, segment);
  const unit = shellQuote(name);
  const t = shellQuote(o.pgCtlTimeoutSeconds);
  return [
    `systemctl enable --quiet -- ${unit} || echo ${shellQuote(`systemctl enable ${name} failed: systemd will not start dbid ${segment.dbid} after a reboot`)} >&2`,
    `if [ -n "$(fts_postmaster ${d})" ]; then`,
    `  echo ${shellQuote(`dbid ${segment.dbid} is already running`)}`,
    'else',
    `  fts_clear_stale ${d}`,
    // The catalog's port: the unit starts postgres without -p.
    ...autoConfLines(o, segment.datadir, [['port', String(segment.port)]]).map((line) => `  ${line}`),
    `  deadline=$((SECONDS + ${o.pgCtlTimeoutSeconds}))`,
    '  start_rc=0',
    `  timeout -k 5 ${t} systemctl start -- ${unit} || start_rc=$?`,
    `  if [ "$start_rc" -eq 0 ]; then fts_wait_ready ${d} "$deadline" ${unit} || start_rc=$?; fi`,
    '  if [ "$start_rc" -ne 0 ]; then',
    `    echo ${shellQuote(`start of dbid ${segment.dbid} by systemd unit ${name} failed; its journal ends with:`)} >&2`,
    `    journalctl --no-pager -q -n 5 -u ${unit} >&2 || true`,
    '    exit "$start_rc"',
    '  fi',
    'fi',
  ];
}

/** stopLines with systemd: see {@link ServiceManager}. */
function systemdStopLines(o: Resolved, segment: SegmentRow, mode: 'fast' | 'immediate'): string[] {
  const d = shellQuote(segment.datadir);
  const name = unitOf(o, segment);
  const unit = shellQuote(name);
  const t = shellQuote(o.pgCtlTimeoutSeconds);
  return [
    `pm=$(fts_postmaster ${d})`,
    ...(mode === 'immediate' ? [`if [ -n "$pm" ] && fts_unit_runs ${unit} "$pm"; then systemctl kill --kill-who=main --signal=SIGQUIT -- ${unit} || true; fi`] : []),
    // Also when nothing runs: cancels a restart the unit may have scheduled (Restart=).
    `timeout -k 5 ${t} systemctl stop -- ${unit} || echo ${shellQuote(`systemctl stop ${name} failed`)} >&2`,
    'if [ -z "$pm" ]; then',
    `  echo ${shellQuote(`dbid ${segment.dbid} is not running`)}`,
    `elif fts_alive "$pm" "$(fts_realdir ${d})"; then`,
    // Not stopped by the unit (started outside systemd, or the unit's stop failed).
    '  stop_rc=0',
    `  ${asUser(o)} ${shellQuote(bin(o, 'pg_ctl'))} stop -w -t ${t} -m ${shellQuote(mode)} -D ${d} || stop_rc=$?`,
    `  if [ "$stop_rc" -ne 0 ] && fts_alive "$pm" "$(fts_realdir ${d})"; then exit "$stop_rc"; fi`,
    'fi',
    `fts_clear_stale ${d}`,
  ];
}

function stopLines(o: Resolved, segment: SegmentRow, mode: 'fast' | 'immediate'): string[] {
  if (o.systemd) return systemdStopLines(o, segment, mode);
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

/** The identity, and with systemd the catalog's port (a unit starts postgres without -p). */
function instanceSettings(o: Resolved, segment: SegmentRow): Array<[string, string]> {
  return [...identitySettings(segment), ...(o.systemd ? ([['port', String(segment.port)]] as Array<[string, string]>) : [])];
}

function mirrorConfigLines(o: Resolved, mirror: SegmentRow, primary: SegmentRow): string[] {
  const settings: Array<[string, string]> = [
    ['primary_conninfo', primaryConninfo(mirror, primary, o.replicationUser)],
    ['primary_slot_name', mirrorSlotName(mirror.dbid)],
  ];
  if (o.walRetrieveRetryInterval !== '') settings.push(['wal_retrieve_retry_interval', o.walRetrieveRetryInterval]);
  settings.push(...instanceSettings(o, mirror));
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
