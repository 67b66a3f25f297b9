/**
 * Pure building blocks of Greenplum's `gprecoverseg`: the `-i` recover config file, the
 * plan of which down mirrors to rebuild, how and where (in place, `-i` new locations,
 * `-p` spare host), and the plan of a rebalance (`-r`) that switches pairs back to their
 * preferred roles. No I/O: a workflow loads the snapshot, plans, writes the catalog
 * first and then acts.
 *
 * Greenplum's rules, as read in gpMgmt/bin/gppylib/programs/clsRecoverSegment_triples.py
 * (the parser and the recovery triplets), gppylib/parseutils.py (`line_reader`,
 * `check_values`), gppylib/utils.py (`normalizeAndValidateInputPath`) and
 * gppylib/operations/rebalanceSegments.py (the replay-lag guard), plus this project's:
 * a content with a pending promotion or a fence still owed is left alone, and so is one
 * held by a live operation of another workflow execution (./operations.ts); see
 * {@link PlanHold}.
 */
import { z } from 'zod';
import { ValidationError } from './errors';
import { COORDINATOR_CONTENT, pairsByContent } from './model';
import type { CatalogChange, ClusterSnapshot, SegmentRow } from './model';
import { describeOperation, liveOperation } from './operations';
import { validatePlacement } from './placement';
import type { RowState } from './transitions';

// ---------------------------------------------------------------------------------
// The recover config file (`gprecoverseg -i`)

/**
 * One line of a recover config file: the failed instance's location, and for a recovery
 * to another place the new one (all three `new*` fields, or none).
 */
export interface RecoverConfigEntry {
  /** 1-based line number in the file, for messages. */
  line: number;
  failedAddress: string;
  failedPort: number;
  /** Absolute, normalized (no `//`, `.`, `..` or trailing `/`). */
  failedDataDirectory: string;
  newAddress?: string;
  newPort?: number;
  newDataDirectory?: string;
}

/**
 * Parses a `gprecoverseg -i` file. Each line that is not blank and does not start with
 * `#` (after trimming) is `failedAddress|failedPort|failedDataDirectory` (recover in
 * place) or that group, whitespace, and `newAddress|newPort|newDataDirectory` (recover
 * to another place, always a full copy). Like Greenplum, any run of whitespace separates
 * the groups (its docs say one space; its parser splits on whitespace, MPP-15675) and
 * data directories are normalized as `os.path.normpath` does.
 *
 * Stricter than Greenplum (which only wants a port >= 0 and a non-empty field): a port
 * must be 1-65535 in decimal digits, a data directory absolute and not `/`. Across lines,
 * as Greenplum: the same failed instance (address and directory) twice, the same target
 * (address and directory) twice, or an in-place line whose instance is another line's
 * target is an error; also, here, the same target address and port twice.
 *
 * @throws ValidationError listing every problem, each naming its line; nothing is
 *   returned for a file with any bad line, nor for a file with no entry at all.
 */
export function parseRecoverConfig(text: string): RecoverConfigEntry[] {
  const issues: string[] = [];
  const entries: RecoverConfigEntry[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const groups = trimmed.split(/\s+/);
    if (groups.length > 2) {
      issues.push(`line ${line}: expected the failed segment, optionally followed by its new location (1 or 2 groups separated by a space), found ${groups.length} groups`);
      return;
    }
    const failed = parseGroup(groups[0], 'failed', line, issues);
    const target = groups.length === 2 ? parseGroup(groups[1], 'new', line, issues) : undefined;
    if (!failed || (groups.length === 2 && !target)) return;
    entries.push({
      line,
      failedAddress: failed.address,
      failedPort: failed.port,
      failedDataDirectory: failed.dataDirectory,
      ...(target ? { newAddress: target.address, newPort: target.port, newDataDirectory: target.dataDirectory } : {}),
    });
  });
  if (issues.length === 0 && entries.length === 0) issues.push('the recover config names no segment: every line is blank or a comment');
  if (issues.length === 0) issues.push(...crossLineIssues(entries));
  if (issues.length) throw new ValidationError(`invalid recover config: ${issues.join('; ')}`, issues);
  return entries;
}

interface Location {
  address: string;
  port: number;
  dataDirectory: string;
}

