/**
 * Placement planner: lays out a cluster's `gp_segment_configuration` the way
 * `gpinitsystem` does (group or spread mirroring), and checks any layout, planned or
 * hand-written, against the failures that would take a primary and its mirror at once:
 * the same host, the same partition of a partition placement group (errors), the same
 * rack of a cluster placement group or the same availability zone (warnings).
 *
 * Pure: no I/O. A `HostInfo` from `lambdas/ports/compute.ts` can be passed wherever a
 * `PlacementHost` is expected.
 */
import { COORDINATOR_CONTENT, type Mode, type Role, type SegmentRow } from './model';
import { ValidationError } from './errors';

/** EC2 placement group strategy. */
export type PlacementStrategy = 'cluster' | 'spread' | 'partition';

/** A host segments can be placed on. Structurally compatible with `HostInfo`. */
export interface PlacementHost {
  /** The `hostname` column. */
  hostname: string;
  /** Address peers connect to; defaults to `privateIp`, then to `hostname`. */
  address?: string;
  /** Private IP as EC2 reports it (the `HostInfo` field); used when `address` is absent. */
  privateIp?: string;
  instanceId?: string;
  availabilityZone?: string;
  placementGroup?: string;
  placementStrategy?: PlacementStrategy;
  /** Partition number within a `partition` placement group. */
  partitionNumber?: number;
}

/**
 * `group`: all mirrors of host h's primaries on host h+1 (gpinitsystem's default).
 * `spread`: the k-th primary of host h mirrored on host h+1+k, so a failed host's load
 * lands on many hosts; needs more hosts than primaries per host.
 * `none`: primaries only.
 */
export type MirroringType = 'group' | 'spread' | 'none';

/** Coordinator (Greenplum's master, content -1) and its optional standby. */
export interface CoordinatorSpec {
  /** A hostname (its placement is taken from `hosts` if listed there) or a host. */
  host: string | PlacementHost;
  /** Default 5432. */
  port?: number;
  /** Host of the warm standby (role `m`), as `gpinitstandby -s` would add it. */
  standbyHost?: string | PlacementHost;
  /** Default: the coordinator's port. */
  standbyPort?: number;
}

/** What to plan: `gpinitsystem`'s inputs. */
export interface ClusterSpec {
  /** Segment hosts. */
  hosts: readonly PlacementHost[];
  /** Primary segments per host (gpinitsystem's count of DATA_DIRECTORY entries). */
  primariesPerHost: number;
  mirroring: MirroringType;
  /** Port of a host's first primary; default 6000. */
  basePort?: number;
  /** Port of a host's first mirror; default 7000. */
  mirrorBasePort?: number;
  /** Default `/data`: primaries under `/data/primary`, mirrors under `/data/mirror`. */
  dataDirectoryRoot?: string;
  coordinator?: CoordinatorSpec;
  /**
   * Number contents over the hosts in the given order. By default, when mirroring, the
   * planner reorders hosts so that neighbours (which hold each other's mirrors) sit in
   * different failure domains (partition, cluster group, else availability zone).
   */
  preserveHostOrder?: boolean;
}

/** Findings of `validatePlacement`; every message names the dbids involved. */
export interface PlacementReport {
  errors: string[];
  warnings: string[];
}

export const DEFAULT_BASE_PORT = 6000;
export const DEFAULT_MIRROR_BASE_PORT = 7000;
export const DEFAULT_COORDINATOR_PORT = 5432;
export const DEFAULT_DATA_DIRECTORY_ROOT = '/data';

/** dbid 1 is the coordinator's, whether or not it is planned, as in gpinitsystem. */
const FIRST_SEGMENT_DBID = 2;

/**
 * Plans `gp_segment_configuration` rows as gpinitsystem would: coordinator dbid 1
 * (content -1); primaries content 0..N-1 numbered host by host with dbids 2..N+1 and
 * ports `basePort + k`; mirrors dbids N+2..2N+1 (content order) with ports
 * `mirrorBasePort + i` for the i-th mirror on their host; the standby last, as
 * `gpinitstandby` adds it. Every row is up; a mirrored pair is in sync (`s`), an
 * unmirrored primary is not (`n`).
 *
 * @throws ValidationError listing every issue of the spec, or every error of the
 *   resulting layout (see `validatePlacement`).
 */
