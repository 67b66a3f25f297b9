/**
 * `ftsctl init`: registers a cluster in the catalog, as gpinitsystem writes
 * `gp_segment_configuration`: version 1 and its history row. The spec (JSON) either
 * lays the cluster out from its hosts (`primariesPerHost`, `mirroring`, ports and data
 * directories, the coordinator and its standby: the placement planner's inputs), or lists
 * every instance of an existing cluster (`segments`). Hosts come from the spec or, with
 * `--discover-tag key=value`, from EC2 (DescribeInstances: address, instance id, zone,
 * placement group and its strategy, partition). Every check runs before anything is
 * written: the spec's schema, the rows' rules, and the placement (a mirror on its
 * primary's host or in its partition is refused; a shared rack or zone is a warning).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { ClusterNotFoundError, ValidationError } from '../lambdas/core/errors';
import { COORDINATOR_CONTENT, type ClusterSnapshot, type SegmentRow } from '../lambdas/core/model';
import { isLive } from '../lambdas/core/operations';
import { planCluster, validatePlacement, type PlacementHost } from '../lambdas/core/placement';
import { validateSegmentRows } from '../lambdas/core/rows';
import { parseSettings, type Settings } from '../lambdas/core/settings';
import type { Catalog } from '../lambdas/ports/catalog';
import type { Compute, HostInfo } from '../lambdas/ports/compute';
import { table } from './format';

const hostname = z.string().trim().min(1, 'must not be empty').max(255).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a host name (letters, digits, ., -, _)');
const port = z.number().int('must be a whole number').min(1, 'must be a port (1-65535)').max(65535, 'must be a port (1-65535)');
const absolutePath = z.string().regex(/^\/[^\0]*$/, 'must be an absolute path');

/** A segment host with its EC2 placement (all but the hostname optional). */
const hostSchema = z
  .object({
    hostname,
    /** Address the prober and peers connect to; default the hostname. */
    address: z.string().trim().min(1).optional(),
    instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/, 'must be an EC2 instance id (i-...)').optional(),
    availabilityZone: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+[a-z]$/, 'must be an availability zone such as us-east-1a').optional(),
    placementGroup: z.string().trim().min(1).max(255).optional(),
    placementStrategy: z.enum(['cluster', 'spread', 'partition']).optional(),
    /** EC2 partitions are numbered 1 to 7. */
    partitionNumber: z.number().int('must be a whole number').min(1, 'must be 1 to 7').max(7, 'must be 1 to 7').optional(),
  })
  .strict()
  .refine((h) => h.placementStrategy === undefined || h.placementGroup !== undefined, { message: 'placementStrategy needs placementGroup', path: ['placementStrategy'] })
  .refine((h) => h.partitionNumber === undefined || (h.placementGroup !== undefined && (h.placementStrategy ?? 'partition') === 'partition'), {
    message: 'partitionNumber needs a placementGroup of strategy partition',
    path: ['partitionNumber'],
  });

/** A host by name, or with its placement. */
const hostRef = z.union([hostname, hostSchema]);

/** One instance of an existing cluster (a `gp_segment_configuration` row; the rest is defaulted). */
const segmentSchema = z
  .object({
    dbid: z.number().int('must be a whole number').min(1, 'must be at least 1'),
    content: z.number().int('must be a whole number').min(-1, 'must be -1 (coordinator) or a content id'),
    role: z.enum(['p', 'm']),
    /** Default: `role`. */
    preferredRole: z.enum(['p', 'm']).optional(),
    /** Default: `s` when the content has a mirror, else `n`. */
    mode: z.enum(['s', 'n']).optional(),
    /** Default: `u`. */
    status: z.enum(['u', 'd']).optional(),
    port,
    hostname,
    /** Default: the host's address in `hosts`, else its private IP (discovered), else the hostname. */
    address: z.string().trim().min(1).optional(),
    datadir: absolutePath,
    instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/, 'must be an EC2 instance id (i-...)').optional(),
    availabilityZone: z.string().min(1).optional(),
    placementGroup: z.string().min(1).optional(),
    partitionNumber: z.number().int().min(1).max(7).optional(),
    systemIdentifier: z.string().regex(/^[0-9]{1,20}$/, 'must be a decimal system identifier').optional(),
  })
  .strict();