function parseGroup(group: string, which: 'failed' | 'new', line: number, issues: string[]): Location | undefined {
  const parts = group.split('|');
  if (parts.length !== 3) {
    issues.push(`line ${line}: the ${which} segment must be address|port|dataDirectory (3 fields separated by |), found ${parts.length} field${parts.length === 1 ? '' : 's'} in ${JSON.stringify(group)}`);
    return undefined;
  }
  const [address, portText, dir] = parts;
  const before = issues.length;
  if (address === '') issues.push(`line ${line}: the ${which} address is empty`);
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) issues.push(`line ${line}: the ${which} port ${JSON.stringify(portText)} is not a port (1-65535)`);
  const dirIssue = dataDirectoryIssue(dir);
  if (dirIssue) issues.push(`line ${line}: the ${which} data directory ${dirIssue}`);
  return issues.length === before ? { address, port, dataDirectory: normalizePath(dir) } : undefined;
}

/** Why a data directory is unusable, or undefined. A full recovery empties it: `/` never qualifies. */
function dataDirectoryIssue(dir: string): string | undefined {
  if (dir === '') return 'is empty';
  if (!dir.startsWith('/')) return `${JSON.stringify(dir)} is not an absolute path`;
  if (normalizePath(dir) === '/') return `${JSON.stringify(dir)} is the root directory`;
  return undefined;
}

/** `os.path.normpath` for absolute POSIX paths: collapses `//` and `.`, resolves `..` lexically, drops a trailing `/`. */
export function normalizePath(path: string): string {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return `/${out.join('/')}`;
}

/** Greenplum's consistency rules between lines (RecoveryTripletsUserConfigFile._validate), order-independent, plus target ports. */
function crossLineIssues(entries: readonly RecoverConfigEntry[]): string[] {
  const issues: string[] = [];
  const key = (address: string, dir: string) => `${address}\0${dir}`;
  const show = (address: string, dir: string) => `${address}:${dir}`;
  const failedAt = new Map<string, number>();
  const targetAt = new Map<string, number>();
  const targetPortAt = new Map<string, number>();
  for (const e of entries) {
    const f = key(e.failedAddress, e.failedDataDirectory);
    const seen = failedAt.get(f);
    if (seen !== undefined) issues.push(`lines ${seen} and ${e.line} both recover the failed segment ${show(e.failedAddress, e.failedDataDirectory)}; each failed segment is recovered once`);
    else failedAt.set(f, e.line);
    if (e.newAddress === undefined || e.newDataDirectory === undefined || e.newPort === undefined) continue;
    const t = key(e.newAddress, e.newDataDirectory);
    const other = targetAt.get(t);
    if (other !== undefined) issues.push(`lines ${other} and ${e.line} both recover to ${show(e.newAddress, e.newDataDirectory)}; a target is used once`);
    else targetAt.set(t, e.line);
    const p = `${e.newAddress}\0${e.newPort}`;
    const otherPort = targetPortAt.get(p);
    if (otherPort !== undefined) issues.push(`lines ${otherPort} and ${e.line} both recover to port ${e.newPort} on ${e.newAddress}; a target is used once`);
    else targetPortAt.set(p, e.line);
  }
  for (const e of entries) {
    if (e.newAddress !== undefined) continue;
    const target = targetAt.get(key(e.failedAddress, e.failedDataDirectory));
    if (target !== undefined) {
      issues.push(`lines ${target} and ${e.line} conflict: ${show(e.failedAddress, e.failedDataDirectory)} is recovered in place on line ${e.line} and used as a recovery target on line ${target}`);
    }
  }
  return issues;
}

// ---------------------------------------------------------------------------------
// Recovery plan (`gprecoverseg`, `-F`, `-i`, `-p`)

/** A host to recover onto (`gprecoverseg -p`): same port and data directory, new host. */
export interface SpareHost {
  hostname: string;
  address: string;
  availabilityZone?: string;
  placementGroup?: string;
  partitionNumber?: number;
  instanceId?: string;
}

/** What to recover. */
export interface RecoveryRequest {
  /** `incremental` (pg_rewind where the instance stays in place) or `full` (`-F`: pg_basebackup). */
  mode: 'incremental' | 'full';
  /** Entries of a recover config file (`-i`): only these are recovered. */
  config?: RecoverConfigEntry[];
  /** Recover onto this host (`-p`). */
  spareHost?: SpareHost;
  /** Only these contents (default: every content with a down mirror). */
  contents?: number[];
}