export function planCluster(spec: ClusterSpec): SegmentRow[] {
  const issues = checkSpec(spec);
  if (issues.length > 0) throw new ValidationError(`cluster spec is invalid: ${issues.join('; ')}`, issues);

  const mirrored = spec.mirroring !== 'none';
  const perHost = spec.primariesPerHost;
  const hosts = mirrored && !spec.preserveHostOrder
    ? arrangeHosts(spec.hosts, spec.mirroring === 'spread' ? perHost : 1)
    : [...spec.hosts];
  const hostCount = hosts.length;
  const contents = hostCount * perHost;
  const basePort = spec.basePort ?? DEFAULT_BASE_PORT;
  const mirrorBasePort = spec.mirrorBasePort ?? DEFAULT_MIRROR_BASE_PORT;
  // '/' as root gives '/primary/...', not '//primary/...'.
  const root = trimSlashes(spec.dataDirectoryRoot ?? DEFAULT_DATA_DIRECTORY_ROOT).replace(/^\/$/, '');
  const pairMode: Mode = mirrored ? 's' : 'n';
  const rows: SegmentRow[] = [];

  const coordinator = spec.coordinator;
  if (coordinator) {
    const host = resolveHost(coordinator.host, spec.hosts);
    rows.push(segmentRow(1, COORDINATOR_CONTENT, 'p', coordinator.standbyHost ? 's' : 'n', host, coordinator.port ?? DEFAULT_COORDINATOR_PORT, `${root}/coordinator/gpseg-1`));
  }

  // Mirror target of content h*P+k: the host index, per gpinitsystem's two schemes.
  const mirrorHost = (h: number, k: number): number => (spec.mirroring === 'spread' ? (h + 1 + k) % hostCount : (h + 1) % hostCount);
  const mirrorsOnHost: number[][] = hosts.map(() => []);
  for (let h = 0; h < hostCount; h++) {
    for (let k = 0; k < perHost; k++) {
      const content = h * perHost + k;
      rows.push(segmentRow(FIRST_SEGMENT_DBID + content, content, 'p', pairMode, hosts[h], basePort + k, `${root}/primary/gpseg${content}`));
      if (mirrored) mirrorsOnHost[mirrorHost(h, k)].push(content);
    }
  }
  if (mirrored) {
    for (let h = 0; h < hostCount; h++) {
      // Contents were pushed in ascending order, so index i is the i-th mirror on the host.
      mirrorsOnHost[h].forEach((content, i) => {
        rows.push(segmentRow(FIRST_SEGMENT_DBID + contents + content, content, 'm', 's', hosts[h], mirrorBasePort + i, `${root}/mirror/gpseg${content}`));
      });
    }
  }

  if (coordinator?.standbyHost) {
    const host = resolveHost(coordinator.standbyHost, spec.hosts);
    const dbid = FIRST_SEGMENT_DBID + (mirrored ? 2 : 1) * contents;
    rows.push(segmentRow(dbid, COORDINATOR_CONTENT, 'm', 's', host, coordinator.standbyPort ?? coordinator.port ?? DEFAULT_COORDINATOR_PORT, `${root}/coordinator/gpseg-1`));
  }
  rows.sort((a, b) => a.dbid - b.dbid);

  const known = [...spec.hosts];
  for (const h of [coordinator?.host, coordinator?.standbyHost]) {
    if (typeof h === 'object' && !known.some((k) => k.hostname === h.hostname)) known.push(h);
  }
  const { errors } = validatePlacement(rows, known);
  if (errors.length > 0) throw new ValidationError(`the planned placement is invalid: ${errors.join('; ')}`, errors);
  return rows;
}