/** The planner's layout keys, which `segments` replaces. */
const LAYOUT_KEYS = ['primariesPerHost', 'mirroring', 'basePort', 'mirrorBasePort', 'dataDirectoryRoot', 'coordinator', 'preserveHostOrder'] as const;

/** The spec `ftsctl init --spec` reads. */
export const initSpecSchema = z
  .object({
    /** The cluster id (also from --cluster or the stack's ClusterId output; all given must agree). */
    clusterId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/, 'must be 1 to 48 letters, digits, - or _').optional(),
    /** Segment hosts (not with --discover-tag). */
    hosts: z.array(hostRef).min(1, 'must list at least one host').optional(),
    /** Primaries per segment host (gpinitsystem's DATA_DIRECTORY entries); default 1. */
    primariesPerHost: z.number().int('must be a whole number').min(1, 'must be at least 1').max(64, 'must be at most 64').optional(),
    /** `group` (default), `spread` or `none`. */
    mirroring: z.enum(['group', 'spread', 'none']).optional(),
    /** Port of a host's first primary; default 6000. */
    basePort: port.optional(),
    /** Port of a host's first mirror; default 7000. */
    mirrorBasePort: port.optional(),
    /** Default /data: /data/primary/gpsegN, /data/mirror/gpsegN, /data/coordinator/gpseg-1. */
    dataDirectoryRoot: absolutePath.optional(),
    coordinator: z
      .object({ host: hostRef, port: port.optional(), standbyHost: hostRef.optional(), standbyPort: port.optional() })
      .strict()
      .optional(),
    /** Keep the hosts' order instead of arranging neighbours into different failure domains. */
    preserveHostOrder: z.boolean().optional(),
    /** Every instance of an existing cluster, instead of the layout keys. */
    segments: z.array(segmentSchema).min(1, 'must list at least one instance').optional(),
    /** Prober settings; defaults for the rest. */
    settings: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.segments) {
      const given = LAYOUT_KEYS.filter((k) => s[k] !== undefined);
      if (given.length) ctx.addIssue({ code: 'custom', path: ['segments'], message: `segments lists every instance: leave out ${given.join(', ')}` });
    }
    if (s.coordinator?.standbyPort !== undefined && s.coordinator.standbyHost === undefined) {
      ctx.addIssue({ code: 'custom', path: ['coordinator', 'standbyPort'], message: 'standbyPort needs standbyHost' });
    }
  });

/** A validated spec. */
export type InitSpec = z.output<typeof initSpecSchema>;

/** Parses a spec; ValidationError naming every problem by its path in the file. */
export function parseInitSpec(input: unknown): InitSpec {
  const result = initSpecSchema.safeParse(input);
  if (!result.success) {
    const issues = result.error.issues.map((i) => {
      if (i.code === 'unrecognized_keys') {
        const where = i.path.length ? `${i.path.join('.')}: ` : '';
        return `${where}unknown key(s) ${i.keys.join(', ')}`;
      }
      return `${i.path.join('.') || 'spec'}: ${i.message}`;
    });
    throw new ValidationError(`invalid cluster spec: ${issues.join('; ')}`, issues);
  }
  return result.data;
}