/**
 * Who plans, for the lock per content (./operations.ts): {@link planRecovery} and
 * {@link rebalancePlan} skip a content held by a live operation of another execution and
 * treat one held by `execution` as their own, so a re-run of the same execution (a
 * retried step) plans the same again. Execution names must be unique across workflows
 * (an execution ARN is).
 */
export interface PlanHold {
  /** When the plan is made: an operation whose `expiresAt` is not after it has lapsed. Without it every stored operation is live. */
  now?: Date;
  /** The workflow execution planning; without it, every live operation is another's. */
  execution?: string;
}

/** The live operation of another execution holding `content`, as a skip reason; undefined when it is free or ours. */
function heldByAnother(snapshot: ClusterSnapshot, content: number, hold: PlanHold): string | undefined {
  const operation = liveOperation(snapshot, content, hold.now);
  if (!operation || operation.execution === hold.execution) return undefined;
  return `content ${content} is held by ${describeOperation(operation)}: another workflow is working on it`;
}

/** Checks a PlanHold (it may come from untyped workflow code); ValidationError naming `what` otherwise. */
function parseHold(hold: PlanHold, what: string): PlanHold {
  const issues: string[] = [];
  if (hold.now !== undefined && !(hold.now instanceof Date && Number.isFinite(hold.now.getTime()))) issues.push('now must be a valid Date');
  if (hold.execution !== undefined && !(typeof hold.execution === 'string' && hold.execution.length > 0)) issues.push('execution must be a non-empty string');
  if (issues.length) throw new ValidationError(`invalid ${what}: ${issues.join('; ')}`, issues);
  return hold;
}

/** How one content's mirror is rebuilt. */
export interface RecoveryAction {
  content: number;
  /** The down mirror row rebuilt; its dbid stays. */
  failedDbid: number;
  /** The source: the content's acting primary, up. */
  actingPrimaryDbid: number;
  /** `basebackup` whenever the instance moves or a full recovery is asked for. */
  method: 'rewind' | 'basebackup';
  /** The row as it will be once recovered: `m/u/n`, at its (maybe new) place. */
  target: SegmentRow;
  /** Host, address, port or data directory change. */
  moved: boolean;
}

/** A content left alone, and why. */
export interface SkippedContent {
  content: number;
  reason: string;
}

/** The outcome of {@link planRecovery}. */
export interface RecoveryPlan {
  recoveries: RecoveryAction[];
  skipped: SkippedContent[];
  /** Placement warnings the moves introduce (shared zone, unknown host), for the operator. */
  warnings: string[];
}

const nonEmpty = z.string().min(1);
const portSchema = z.number().int().min(1).max(65535);
const absoluteDir = z.string().refine((d) => dataDirectoryIssue(d) === undefined, 'must be an absolute data directory other than /');
const entrySchema = z
  .object({
    line: z.number().int().min(1),
    failedAddress: nonEmpty,
    failedPort: portSchema,
    failedDataDirectory: absoluteDir,
    newAddress: nonEmpty.optional(),
    newPort: portSchema.optional(),
    newDataDirectory: absoluteDir.optional(),
  })
  .strict()
  .refine((e) => [e.newAddress, e.newPort, e.newDataDirectory].every((v) => v === undefined) || [e.newAddress, e.newPort, e.newDataDirectory].every((v) => v !== undefined), {
    message: 'newAddress, newPort and newDataDirectory go together',
  });
const spareHostSchema = z
  .object({
    hostname: nonEmpty,
    address: nonEmpty,
    availabilityZone: nonEmpty.optional(),
    placementGroup: nonEmpty.optional(),
    partitionNumber: z.number().int().min(1).max(7).optional(),
    instanceId: nonEmpty.optional(),
  })
  .strict();
const requestSchema = z
  .object({
    mode: z.enum(['incremental', 'full']),
    config: z.array(entrySchema).min(1).optional(),
    spareHost: spareHostSchema.optional(),
    contents: z.array(z.number().int().min(-1)).min(1).optional(),
  })
  .strict();