/**
 * Orders hosts so that a host and the `window` hosts after it (in ring order) fall in
 * distinct failure domains (partition, cluster group, else availability zone) where
 * possible: group mirroring puts host h's mirrors on h+1 (window 1), spread mirroring on
 * h+1..h+P (window P). Of three candidate orders (as given; greedy round-robin over the
 * domains; domains largest first, dealt with stride `window + 1`), the one with the fewest
 * same-domain neighbours wins, the given order on a tie. Hosts without placement
 * information keep their order. Best effort: `validatePlacement` judges the result.
 */
export function arrangeHosts(hosts: readonly PlacementHost[], window: number): PlacementHost[] {
  const domains = new Map<string, PlacementHost[]>();
  for (const host of hosts) domains.set(failureDomain(host), [...(domains.get(failureDomain(host)) ?? []), host]);
  if (domains.size <= 1 || window < 1) return [...hosts];
  const candidates = [[...hosts], roundRobin(domains, Math.min(window, domains.size - 1), hosts.length), dealt(domains, window + 1, hosts.length)];
  const clashes = (order: readonly PlacementHost[]): number => {
    let n = 0;
    for (let h = 0; h < order.length; h++) {
      for (let o = 1; o <= Math.min(window, order.length - 1); o++) {
        if (failureDomain(order[h]) === failureDomain(order[(h + o) % order.length])) n++;
      }
    }
    return n;
  };
  return candidates.reduce((best, c) => (clashes(c) < clashes(best) ? c : best));
}

/**
 * Greedy: next, the domain with the most hosts left that was not used in the last `span`
 * picks; on a tie, the one first used earliest, so that the domains at the start of the
 * ring are used up before its end wraps around to them.
 */
function roundRobin(domains: ReadonlyMap<string, readonly PlacementHost[]>, span: number, total: number): PlacementHost[] {
  const left = new Map([...domains].map(([k, v]) => [k, [...v]]));
  const firstUse = new Map<string, number>();
  const recent: string[] = [];
  const out: PlacementHost[] = [];
  const better = (a: string, b: string): boolean => {
    const [la, lb] = [left.get(a)?.length ?? 0, left.get(b)?.length ?? 0];
    return la !== lb ? la > lb : (firstUse.get(a) ?? Infinity) < (firstUse.get(b) ?? Infinity);
  };
  while (out.length < total) {
    let best: string | undefined;
    for (const [key, queue] of left) {
      if (queue.length === 0 || recent.includes(key)) continue;
      if (best === undefined || better(key, best)) best = key;
    }
    // Only recently used domains have hosts left: take the one used longest ago.
    best ??= recent.find((key) => (left.get(key)?.length ?? 0) > 0);
    if (best === undefined) break; // unreachable: some domain has hosts left
    if (!firstUse.has(best)) firstUse.set(best, out.length);
    out.push(left.get(best)!.shift()!);
    if (recent.includes(best)) recent.splice(recent.indexOf(best), 1);
    recent.push(best);
    if (recent.length > span) recent.shift();
  }
  return out;
}

/**
 * Domains largest first, laid out in a row and dealt to positions 0, s, 2s, ..., then
 * 1, 1+s, ...: with s = 2 this is the classic arrangement that keeps equal neighbours
 * apart on a ring whenever no domain holds more than half the hosts.
 */
function dealt(domains: ReadonlyMap<string, readonly PlacementHost[]>, stride: number, total: number): PlacementHost[] {
  const row = [...domains.values()].sort((a, b) => b.length - a.length).flat();
  const positions: number[] = [];
  for (let r = 0; r < stride; r++) for (let p = r; p < total; p += stride) positions.push(p);
  const out: PlacementHost[] = new Array<PlacementHost>(total);
  positions.forEach((p, i) => { out[p] = row[i]; });
  return out;
}

/**
 * Checks any layout, planned or hand-written. Errors: a mirror on its primary's host or
 * in its primary's partition of a partition placement group; two instances on one
 * host:port or host:datadir; a content with more than two rows, two rows of one role
 * (or preferred role), or no primary; a duplicate dbid; a port outside 1-65535.
 * Warnings: a mirror in a cluster placement group (one rack) or availability zone shared
 * with its primary; a row on a host not among `hosts`.
 *
 * @param hosts the current hosts (e.g. from `Compute.discoverHosts`); when a row's host is
 *   listed, its placement (and strategy) is taken from there rather than from the row.
 *   Without hosts, a row with a partition number counts as in a partition group, and
 *   cluster groups cannot be recognized.
 */