/** Reads and parses `--spec <file>`. */
export function readInitSpec(file: string, readFile: (path: string) => string = (f) => readFileSync(f, 'utf8')): InitSpec {
  let text: string;
  try {
    text = readFile(file);
  } catch (e) {
    throw new ValidationError(`cannot read --spec ${file}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ValidationError(`--spec ${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseInitSpec(doc);
}

/** `--discover-tag key=value`. */
export function parseDiscoverTag(value: string): { key: string; value: string } {
  const m = /^([^=]{1,128})=(.{1,256})$/s.exec(value);
  if (!m || !m[1].trim() || !m[2].trim()) throw new InvalidArgumentError(`--discover-tag takes key=value (an EC2 tag, e.g. fts:cluster-id=prod), got "${value}"`);
  return { key: m[1], value: m[2] };
}

/** What `init` will write, before it writes it. */
export interface InitPlan {
  clusterId: string;
  rows: SegmentRow[];
  settings: Settings;
  warnings: string[];
  /** The hosts the placement was checked against (discovered or from the spec). */
  hosts: PlacementHost[];
}

/** How {@link planInit} works. */
export interface PlanInitOptions {
  clusterId: string;
  /** `--discover-tag`: hosts from EC2, through `compute`. */
  discover?: { key: string; value: string };
  compute?: Compute;
  /** In AWS, rows without an instance id are worth a warning (SSM reaches hosts by instance). */
  aws?: boolean;
}

const asHost = (h: string | PlacementHost): PlacementHost => (typeof h === 'string' ? { hostname: h } : h);
const hostName = (h: string | PlacementHost): string => (typeof h === 'string' ? h : h.hostname);

/** The placement of a discovered host (its state and status checks stay out of the rows). */
function placementHost(h: HostInfo): PlacementHost {
  return {
    hostname: h.hostname,
    instanceId: h.instanceId,
    ...(h.privateIp ? { privateIp: h.privateIp } : {}),
    ...(h.availabilityZone ? { availabilityZone: h.availabilityZone } : {}),
    ...(h.placementGroup ? { placementGroup: h.placementGroup } : {}),
    ...(h.placementStrategy ? { placementStrategy: h.placementStrategy } : {}),
    ...(h.partitionNumber !== undefined ? { partitionNumber: h.partitionNumber } : {}),
  };
}

/** The hosts: discovered from EC2, or the spec's. */
async function hostsOf(spec: InitSpec, o: PlanInitOptions, warnings: string[]): Promise<PlacementHost[]> {
  if (!o.discover) return (spec.hosts ?? []).map(asHost);
  if (spec.hosts) throw new ValidationError('--discover-tag builds the host list from EC2: leave hosts out of the spec');
  if (!o.compute) throw new Error('--discover-tag needs an EC2 client');
  const found = await o.compute.discoverHosts(o.discover.key, o.discover.value);
  const tag = `${o.discover.key}=${o.discover.value}`;
  if (!found.length) throw new ValidationError(`no EC2 instance (pending, running, stopping or stopped) carries the tag ${tag} in this region`);
  const twice = [...new Set(found.map((h) => h.hostname).filter((n, i, all) => all.indexOf(n) !== i))];
  if (twice.length) throw new ValidationError(`several instances tagged ${tag} have the hostname ${twice.join(', ')}: give each its own hostname tag`);
  for (const h of found) if (h.state !== 'running') warnings.push(`host ${h.hostname} (${h.instanceId}) is ${h.state}`);
  return found.map(placementHost);
}

/**
 * Everything `init` will write, checked: the rows (planned from the layout, or the spec's
 * instances with their defaults), their placement against the hosts, the settings.
 * ValidationError naming every problem; reads EC2 only with `discover`, writes nothing.
 */
export async function planInit(spec: InitSpec, o: PlanInitOptions): Promise<InitPlan> {
  const warnings: string[] = [];
  const hosts = await hostsOf(spec, o, warnings);
  const byName = new Map(hosts.map((h) => [h.hostname, h]));
  let rows: SegmentRow[];
  if (spec.segments) {
    if (o.discover) {
      const unknown = [...new Set(spec.segments.map((r) => r.hostname).filter((n) => !byName.has(n)))];
      if (unknown.length) throw new ValidationError(`no instance tagged ${o.discover.key}=${o.discover.value} has the hostname ${unknown.join(', ')}; found ${[...byName.keys()].join(', ')}`);
    }
    rows = rowsOf(spec.segments, byName);
  } else {
    if (!hosts.length) throw new ValidationError('the spec needs hosts (or --discover-tag), or segments listing every instance');
    const coordinator = spec.coordinator;
    let segmentHosts = hosts;
    let coordinatorSpec = coordinator && { ...coordinator, host: coordinator.host as string | PlacementHost, standbyHost: coordinator.standbyHost as string | PlacementHost | undefined };
    if (o.discover && coordinatorSpec) {
      // Discovered: the coordinator's and standby's hosts are tagged like the others, and hold no segment.
      const take = (h: string | PlacementHost, what: string): PlacementHost => {
        const found = byName.get(hostName(h));
        if (!found) throw new ValidationError(`the ${what} host ${hostName(h)} is not among the instances tagged ${o.discover!.key}=${o.discover!.value}: ${[...byName.keys()].join(', ')}`);
        return found;
      };
      coordinatorSpec = { ...coordinatorSpec, host: take(coordinatorSpec.host, 'coordinator'), ...(coordinatorSpec.standbyHost !== undefined ? { standbyHost: take(coordinatorSpec.standbyHost, 'standby') } : {}) };
      const reserved = new Set([hostName(coordinatorSpec.host), ...(coordinatorSpec.standbyHost !== undefined ? [hostName(coordinatorSpec.standbyHost)] : [])]);
      segmentHosts = hosts.filter((h) => !reserved.has(h.hostname));
    }
    rows = planCluster({
      hosts: segmentHosts,
      primariesPerHost: spec.primariesPerHost ?? 1,
      mirroring: spec.mirroring ?? 'group',
      ...(spec.basePort !== undefined ? { basePort: spec.basePort } : {}),
      ...(spec.mirrorBasePort !== undefined ? { mirrorBasePort: spec.mirrorBasePort } : {}),
      ...(spec.dataDirectoryRoot !== undefined ? { dataDirectoryRoot: spec.dataDirectoryRoot } : {}),
      ...(spec.preserveHostOrder !== undefined ? { preserveHostOrder: spec.preserveHostOrder } : {}),
      ...(coordinatorSpec ? { coordinator: coordinatorSpec } : {}),
    });
    for (const h of [coordinatorSpec?.host, coordinatorSpec?.standbyHost]) if (h !== undefined && !byName.has(hostName(h))) byName.set(hostName(h), asHost(h));
  }
  const known = [...byName.values()];
  const { errors, warnings: placement } = validatePlacement(rows, known.length ? known : undefined);
  if (errors.length) throw new ValidationError(`the placement is invalid: ${errors.join('; ')}`, errors);
  warnings.push(...placement);
  const contents = [...new Set(rows.filter((r) => r.content !== COORDINATOR_CONTENT).map((r) => r.content))].sort((a, b) => a - b);
  const gaps = contents.length ? Array.from({ length: contents[contents.length - 1] + 1 }, (_, i) => i).filter((c) => !contents.includes(c)) : [];
  if (gaps.length) throw new ValidationError(`contents must be numbered 0 to ${contents.length - 1} without gaps (as gpinitsystem does): missing content ${gaps.join(', ')}`);
  const noInstance = rows.filter((r) => r.instanceId === undefined);
  if (o.aws && noInstance.length) {
    warnings.push(`${noInstance.length} instance(s) have no EC2 instance id (dbid ${noInstance.map((r) => r.dbid).join(', ')}): host operations through SSM (fence, recoverseg, initstandby) cannot reach their hosts; give the hosts an instanceId or use --discover-tag`);
  }
  return { clusterId: o.clusterId, rows, settings: parseSettings(spec.settings ?? {}), warnings, hosts: known };
}

/** The spec's instances as rows: defaults for what they leave out, placement from their host. */
function rowsOf(segments: NonNullable<InitSpec['segments']>, hosts: ReadonlyMap<string, PlacementHost>): SegmentRow[] {
  const perContent = new Map<number, number>();
  for (const s of segments) perContent.set(s.content, (perContent.get(s.content) ?? 0) + 1);
  const rows = segments.map((s) => {
    const h = hosts.get(s.hostname);
    const row: Record<string, unknown> = {
      dbid: s.dbid,
      content: s.content,
      role: s.role,
      preferredRole: s.preferredRole ?? s.role,
      mode: s.mode ?? ((perContent.get(s.content) ?? 0) > 1 ? 's' : 'n'),
      status: s.status ?? 'u',
      port: s.port,
      hostname: s.hostname,
      address: s.address ?? h?.address ?? h?.privateIp ?? s.hostname,
      datadir: s.datadir,
    };
    for (const key of ['instanceId', 'availabilityZone', 'placementGroup', 'partitionNumber'] as const) {
      const value = s[key] ?? h?.[key];
      if (value !== undefined) row[key] = value;
    }
    if (s.systemIdentifier !== undefined) row.systemIdentifier = s.systemIdentifier;
    return row;
  });
  return validateSegmentRows(rows).sort((a, b) => a.dbid - b.dbid);
}

/** What `init` did. */
export interface InitResult extends InitPlan {
  /** False for --dry-run. */
  written: boolean;
  /** The catalog version of the cluster --replace replaced (0: it was unreadable). */
  replacedVersion?: number;
}

/**
 * Writes the plan: version 1, its rows and one history row. A cluster already registered
 * is refused unless `replace`; then it is removed first (rows and history), unless a
 * workflow holds one of its contents (a pending promotion or a live operation). A catalog
 * too corrupt to read can be replaced too. ValidationError with nothing written otherwise.
 */
export async function registerCluster(catalog: Catalog, plan: InitPlan, o: { replace?: boolean; now?: () => Date } = {}): Promise<InitResult> {
  const now = o.now ?? (() => new Date());
  let existing: ClusterSnapshot | 'unreadable' | undefined;
  try {
    existing = await catalog.load(plan.clusterId);
  } catch (e) {
    if (e instanceof ClusterNotFoundError) existing = undefined;
    else if (e instanceof ValidationError) existing = 'unreadable';
    else throw e;
  }
  if (existing && !o.replace) {
    const what = existing === 'unreadable' ? 'with a catalog that cannot be read' : `at catalog version ${existing.version}, ${existing.segments.length} instances, ${existing.status}`;
    throw new ValidationError(`cluster ${plan.clusterId} is already registered (${what}); nothing was written. --replace replaces it, its history included`);
  }
  if (existing && existing !== 'unreadable') {
    const busy = [
      ...existing.pendingPromotions.map((p) => `a promotion of content ${p.content} (since ${p.startedAt})`),
      ...(existing.pendingOperations ?? []).filter((op) => isLive(op, now())).map((op) => `${op.kind} execution ${op.execution} on content ${op.content}`),
    ];
    if (busy.length) throw new ValidationError(`cluster ${plan.clusterId} has work in flight: ${busy.join('; ')}; nothing was written. Let it end (ftsctl state shows it), then --replace`);
  }
  if (existing) await catalog.destroy(plan.clusterId);
  await catalog.initialize(plan.clusterId, plan.rows, plan.settings, now().toISOString());
  return { ...plan, written: true, ...(existing ? { replacedVersion: existing === 'unreadable' ? 0 : existing.version } : {}) };
}

/** The text `ftsctl init` prints. */
export function formatInit(r: InitResult): string {
  const contents = new Set(r.rows.filter((x) => x.content !== COORDINATOR_CONTENT).map((x) => x.content)).size;
  const placement = (x: SegmentRow): string =>
    [x.availabilityZone, x.placementGroup && `${x.placementGroup}${x.partitionNumber !== undefined ? `/${x.partitionNumber}` : ''}`, x.instanceId].filter(Boolean).join(' ');
  const role = (x: SegmentRow): string => (x.content === COORDINATOR_CONTENT ? (x.role === 'p' ? 'coordinator' : 'standby') : x.role === 'p' ? 'primary' : 'mirror');
  const lines = [
    `Cluster ${r.clusterId}: ${r.rows.length} instances, ${contents} contents`,
    table(['dbid', 'content', 'role', 'host', 'address:port', 'datadir', 'placement'], r.rows.map((x) => [x.dbid, x.content, role(x), x.hostname, `${x.address}:${x.port}`, x.datadir, placement(x)])),
    ...r.warnings.map((w) => `warning: ${w}`),
  ];
  if (!r.written) lines.push('dry run: nothing written');
  else lines.push(`registered at catalog version 1${r.replacedVersion !== undefined ? ` (replaced the cluster ${r.replacedVersion ? `at version ${r.replacedVersion}` : 'whose catalog could not be read'})` : ''}; the prober watches it from its next invocation`);
  return lines.join('\n');
}