/** zod issues as `path: message` sentences. */
const zodIssues = (error: z.ZodError): string[] => error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));

function parseRequest(request: unknown): RecoveryRequest {
  const result = requestSchema.safeParse(request);
  if (!result.success) {
    const issues = zodIssues(result.error);
    throw new ValidationError(`invalid recovery request: ${issues.join('; ')}`, issues);
  }
  const req = result.data;
  const issues: string[] = [];
  // As gprecoverseg: -i and -p are exclusive; the file already says what to recover.
  if (req.config && req.spareHost) issues.push('config and spareHost exclude each other (gprecoverseg -i or -p, not both)');
  if (req.config && req.contents) issues.push('config and contents exclude each other: the config names what to recover');
  if (req.config) issues.push(...crossLineIssues(req.config));
  if (issues.length) throw new ValidationError(`invalid recovery request: ${issues.join('; ')}`, issues);
  return req;
}

/** The EC2 placement fields of a row or host, only those defined (stores reject undefined). */
function placementFields(p: Pick<SegmentRow, 'instanceId' | 'availabilityZone' | 'placementGroup' | 'partitionNumber'>): Partial<SegmentRow> {
  const out: Partial<SegmentRow> = {};
  if (p.instanceId !== undefined) out.instanceId = p.instanceId;
  if (p.availabilityZone !== undefined) out.availabilityZone = p.availabilityZone;
  if (p.placementGroup !== undefined) out.placementGroup = p.placementGroup;
  if (p.partitionNumber !== undefined) out.partitionNumber = p.partitionNumber;
  return out;
}

/** A row moved to `to` (host, address, port, directory, placement); everything else, dbid and identity included, kept. */
function relocated(row: SegmentRow, to: { hostname: string; address: string; port: number; datadir: string; placement: Partial<SegmentRow> }): SegmentRow {
  const { instanceId: _i, availabilityZone: _a, placementGroup: _g, partitionNumber: _n, ...rest } = row;
  return { ...rest, hostname: to.hostname, address: to.address, port: to.port, datadir: to.datadir, ...to.placement };
}

const locationOf = (r: SegmentRow) => `${r.hostname} ${r.address}:${r.port} ${r.datadir}`;
const sameLocation = (a: SegmentRow, b: SegmentRow) =>
  a.hostname === b.hostname && a.address === b.address && a.port === b.port && normalizePath(a.datadir) === normalizePath(b.datadir);

/**
 * Plans a `gprecoverseg`: which contents get their mirror rebuilt, from which acting
 * primary, with which method, and where. Greenplum's rules: a content is recovered when
 * its mirror (role `m`) is down and its acting primary (role `p`) is up; with both down
 * (double fault) there is no source and it is skipped. With `config`, only the contents
 * whose down mirror a line names are recovered, and a line naming no down mirror (an
 * unknown location, an up row, a down acting primary, the coordinator's standby) is an
 * error. A recovery to another place (`config` new location, or `spareHost` keeping port
 * and data directory) is always a `basebackup`; so is every recovery in `full` mode;
 * otherwise `rewind`. Also skipped: a content with a pending promotion (the prober is
 * failing it over), a mirror still owed a fence (its host has not answered since the
 * failover: rebuilding it first would leave the fence to land on the rebuilt mirror),
 * a content held by a live operation of another execution (see {@link PlanHold}: one
 * held by `hold.execution` is planned as usual), and the coordinator's standby
 * (gpinitstandby's job, not gprecoverseg's).
 *
 * Moves are checked on the rows after recovery: no new error of `validatePlacement`
 * (mirror on its primary's host or partition, two instances on one host:port or
 * host:datadir), no address:port used twice, and no data directory inside another's on
 * the same host (a full recovery empties it first).
 *
 * @throws ValidationError listing every problem (bad request, config lines matching no
 *   down mirror, moves breaking placement), each naming its line or dbids; nothing is
 *   planned then.
 */