export function validatePlacement(rows: readonly SegmentRow[], hosts?: readonly PlacementHost[]): PlacementReport {
  const errors: string[] = [];
  const warnings: string[] = [];
  const hostByName = new Map((hosts ?? []).map((h) => [h.hostname, h]));

  for (const [dbid, same] of groupBy(rows, (r) => r.dbid)) {
    if (same.length > 1) errors.push(`dbid ${dbid} is used by ${same.length} rows (${same.map((r) => `content ${r.content} on ${r.hostname}`).join(', ')})`);
  }
  for (const row of rows) {
    if (!Number.isInteger(row.port) || row.port < 1 || row.port > 65535) errors.push(`${describe(row)} has port ${row.port}, outside 1-65535`);
    if (hosts && !hostByName.has(row.hostname)) warnings.push(`${describe(row)} is on host ${row.hostname}, which is not among the given hosts`);
  }

  for (const [content, members] of [...groupBy(rows, (r) => r.content)].sort((a, b) => a[0] - b[0])) {
    if (members.length > 2) {
      errors.push(`content ${content} has ${members.length} rows (${dbids(members)}); a content has at most a ${roleName(content, 'p')} and a ${roleName(content, 'm')}`);
    }
    for (const role of ['p', 'm'] as const) {
      const acting = members.filter((r) => r.role === role);
      if (acting.length > 1) errors.push(`content ${content} has ${acting.length} ${plural(roleName(content, role))}: ${dbids(acting)}`);
      const preferred = members.filter((r) => r.preferredRole === role);
      if (preferred.length > 1) errors.push(`content ${content} has ${preferred.length} rows with preferred role ${role}: ${dbids(preferred)}`);
    }
    const primaries = members.filter((r) => r.role === 'p');
    const mirrors = members.filter((r) => r.role === 'm');
    if (primaries.length === 0) errors.push(`content ${content} has no ${roleName(content, 'p')}, only ${mirrors.length > 1 ? plural(roleName(content, 'm')) : roleName(content, 'm')} ${dbids(mirrors)}`);
    for (const primary of primaries) {
      for (const mirror of mirrors) checkPair(primary, mirror, hostByName, errors, warnings);
    }
  }

  for (const [key, same] of groupBy(rows, (r) => `${r.hostname}\0${r.port}`)) {
    if (same.length > 1) errors.push(`${dbids(same)} ${same.length > 2 ? 'all' : 'both'} use port ${key.split('\0')[1]} on host ${same[0].hostname}`);
  }
  for (const [key, same] of groupBy(rows, (r) => `${r.hostname}\0${normalizeDir(r.datadir)}`)) {
    if (same.length > 1) errors.push(`${dbids(same)} ${same.length > 2 ? 'all' : 'both'} use data directory ${key.split('\0')[1]} on host ${same[0].hostname}`);
  }
  return { errors, warnings };
}

/**
 * Throws unless `validatePlacement` finds no error; returns its warnings.
 * @throws ValidationError whose `issues` are all the errors.
 */
export function assertValidPlacement(rows: readonly SegmentRow[], hosts?: readonly PlacementHost[]): string[] {
  const { errors, warnings } = validatePlacement(rows, hosts);
  if (errors.length > 0) throw new ValidationError(`placement is invalid: ${errors.join('; ')}`, errors);
  return warnings;
}

// ---------------------------------------------------------------------------------

interface Placement {
  availabilityZone?: string;
  placementGroup?: string;
  placementStrategy?: PlacementStrategy;
  partitionNumber?: number;
}

/** The host's current placement when known, else what the row recorded. */
function placementOf(row: SegmentRow, hostByName: ReadonlyMap<string, PlacementHost>): Placement {
  const host = hostByName.get(row.hostname);
  const p: Placement = host ?? row;
  return {
    availabilityZone: p.availabilityZone,
    placementGroup: p.placementGroup,
    partitionNumber: p.partitionNumber,
    // EC2 reports a partition number only for partition groups.
    placementStrategy: p.placementStrategy ?? (p.partitionNumber !== undefined ? 'partition' : undefined),
  };
}

function checkPair(primary: SegmentRow, mirror: SegmentRow, hostByName: ReadonlyMap<string, PlacementHost>, errors: string[], warnings: string[]): void {
  const subject = `${describe(mirror)}`;
  const theirs = `its ${roleName(primary.content, 'p')} dbid ${primary.dbid}`;
  if (mirror.hostname === primary.hostname) {
    errors.push(`${subject} is on host ${mirror.hostname}, the host of ${theirs}`);
    return; // the same host implies the same partition, rack and zone: no more noise
  }
  const m = placementOf(mirror, hostByName);
  const p = placementOf(primary, hostByName);
  const sameGroup = m.placementGroup !== undefined && m.placementGroup === p.placementGroup;
  if (sameGroup && m.placementStrategy === 'partition' && p.placementStrategy === 'partition'
    && m.partitionNumber !== undefined && m.partitionNumber === p.partitionNumber) {
    errors.push(`${subject} is in partition ${m.partitionNumber} of placement group ${m.placementGroup}, the partition of ${theirs}; one partition failure takes both`);
  }
  if (sameGroup && m.placementStrategy === 'cluster' && p.placementStrategy === 'cluster') {
    warnings.push(`${subject} is in cluster placement group ${m.placementGroup} with ${theirs}; a cluster group packs instances together (often one rack), so one rack failure can take both`);
  }
  if (m.availabilityZone !== undefined && m.availabilityZone === p.availabilityZone) {
    warnings.push(`${subject} is in availability zone ${m.availabilityZone}, the zone of ${theirs}; a zone outage takes both`);
  }
}

function checkSpec(spec: ClusterSpec): string[] {
  const issues: string[] = [];
  const hosts = Array.isArray(spec.hosts) ? spec.hosts : [];
  const perHost = spec.primariesPerHost;
  if (hosts.length === 0) issues.push('at least one segment host is needed');
  if (!Number.isInteger(perHost) || perHost < 1) issues.push(`primariesPerHost must be a whole number of at least 1, got ${perHost}`);
  if (!['group', 'spread', 'none'].includes(spec.mirroring)) issues.push(`mirroring must be group, spread or none, got ${String(spec.mirroring)}`);

  hosts.forEach((h, i) => {
    if (typeof h.hostname !== 'string' || h.hostname.trim() === '') issues.push(`host ${i + 1} has no hostname`);
  });
  for (const [name, same] of groupBy(hosts, (h) => h.hostname)) {
    if (same.length > 1) issues.push(`host ${name} is listed ${same.length} times`);
  }

  if (spec.mirroring !== 'none' && hosts.length === 1) {
    issues.push(`${spec.mirroring} mirroring needs at least 2 hosts so that no mirror shares its primary's host; got 1 (${hosts[0].hostname})`);
  }
  if (spec.mirroring === 'spread' && hosts.length > 1 && Number.isInteger(perHost) && hosts.length <= perHost) {
    issues.push(`spread mirroring puts the mirrors of a host's ${perHost} primaries on ${perHost} other hosts, so it needs more than ${perHost} hosts; got ${hosts.length}`);
  }

  const count = Number.isInteger(perHost) && perHost > 0 ? perHost : 1;
  const portRange = (name: string, base: number | undefined, fallback: number): [number, number] | undefined => {
    const first = base ?? fallback;
    if (!Number.isInteger(first) || first < 1 || first + count - 1 > 65535) {
      issues.push(`${name} ${first} leaves no room for ${count} port(s) within 1-65535`);
      return undefined;
    }
    return [first, first + count - 1];
  };
  const primaries = portRange('basePort', spec.basePort, DEFAULT_BASE_PORT);
  if (spec.mirroring !== 'none') {
    const mirrors = portRange('mirrorBasePort', spec.mirrorBasePort, DEFAULT_MIRROR_BASE_PORT);
    if (primaries && mirrors && primaries[0] <= mirrors[1] && mirrors[0] <= primaries[1]) {
      issues.push(`primary ports ${primaries[0]}-${primaries[1]} overlap mirror ports ${mirrors[0]}-${mirrors[1]}`);
    }
  }
  const root = spec.dataDirectoryRoot ?? DEFAULT_DATA_DIRECTORY_ROOT;
  if (typeof root !== 'string' || !root.startsWith('/')) issues.push(`dataDirectoryRoot must be an absolute path, got ${String(root)}`);

  const c = spec.coordinator;
  if (c) {
    const name = (h: string | PlacementHost): string => (typeof h === 'string' ? h : h?.hostname);
    if (typeof name(c.host) !== 'string' || name(c.host).trim() === '') issues.push('coordinator host has no hostname');
    if (c.standbyHost !== undefined && (typeof name(c.standbyHost) !== 'string' || name(c.standbyHost).trim() === '')) issues.push('standby host has no hostname');
    for (const [label, port] of [['coordinator port', c.port], ['standby port', c.standbyPort]] as const) {
      if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) issues.push(`${label} must be within 1-65535, got ${port}`);
    }
  }
  return issues;
}