export function planRecovery(snapshot: ClusterSnapshot, request: RecoveryRequest, hold: PlanHold = {}): RecoveryPlan {
  const req = parseRequest(request);
  parseHold(hold, 'recovery plan options');
  const issues: string[] = [];
  const pairs = new Map(pairsByContent(snapshot.segments).map((p) => [p.content, p]));
  const pending = new Map(snapshot.pendingPromotions.map((p) => [p.content, p]));
  const fenceOwed = new Set(snapshot.pendingFences.map((f) => f.dbid));

  // Contents asked for by name (config lines or `contents`), with the line's target.
  const asked = new Map<number, RecoverConfigEntry | undefined>();
  if (req.config) {
    for (const entry of req.config) {
      const row = snapshot.segments.find(
        (r) => r.address === entry.failedAddress && r.port === entry.failedPort && normalizePath(r.datadir) === normalizePath(entry.failedDataDirectory),
      );
      const where = `${entry.failedAddress}|${entry.failedPort}|${entry.failedDataDirectory}`;
      if (!row) issues.push(`line ${entry.line}: no instance of cluster ${snapshot.clusterId} is at ${where}`);
      else if (row.content === COORDINATOR_CONTENT) issues.push(`line ${entry.line}: ${where} is dbid ${row.dbid} of the coordinator (content -1); gprecoverseg does not recover it (gpinitstandby does)`);
      else if (row.role !== 'm') issues.push(`line ${entry.line}: ${where} is dbid ${row.dbid}, the acting primary of content ${row.content}, not a down mirror; there is no source to recover it from`);
      else if (row.status !== 'd') issues.push(`line ${entry.line}: ${where} is dbid ${row.dbid}, the mirror of content ${row.content}, and it is up: nothing to recover`);
      else if (asked.has(row.content)) issues.push(`line ${entry.line}: content ${row.content} (dbid ${row.dbid}) is already named by line ${asked.get(row.content)?.line}`);
      else asked.set(row.content, entry);
    }
  } else if (req.contents) {
    for (const content of req.contents) {
      if (!pairs.has(content)) issues.push(`content ${content} is not in the catalog of cluster ${snapshot.clusterId}`);
      else asked.set(content, undefined);
    }
  }
  if (issues.length) throw new ValidationError(`cannot plan the recovery of cluster ${snapshot.clusterId}: ${issues.join('; ')}`, issues);

  const recoveries: RecoveryAction[] = [];
  const skipped: SkippedContent[] = [];
  const warnings: string[] = [];
  const contents = req.config || req.contents ? [...asked.keys()] : [...pairs.keys()];
  for (const content of contents.sort((a, b) => a - b)) {
    const { primary, mirror } = pairs.get(content) ?? { content };
    const named = asked.has(content);
    const somethingDown = primary?.status === 'd' || mirror?.status === 'd';
    const skip = (reason: string) => {
      if (named || somethingDown) skipped.push({ content, reason });
    };
    if (content === COORDINATOR_CONTENT) {
      skip('content -1 is the coordinator: its standby is rebuilt with gpinitstandby, not gprecoverseg');
      continue;
    }
    const busy = heldByAnother(snapshot, content, hold);
    if (busy) {
      skip(busy);
      continue;
    }
    const promotion = pending.get(content);
    if (promotion) {
      skip(`a promotion of dbid ${promotion.mirrorDbid} (replacing dbid ${promotion.failedPrimaryDbid}) is pending: the prober is failing it over; recover once it completes`);
      continue;
    }
    if (!primary) {
      skip(`content ${content} has no acting primary: no source to recover from`);
      continue;
    }
    if (!mirror) {
      skip(primary.status === 'd' ? `primary dbid ${primary.dbid} is down and has no mirror: nothing to recover from` : `content ${content} has no mirror`);
      continue;
    }
    if (mirror.status === 'u') {
      skip(primary.status === 'd'
        ? `acting primary dbid ${primary.dbid} is down and mirror dbid ${mirror.dbid} is not in sync (double fault): no source to recover from`
        : `nothing to recover: mirror dbid ${mirror.dbid} is up`);
      continue;
    }
    if (primary.status !== 'u') {
      skip(`acting primary dbid ${primary.dbid} is down as well as mirror dbid ${mirror.dbid} (double fault): no source to recover from`);
      continue;
    }
    if (fenceOwed.has(mirror.dbid)) {
      skip(`a fence is still owed to dbid ${mirror.dbid} (its host has not answered since it was failed over): it is fenced before it is rebuilt`);
      continue;
    }

    const entry = asked.get(content);
    let target: SegmentRow = mirror;
    let toAnotherPlace = false;
    if (entry?.newAddress !== undefined && entry.newPort !== undefined && entry.newDataDirectory !== undefined) {
      toAnotherPlace = true;
      // The failed instance's own address (or hostname) keeps it on its host; another known
      // address (or hostname) is that host: its hostname and placement come with it. (Several
      // hosts may share an address, as on one machine: the instance's own host wins.)
      const others = snapshot.segments.filter((r) => r.dbid !== mirror.dbid);
      const ownHost = entry.newAddress === mirror.address || entry.newAddress === mirror.hostname ? mirror : undefined;
      const host = ownHost ?? others.find((r) => r.address === entry.newAddress) ?? others.find((r) => r.hostname === entry.newAddress);
      if (!host && entry.newAddress !== mirror.address) {
        warnings.push(`line ${entry.line}: ${entry.newAddress} is not a host of cluster ${snapshot.clusterId}; it becomes the hostname of dbid ${mirror.dbid} and its EC2 placement is unknown, so only host, port and directory clashes were checked`);
      }
      const from = host ?? (entry.newAddress === mirror.address ? mirror : undefined);
      target = relocated(mirror, {
        hostname: from?.hostname ?? entry.newAddress,
        address: entry.newAddress,
        port: entry.newPort,
        datadir: entry.newDataDirectory,
        placement: from ? placementFields(from) : {},
      });
    } else if (req.spareHost) {
      toAnotherPlace = true;
      const spare = req.spareHost;
      target = relocated(mirror, { hostname: spare.hostname, address: spare.address, port: mirror.port, datadir: mirror.datadir, placement: placementFields(spare) });
    }
    recoveries.push({
      content,
      failedDbid: mirror.dbid,
      actingPrimaryDbid: primary.dbid,
      method: req.mode === 'full' || toAnotherPlace ? 'basebackup' : 'rewind',
      target: { ...target, role: 'm', status: 'u', mode: 'n' },
      moved: !sameLocation(mirror, target),
    });
  }

  const moved = recoveries.filter((r) => r.moved);
  if (moved.length) {
    const after = snapshot.segments.map((r) => moved.find((m) => m.failedDbid === r.dbid)?.target ?? r);
    const before = validatePlacement(snapshot.segments);
    const now = validatePlacement(after);
    const movedDbids = moved.map((m) => m.failedDbid);
    const label = `moving ${movedDbids.length === 1 ? 'dbid' : 'dbids'} ${movedDbids.join(', ')}`;
    for (const error of now.errors) if (!before.errors.includes(error)) issues.push(`${label}: ${error}`);
    for (const warning of now.warnings) if (!before.warnings.includes(warning)) warnings.push(`${label}: ${warning}`);
    issues.push(...clashes(after, moved.map((m) => m.target)));
  }
  if (issues.length) throw new ValidationError(`the recovery of cluster ${snapshot.clusterId} would break its placement: ${issues.join('; ')}`, issues);
  return { recoveries, skipped, warnings };
}

/**
 * Clashes `validatePlacement` does not see: one address:port for two rows of different
 * hostnames, and a data directory inside another's on the same host (hostname or
 * address): a full recovery empties the target directory first.
 */
function clashes(after: readonly SegmentRow[], targets: readonly SegmentRow[]): string[] {
  const issues: string[] = [];
  for (const t of targets) {
    for (const other of after) {
      if (other.dbid === t.dbid) continue;
      if (other.address === t.address && other.port === t.port && other.hostname !== t.hostname) {
        issues.push(`dbid ${t.dbid} would listen on ${t.address}:${t.port}, the address and port of dbid ${other.dbid}`);
      }
      const sameHost = other.hostname === t.hostname || other.address === t.address;
      const [a, b] = [normalizePath(t.datadir), normalizePath(other.datadir)];
      // Two hostnames at one address are one machine: the same directory there is one directory.
      if (sameHost && a === b && other.hostname !== t.hostname) {
        issues.push(`dbid ${t.dbid} would use data directory ${a} at ${t.address}, the data directory of dbid ${other.dbid} (${other.hostname}, same address)`);
      }
      if (sameHost && a !== b && (a.startsWith(`${b}/`) || b.startsWith(`${a}/`))) {
        issues.push(`dbid ${t.dbid} would use data directory ${a} on host ${t.hostname}, ${a.startsWith(`${b}/`) ? 'inside' : 'around'} the data directory ${b} of dbid ${other.dbid}`);
      }
    }
  }
  // A clash between two targets is found from both sides: say it once.
  return [...new Set(issues)];
}