/** A host object as given, or the listed host of that name, or a bare name. */
function resolveHost(host: string | PlacementHost, hosts: readonly PlacementHost[]): PlacementHost {
  if (typeof host !== 'string') return host;
  return hosts.find((h) => h.hostname === host) ?? { hostname: host };
}

function segmentRow(dbid: number, content: number, role: Role, mode: Mode, host: PlacementHost, port: number, datadir: string): SegmentRow {
  const row: SegmentRow = {
    dbid, content, role, preferredRole: role, mode, status: 'u', port,
    hostname: host.hostname, address: host.address ?? host.privateIp ?? host.hostname, datadir,
  };
  // Only defined fields: stores such as DynamoDB reject undefined attribute values.
  if (host.instanceId !== undefined) row.instanceId = host.instanceId;
  if (host.availabilityZone !== undefined) row.availabilityZone = host.availabilityZone;
  if (host.placementGroup !== undefined) row.placementGroup = host.placementGroup;
  if (host.partitionNumber !== undefined) row.partitionNumber = host.partitionNumber;
  return row;
}

/** The failure domain neighbours should not share: partition, cluster group, else zone. */
function failureDomain(h: PlacementHost): string {
  const strategy = h.placementStrategy ?? (h.partitionNumber !== undefined ? 'partition' : undefined);
  if (strategy === 'partition' && h.placementGroup !== undefined && h.partitionNumber !== undefined) return `partition ${h.placementGroup}/${h.partitionNumber}`;
  if (strategy === 'cluster' && h.placementGroup !== undefined) return `cluster ${h.placementGroup}`;
  return h.availabilityZone !== undefined ? `zone ${h.availabilityZone}` : '';
}

function roleName(content: number, role: Role): string {
  if (content === COORDINATOR_CONTENT) return role === 'p' ? 'coordinator' : 'standby';
  return role === 'p' ? 'primary' : 'mirror';
}

const plural = (noun: string): string => (noun.endsWith('y') ? `${noun.slice(0, -1)}ies` : `${noun}s`);

const describe = (row: SegmentRow): string => `${roleName(row.content, row.role)} dbid ${row.dbid} (content ${row.content})`;

/** "dbid 2 and dbid 5", or "dbids 2, 5 and 9". */
function dbids(rows: readonly SegmentRow[]): string {
  const ids = rows.map((r) => r.dbid).sort((a, b) => a - b);
  if (ids.length === 1) return `dbid ${ids[0]}`;
  if (ids.length === 2) return `dbid ${ids[0]} and dbid ${ids[1]}`;
  return `dbids ${ids.slice(0, -1).join(', ')} and ${ids[ids.length - 1]}`;
}

function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

const trimSlashes = (path: string): string => (path.length > 1 ? path.replace(/\/+$/, '') : path);
const normalizeDir = (path: string): string => trimSlashes(path.replace(/\/{2,}/g, '/'));