/**
 * The catalog write that comes before the rebuild of moved instances (catalog first):
 * each moved row at its new place, still in its current state (a down mirror), with a
 * history row. No state changes, so no transition is involved. Null when nothing moves.
 *
 * @throws ValidationError when a row is no longer the down mirror the plan was made
 *   for (re-plan on a fresh snapshot).
 */
export function relocationChange(snapshot: ClusterSnapshot, plan: RecoveryPlan, now: Date): CatalogChange | null {
  const rows: SegmentRow[] = [];
  const issues: string[] = [];
  for (const action of plan.recoveries.filter((r) => r.moved)) {
    const current = snapshot.segments.find((r) => r.dbid === action.failedDbid);
    if (!current || current.role !== 'm' || current.status !== 'd') {
      issues.push(`dbid ${action.failedDbid} is no longer a down mirror (${current ? `${current.role}/${current.status}/${current.mode}` : 'not in the catalog'})`);
      continue;
    }
    rows.push({ ...action.target, role: current.role, status: current.status, mode: current.mode });
  }
  if (issues.length) throw new ValidationError(`the recovery plan is stale: ${issues.join('; ')}`, issues);
  if (!rows.length) return null;
  const time = now.toISOString();
  return {
    rows,
    history: rows.map((row) => {
      const old = snapshot.segments.find((r) => r.dbid === row.dbid) as SegmentRow;
      return { time, dbid: row.dbid, description: `FTS: dbid ${row.dbid} with contentid ${row.content} moved for recovery from ${locationOf(old)} to ${locationOf(row)}` };
    }),
  };
}

// ---------------------------------------------------------------------------------
// Rebalance (`gprecoverseg -r`)

/** Greenplum's default `--replay-lag`: 10 GB (`replay_lag * 1024 ** 3` bytes). */
export const GREENPLUM_DEFAULT_REPLAY_LAG_BYTES = 10 * 1024 ** 3;

/** Options of {@link rebalancePlan}. */
export interface RebalanceOptions {
  /**
   * Largest replay lag (the mirror's flush LSN minus its replay LSN, as its primary's
   * `pg_stat_replication` shows it) a pair may have to be switched. Unset: no check
   * (Greenplum's `--disable-replay-lag`); Greenplum's default is
   * {@link GREENPLUM_DEFAULT_REPLAY_LAG_BYTES}.
   */
  maxReplayLagBytes?: number;
  /** content -> replay lag in bytes of its mirror. */
  lags?: Record<number, number>;
}

/** A pair switched back to its preferred roles. */
export interface RebalanceSwitch {
  content: number;
  /** The acting primary now, a mirror by preference: it becomes the mirror. */
  primaryDbid: number;
  /** The in-sync mirror now, a primary by preference: it becomes the acting primary. */
  mirrorDbid: number;
  replayLagBytes?: number;
  /**
   * The rows of the flip the Rebalance workflow writes (catalog first, after the old
   * primary's clean stop): old primary `m/d/n`, old mirror `p/u/n`. Once the old primary
   * is rewound and streams it becomes `m/u/n`, and the prober marks the pair `s`.
   */
  rows: SegmentRow[];
}

/** The outcome of {@link rebalancePlan}. */
export interface RebalancePlan {
  switches: RebalanceSwitch[];
  /** Out of place and in sync, but refused by the replay-lag guard. */
  refused: SkippedContent[];
  /** Out of place but not switchable now (not up and in sync, a promotion or fence pending, held by another execution, the coordinator). */
  skipped: SkippedContent[];
}

const rebalanceOptionsSchema = z
  .object({
    maxReplayLagBytes: z.number().int().min(0).optional(),
    lags: z.record(z.string().regex(/^-?[0-9]+$/, 'keys are content ids'), z.number().min(0).finite()).optional(),
  })
  .strict();

/**
 * Plans `gprecoverseg -r`: every pair whose acting roles differ from its preferred roles
 * (`role !== preferredRole`) is switched back when both rows are up and in sync (`u`,
 * `s`), as Greenplum's rebalance does; a pair whose mirror's replay lag (from `lags`) is
 * above `maxReplayLagBytes`, or unknown while a limit is set, is refused with the reason
 * (Greenplum aborts the whole rebalance there; here the other pairs go on); a pair not
 * up and in sync, with a pending promotion or fence, held by a live operation of another
 * execution (see {@link PlanHold}: one held by `hold.execution` is planned as usual), or
 * of the coordinator is skipped with the reason. Pairs in their preferred roles are not
 * listed.
 *
 * @throws ValidationError for bad options.
 */
export function rebalancePlan(snapshot: ClusterSnapshot, options: RebalanceOptions = {}, hold: PlanHold = {}): RebalancePlan {
  parseHold(hold, 'rebalance plan options');
  const parsed = rebalanceOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    throw new ValidationError(`invalid rebalance options: ${issues.join('; ')}`, issues);
  }
  const { maxReplayLagBytes, lags = {} } = parsed.data;
  const pending = new Map(snapshot.pendingPromotions.map((p) => [p.content, p]));
  const fenceOwed = new Set(snapshot.pendingFences.map((f) => f.dbid));
  const plan: RebalancePlan = { switches: [], refused: [], skipped: [] };
  const state = (r: SegmentRow): RowState => `${r.role}/${r.status}/${r.mode}`;

  for (const { content, primary, mirror } of pairsByContent(snapshot.segments)) {
    const rows = [primary, mirror].filter((r): r is SegmentRow => r !== undefined);
    if (rows.every((r) => r.role === r.preferredRole)) continue;
    const skip = (reason: string) => plan.skipped.push({ content, reason });
    if (content === COORDINATOR_CONTENT) {
      skip('content -1 is the coordinator: its standby is activated with gpactivatestandby, never rebalanced');
      continue;
    }
    const busy = heldByAnother(snapshot, content, hold);
    if (busy) {
      skip(busy);
      continue;
    }
    if (!primary || !mirror) {
      skip(`content ${content} has no ${primary ? 'mirror' : 'acting primary'} to switch with`);
      continue;
    }
    if (primary.preferredRole !== 'm' || mirror.preferredRole !== 'p') {
      skip(`preferred roles of dbid ${primary.dbid} (${primary.preferredRole}) and dbid ${mirror.dbid} (${mirror.preferredRole}) are not one primary and one mirror: fix the catalog`);
      continue;
    }
    const promotion = pending.get(content);
    if (promotion) {
      skip(`a promotion of dbid ${promotion.mirrorDbid} is pending: the prober is failing it over`);
      continue;
    }
    const owed = rows.filter((r) => fenceOwed.has(r.dbid));
    if (owed.length) {
      skip(`a fence is still owed to dbid ${owed.map((r) => r.dbid).join(', ')}`);
      continue;
    }
    if (!(primary.status === 'u' && primary.mode === 's' && mirror.status === 'u' && mirror.mode === 's')) {
      skip(`primary dbid ${primary.dbid} is ${state(primary)} and mirror dbid ${mirror.dbid} is ${state(mirror)}: a pair is switched only when both are up and in sync (recover it, let it catch up)`);
      continue;
    }
    const lag = lags[content];
    if (maxReplayLagBytes !== undefined) {
      if (lag === undefined) {
        plan.refused.push({ content, reason: `the replay lag of mirror dbid ${mirror.dbid} is unknown and a limit of ${maxReplayLagBytes} bytes is set` });
        continue;
      }
      if (lag > maxReplayLagBytes) {
        plan.refused.push({ content, reason: `mirror dbid ${mirror.dbid} has ${lag} bytes of WAL still to replay, more than the ${maxReplayLagBytes} allowed (--replay-lag): let it catch up, then rebalance` });
        continue;
      }
    }
    plan.switches.push({
      content,
      primaryDbid: primary.dbid,
      mirrorDbid: mirror.dbid,
      ...(lag !== undefined ? { replayLagBytes: lag } : {}),
      rows: [
        { ...primary, role: 'm', status: 'd', mode: 'n' },
        { ...mirror, role: 'p', status: 'u', mode: 'n' },
      ],
    });
  }
  return plan;
}
