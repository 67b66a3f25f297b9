/**
 * The steps of InitStandby (gpinitstandby and gpinitstandby -r;
 * lambdas/workflows/init-standby.ts). Plan holds content -1 (the lock between the prober
 * and workflows) and records what it does in the hold; to add, it writes the standby's
 * row `m/d/n` in the same catalog write. Every later step re-reads the catalog, checks
 * the plan in the state document against it and that this execution still holds content
 * -1, so each can be run again after a crash: the copy is a host job that a retried start
 * finds busy, the catalog writes are no-ops once made, sync rep and slots are idempotent.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { clusterStatusOf, historyText } from '../core/decide';
import { ClusterNotFoundError, ContentBusyError, HostCommandError, RebuildFailedError, ValidationError } from '../core/errors';
import { COORDINATOR_CONTENT, mirrorSlotName, type CatalogChange, type ClusterSnapshot, type PendingOperation, type SegmentRow } from '../core/model';
import { describeOperation, isLive, liveOperation } from '../core/operations';
import { normalizePath } from '../core/recovery';
import type { HostJob } from '../ports/segments';
import { INIT_STANDBY_SPEC, initStandbyInputSchema, type InitStandbyInput } from '../workflows/init-standby';
import { parseWorkflowInput } from '../workflows/spec';
import { checkHeld, holdOf, MAX_BUSY_STARTS, MAX_REBUILD_STARTS, renewHolds, STREAM_WAIT_SECONDS, watchForStall } from './rebuild-steps';
import { applyFresh, errorCause, pickInput, stepRunner, type StepTable, type WorkflowDeps } from './steps';

/** Pause between two looks at the new standby's WAL receiver. */
const STREAM_POLL_MS = 500;
/** What history rows and messages call the workflow. */
const LABEL = 'gpinitstandby';

/** What the hold on content -1 records, and what every later step acts on. */
export const standbyPlanSchema = z
  .object({
    action: z.enum(['add', 'remove']),
    /** The standby's dbid: the new row's (add) or the catalog's standby (remove). */
    dbid: z.number().int().min(1),
    /** The coordinator it streams from. */
    coordinatorDbid: z.number().int().min(1),
    hostname: z.string().min(1),
    address: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    datadir: z.string().min(1),
  })
  .strict();

/** What the hold on content -1 records. */
export type StandbyPlan = z.output<typeof standbyPlanSchema>;

/** What `plan` returns (at `$.plan`). */
const planResultSchema = standbyPlanSchema.extend({
  remove: z.boolean(),
  pollSeconds: z.number().int().min(1),
  stallSeconds: z.number().int().min(1),
  warnings: z.array(z.string()),
  resumed: z.boolean(),
});
type PlanResult = z.output<typeof planResultSchema>;

/** Results of earlier steps the loop reads back. */
const loopSchema = z.object({
  startCopy: z.object({ job: z.object({ id: z.string(), dbid: z.number(), startedAt: z.string() }).nullable(), starts: z.number().int(), busyStarts: z.number().int() }).partial().optional(),
  pollCopy: z.object({ busy: z.boolean(), watch: z.object({ bytes: z.number(), at: z.string() }) }).partial().optional(),
});

const INPUT_KEYS = Object.keys(initStandbyInputSchema.shape);

/** The workflow input part of a state document (later states carry step results too); the first step sees the input alone. */
function inputOf(doc: unknown, first: boolean): InitStandbyInput {
  return parseWorkflowInput(INIT_STANDBY_SPEC, first ? doc : pickInput(doc, INPUT_KEYS));
}

/** The plan `plan` returned, from the state document; ValidationError when it is not there or not one. */
function planOf(doc: unknown): PlanResult {
  const parsed = planResultSchema.safeParse((doc as { plan?: unknown } | null)?.plan);
  if (!parsed.success) throw new ValidationError(`the state document has no InitStandby plan at $.plan (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
  return parsed.data;
}

/** The catalog of a cluster; an unknown cluster is bad input. */
async function load(deps: WorkflowDeps, clusterId: string): Promise<ClusterSnapshot> {
  try {
    return await deps.catalog.load(clusterId);
  } catch (e) {
    if (e instanceof ClusterNotFoundError) throw new ValidationError(`cluster ${clusterId} is not in the catalog`);
    throw e;
  }
}

const coordinatorPair = (snapshot: ClusterSnapshot) => ({
  coordinator: snapshot.segments.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p'),
  standby: snapshot.segments.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'm'),
});

const where = (r: Pick<SegmentRow, 'hostname' | 'port' | 'datadir'>): string => `${r.hostname}:${r.port} datadir ${r.datadir}`;

/** The coordinator the plan names, as the catalog has it now; ValidationError when the catalog names another. */
function coordinatorOf(snapshot: ClusterSnapshot, plan: StandbyPlan): SegmentRow {
  const row = snapshot.segments.find((r) => r.dbid === plan.coordinatorDbid);
  if (!row || row.content !== COORDINATOR_CONTENT || row.role !== 'p') {
    throw new ValidationError(`dbid ${plan.coordinatorDbid} is not the coordinator of cluster ${snapshot.clusterId}${row ? ` (it is ${row.role}/${row.status}/${row.mode} of content ${row.content})` : ' (no such row)'}; the plan is stale`);
  }
  return row;
}

/** The standby row the plan names, when the catalog has it; ValidationError when that dbid is something else. */
function standbyOf(snapshot: ClusterSnapshot, plan: StandbyPlan): SegmentRow | undefined {
  const row = snapshot.segments.find((r) => r.dbid === plan.dbid);
  if (!row) return undefined;
  if (row.content !== COORDINATOR_CONTENT || row.role !== 'm' || row.hostname !== plan.hostname || row.port !== plan.port || row.datadir !== plan.datadir) {
    throw new ValidationError(`dbid ${plan.dbid} of cluster ${snapshot.clusterId} is not the standby this execution planned (${where(plan)}): the catalog has ${row.role}/${row.status}/${row.mode} of content ${row.content} on ${where(row)}`);
  }
  return row;
}

/** This execution's hold on content -1 (live or lapsed), if it is still stored. */
const ownHold = (snapshot: ClusterSnapshot, execution: string): PendingOperation | undefined =>
  snapshot.pendingOperations.find((op) => op.content === COORDINATOR_CONTENT && op.execution === execution);

/** The plan a hold records; ValidationError when it records none this version can read. */
function heldPlan(hold: PendingOperation, execution: string): StandbyPlan {
  let json: unknown;
  try {
    json = JSON.parse(hold.plan ?? 'null');
  } catch {
    json = undefined;
  }
  const parsed = standbyPlanSchema.safeParse(json);
  if (!parsed.success) throw new ValidationError(`the hold of content -1 by execution ${execution} records no standby plan this version can read: ${hold.plan}`);
  return parsed.data;
}

const LOOPBACK = /^(127\.|::1$|localhost$)/;

/**
 * The new standby's row, `m/d/n` with the next free dbid, after the checks gpinitstandby
 * makes and the failure-domain rule: never on the coordinator's host (hostname, or EC2
 * instance when both are known), in its partition of a partition placement group, or
 * (unless `allowSameZone`) in its availability zone; no port or data directory another
 * instance uses on that host. Equal addresses with different hostnames are allowed (a
 * local cluster runs every host on 127.0.0.1) with a warning.
 */
export function newStandbyRow(snapshot: ClusterSnapshot, coordinator: SegmentRow, input: InitStandbyInput): { row: SegmentRow; warnings: string[] } {
  const issues: string[] = [];
  const warnings: string[] = [];
  const hostname = input.hostname as string;
  const address = input.address ?? hostname;
  const port = input.port ?? coordinator.port;
  const datadir = normalizePath(input.datadir ?? coordinator.datadir);
  // A host the catalog knows (a segment host given the standby) brings its EC2 placement.
  const known = snapshot.segments.find((r) => r.hostname === hostname && r.content !== COORDINATOR_CONTENT);
  if (known?.instanceId !== undefined && input.instanceId !== undefined && known.instanceId !== input.instanceId) {
    issues.push(`host ${hostname} is EC2 instance ${known.instanceId} in the catalog (dbid ${known.dbid}), not ${input.instanceId}`);
  }
  const placement = {
    instanceId: input.instanceId ?? known?.instanceId,
    availabilityZone: input.availabilityZone ?? known?.availabilityZone,
    placementGroup: input.placementGroup ?? (input.partitionNumber === undefined ? known?.placementGroup : undefined),
    partitionNumber: input.partitionNumber ?? (input.placementGroup === undefined ? known?.partitionNumber : undefined),
  };
  const domain = (what: string) => `the standby must not be in the coordinator's failure domain: it would fail with the coordinator's ${what}`;
  if (hostname === coordinator.hostname) issues.push(`standby host ${hostname} is the coordinator's host (dbid ${coordinator.dbid}); ${domain('host')}`);
  else if (placement.instanceId !== undefined && placement.instanceId === coordinator.instanceId) {
    issues.push(`standby host ${hostname} is EC2 instance ${placement.instanceId}, the coordinator's (dbid ${coordinator.dbid} on ${coordinator.hostname}); ${domain('instance')}`);
  }
  if (placement.placementGroup !== undefined && placement.placementGroup === coordinator.placementGroup && placement.partitionNumber !== undefined && placement.partitionNumber === coordinator.partitionNumber) {
    issues.push(`standby host ${hostname} is in partition ${placement.partitionNumber} of placement group ${placement.placementGroup}, the coordinator's; ${domain('partition')}`);
  }
  if (placement.availabilityZone !== undefined && placement.availabilityZone === coordinator.availabilityZone) {
    const zone = `standby host ${hostname} is in availability zone ${placement.availabilityZone}, the coordinator's: a zone outage takes both`;
    if (input.allowSameZone) warnings.push(`${zone} (allowed by allowSameZone)`);
    else issues.push(`${zone}; choose a host in another zone, or accept it with allowSameZone (ftsctl initstandby --allow-same-zone) when the cluster runs in one zone`);
  }
  if (coordinator.instanceId !== undefined && placement.instanceId === undefined) {
    issues.push(`the coordinator's row names its EC2 instance (${coordinator.instanceId}) but the standby's host ${hostname} is not in the catalog: give its instanceId, so FTS can run commands on it`);
  }
  if (address === coordinator.address && hostname !== coordinator.hostname) {
    warnings.push(
      `the standby's address ${address} is the coordinator's: both run on one machine${LOOPBACK.test(address) ? ' (a local cluster)' : ''}, which is one failure domain whatever the host names say`,
    );
  }
  for (const other of snapshot.segments) {
    const sameHost = other.hostname === hostname || other.address === address;
    if (!sameHost) continue;
    if (other.port === port) issues.push(`port ${port} at ${address} (host ${hostname}) is taken by dbid ${other.dbid} (${other.hostname} ${other.address}:${other.port}); give another port (-P)`);
    const [a, b] = [datadir, normalizePath(other.datadir)];
    if (a === b) issues.push(`data directory ${a} on host ${hostname} is dbid ${other.dbid}'s (${other.hostname}${other.hostname !== hostname ? `, same address ${address}` : ''}); give another (--datadir)`);
    else if (a.startsWith(`${b}/`) || b.startsWith(`${a}/`)) issues.push(`data directory ${a} on host ${hostname} is ${a.startsWith(`${b}/`) ? 'inside' : 'around'} dbid ${other.dbid}'s data directory ${b}; give another (--datadir)`);
  }
  if (issues.length) throw new ValidationError(`cannot add a standby to cluster ${snapshot.clusterId}: ${issues.join('; ')}`, issues);
  const dbid = Math.max(0, ...snapshot.segments.map((r) => r.dbid)) + 1;
  const row: SegmentRow = { dbid, content: COORDINATOR_CONTENT, role: 'm', preferredRole: 'm', mode: 'n', status: 'd', port, hostname, address, datadir };
  // Only defined fields: stores such as DynamoDB reject undefined attribute values.
  for (const key of ['instanceId', 'availabilityZone', 'placementGroup', 'partitionNumber'] as const) if (placement[key] !== undefined) (row as unknown as Record<string, unknown>)[key] = placement[key];
  if (coordinator.systemIdentifier !== undefined) row.systemIdentifier = coordinator.systemIdentifier;
  return { row, warnings };
}

/**
 * Checks the input against the schema and the catalog, and holds content -1 with what
 * it will do. To add: refuses without a coordinator, with a standby already there, with
 * the coordinator down, or a place that breaks the rules (see {@link newStandbyRow}), and
 * writes the standby's row `m/d/n` in the same write (catalog first). To remove: refuses
 * when there is no standby. A re-run of the same execution finds its hold and returns the
 * same plan; nothing is changed by a refusal.
 */
async function plan(deps: WorkflowDeps, doc: unknown, execution: string): Promise<PlanResult> {
  const input = inputOf(doc, true);
  const knobs = { remove: input.remove, pollSeconds: input.pollSeconds, stallSeconds: input.stallSeconds };
  for (let attempt = 1; ; attempt++) {
    const snapshot = await load(deps, input.clusterId);
    if (input.catalogVersion !== undefined && input.catalogVersion > snapshot.version) {
      throw new ValidationError(`catalogVersion ${input.catalogVersion} is newer than the catalog of cluster ${snapshot.clusterId} (version ${snapshot.version})`);
    }
    const now = deps.now();
    const mine = ownHold(snapshot, execution);
    if (mine) {
      // A retried plan whose write committed: the plan it recorded, the hold taken again if it lapsed.
      const again = heldPlan(mine, execution);
      if (!isLive(mine, now)) await renewHolds(deps, input.clusterId, execution, COORDINATOR_CONTENT, 'standby-init');
      return { ...again, ...knobs, remove: again.action === 'remove', warnings: ['planned again after a retried step: the plan this execution recorded in its hold'], resumed: true };
    }
    const busy = liveOperation(snapshot, COORDINATOR_CONTENT, now);
    if (busy) throw new ContentBusyError(`content -1 (the coordinator) is held by ${describeOperation(busy)}: another workflow is working on the coordinator; try again once it has ended`);
    const { coordinator, standby } = coordinatorPair(snapshot);
    if (!coordinator) throw new ValidationError(`cluster ${snapshot.clusterId} has no coordinator row (content -1, role p)`);
    const time = now.toISOString();
    let result: PlanResult;
    let change: CatalogChange;
    if (input.remove) {
      if (!standby) throw new ValidationError(`cluster ${snapshot.clusterId} has no standby (content -1, role m): nothing to remove`);
      const planned: StandbyPlan = { action: 'remove', dbid: standby.dbid, coordinatorDbid: coordinator.dbid, hostname: standby.hostname, address: standby.address, port: standby.port, datadir: standby.datadir };
      result = { ...planned, ...knobs, warnings: [], resumed: false };
      change = {
        rows: [],
        history: [{ time, dbid: standby.dbid, description: `${LABEL} -r: removing standby dbid ${standby.dbid} on ${where(standby)} (execution ${execution})`.slice(0, 1000) }],
        setOperations: [holdOf('standby-init', COORDINATOR_CONTENT, execution, now, planned)],
      };
    } else {
      if (standby) {
        throw new ValidationError(
          `cluster ${snapshot.clusterId} has a standby already: dbid ${standby.dbid} on ${where(standby)} (${standby.role}/${standby.status}/${standby.mode}); remove it first with gpinitstandby -r (ftsctl initstandby -r, or {"clusterId":"${snapshot.clusterId}","remove":true})`,
        );
      }
      if (coordinator.status !== 'u') throw new ValidationError(`coordinator dbid ${coordinator.dbid} is marked down: a standby is copied from a running coordinator`);
      const { row, warnings } = newStandbyRow(snapshot, coordinator, input);
      const planned: StandbyPlan = { action: 'add', dbid: row.dbid, coordinatorDbid: coordinator.dbid, hostname: row.hostname, address: row.address, port: row.port, datadir: row.datadir };
      result = { ...planned, ...knobs, warnings, resumed: false };
      change = {
        rows: [],
        addRows: [row],
        history: [{ time, dbid: row.dbid, description: `${LABEL}: add standby dbid ${row.dbid} on ${where(row)} of coordinator dbid ${coordinator.dbid} (execution ${execution})`.slice(0, 1000) }],
        setOperations: [holdOf('standby-init', COORDINATOR_CONTENT, execution, now, planned)],
        status: clusterStatusOf([...snapshot.segments, row]),
      };
    }
    try {
      await deps.catalog.apply(input.clusterId, snapshot.version, change);
      for (const w of result.warnings) deps.telemetry.warn(`${LABEL}: ${w}`, { clusterId: input.clusterId, execution });
      deps.telemetry.info(`${LABEL}: content -1 held to ${result.action} standby dbid ${result.dbid} on ${where(result)}`, { clusterId: input.clusterId, execution, dbid: result.dbid });
      return result;
    } catch (e) {
      if ((e as Error).name !== 'CatalogConflictError' || attempt >= 5) throw e;
    }
  }
}

/** The step's context: input, plan and the catalog's rows, checked against each other. */
async function context(deps: WorkflowDeps, doc: unknown, action: StandbyPlan['action']) {
  const input = inputOf(doc, false);
  const planned = planOf(doc);
  if (planned.action !== action) throw new ValidationError(`this step is for ${action === 'add' ? 'adding' : 'removing'} a standby, but the plan ${planned.action === 'add' ? 'adds' : 'removes'} one`);
  const snapshot = await load(deps, input.clusterId);
  return { input, planned, snapshot, coordinator: coordinatorOf(snapshot, planned), standby: standbyOf(snapshot, planned) };
}

/** The standby row an add step works on: there, and still a standby; RebuildFailedError otherwise. */
function addedRow(snapshot: ClusterSnapshot, planned: StandbyPlan, standby: SegmentRow | undefined): SegmentRow {
  if (!standby) throw new RebuildFailedError(`standby dbid ${planned.dbid} is no longer in the catalog of cluster ${snapshot.clusterId}: someone removed it; nothing more is done`);
  return standby;
}

/** The copy (pg_basebackup through the standby's slot, identity and standby config, start) as a host job; a standby already up needs none. */
async function startCopy(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const { input, planned } = await context(deps, doc, 'add');
  const loop = loopSchema.parse(doc);
  await renewHolds(deps, input.clusterId, execution, COORDINATOR_CONTENT, 'standby-init');
  const snapshot = await load(deps, input.clusterId);
  checkHeld(snapshot, COORDINATOR_CONTENT, execution, deps.now());
  const coordinator = coordinatorOf(snapshot, planned);
  const standby = addedRow(snapshot, planned, standbyOf(snapshot, planned));
  // A start refused because an earlier copy still held the directory (a retried step) did nothing: it does not count.
  const starts = (loop.startCopy?.starts ?? 0) + (loop.pollCopy?.busy ? 0 : 1);
  const busyStarts = (loop.startCopy?.busyStarts ?? 0) + (loop.pollCopy?.busy ? 1 : 0);
  if (busyStarts > MAX_BUSY_STARTS) throw new RebuildFailedError(`an earlier copy into ${standby.datadir} on ${standby.hostname} still holds its lock after ${MAX_BUSY_STARTS} tries: stop it on the host, then run gpinitstandby again`);
  if (standby.status === 'u') return { job: null, starts, busyStarts, already: true };
  if (coordinator.status !== 'u') throw new RebuildFailedError(`coordinator dbid ${coordinator.dbid} is marked down: the standby is copied from a running coordinator`);
  const job = await deps.host.startRebuild(standby, coordinator, 'basebackup');
  deps.telemetry.info(`${LABEL}: copy of coordinator dbid ${coordinator.dbid} into standby dbid ${standby.dbid} on ${where(standby)} started`, { dbid: standby.dbid, job: job.id, starts });
  return { job, starts, busyStarts };
}

/** Looks at the copy once: running (stalled: cancelled), succeeded, lost or busy (start again), or failed. */
async function pollCopy(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const { input, planned } = await context(deps, doc, 'add');
  const loop = loopSchema.parse(doc);
  const job = loop.startCopy?.job as HostJob | null | undefined;
  if (!job) return { state: 'succeeded' };
  if (job.dbid !== planned.dbid) throw new ValidationError(`the job in the state document copies dbid ${job.dbid}, not the planned standby dbid ${planned.dbid}`);
  // Still ours (a lost hold ends here, and RecordFailure cancels the copy).
  await renewHolds(deps, input.clusterId, execution, COORDINATOR_CONTENT, 'standby-init');
  const status = await deps.host.jobStatus(job);
  const fields = { content: COORDINATOR_CONTENT, dbid: planned.dbid, ...(status.progress ?? {}) };
  const what = `the copy into standby dbid ${planned.dbid} (${where(planned)})`;
  if (status.state === 'running') {
    const watch = await watchForStall(deps, job, status, loop.pollCopy?.watch, input.stallSeconds, what);
    deps.telemetry.info('rebuild progress', fields);
    return { state: 'running', watch, ...(status.progress ? { progress: status.progress } : {}) };
  }
  if (status.state === 'succeeded') return { state: 'succeeded', ...(status.progress ? { progress: status.progress } : {}) };
  if (status.busy) {
    deps.telemetry.info(`another copy into ${planned.datadir} on ${planned.hostname} still runs: starting again once it ends`, fields);
    return { state: 'restart', busy: true };
  }
  if (status.wipeRefused) {
    throw new RebuildFailedError(
      `refusing to copy into ${planned.datadir} on ${planned.hostname}: ${status.message ?? 'it is not empty and not a data directory of this standby'}; nothing was deleted. Empty or move it, or give another data directory (--datadir)`,
    );
  }
  if (status.lost && (loop.startCopy?.starts ?? 1) < MAX_REBUILD_STARTS) {
    deps.telemetry.warn(`${what} ended without an exit status (${status.message ?? 'process lost'}): starting it again`, fields);
    return { state: 'restart', message: status.message };
  }
  throw new RebuildFailedError(`${what} failed${status.exitCode !== undefined ? ` (exit ${status.exitCode})` : ''}: ${status.message ?? 'no message'}`);
}

/**
 * Waits (up to {@link STREAM_WAIT_SECONDS}) until the new standby streams from the
 * coordinator: in recovery, its WAL receiver `streaming`, its sender the coordinator.
 */
async function verifyStreaming(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const { input, snapshot, planned, coordinator, standby: found } = await context(deps, doc, 'add');
  const standby = addedRow(snapshot, planned, found);
  if (standby.status !== 'u') await renewHolds(deps, input.clusterId, execution, COORDINATOR_CONTENT, 'standby-init');
  let receiver = await deps.control.walReceiver(standby); // checks its identity too
  for (const deadline = deps.now().getTime() + STREAM_WAIT_SECONDS * 1000; receiver.inRecovery && receiver.state !== 'streaming'; ) {
    if (deps.now().getTime() > deadline) {
      throw new RebuildFailedError(`standby dbid ${standby.dbid} runs but does not stream from coordinator dbid ${coordinator.dbid} (its WAL receiver is ${receiver.state}) ${STREAM_WAIT_SECONDS} s after its copy`);
    }
    await (deps.sleep ?? sleep)(STREAM_POLL_MS);
    receiver = await deps.control.walReceiver(standby);
  }
  if (!receiver.inRecovery) throw new RebuildFailedError(`dbid ${standby.dbid} answers but is not a standby (not in recovery) after its copy; leaving it out of the catalog`);
  const hostOk = receiver.senderHost === undefined || receiver.senderHost === coordinator.address || receiver.senderHost === coordinator.hostname;
  const portOk = receiver.senderPort === undefined || receiver.senderPort === coordinator.port;
  if (!hostOk || !portOk) {
    throw new RebuildFailedError(`standby dbid ${standby.dbid} streams from ${receiver.senderHost ?? '?'}:${receiver.senderPort ?? '?'}, not from coordinator dbid ${coordinator.dbid} at ${coordinator.address}:${coordinator.port}`);
  }
  return { dbid: standby.dbid, receiver: receiver.state, ...(receiver.senderHost ? { senderHost: receiver.senderHost } : {}), ...(receiver.senderPort ? { senderPort: receiver.senderPort } : {}) };
}

/**
 * Turns sync rep on at the coordinator (synchronous mode, the default), marks the standby
 * `m/u/n` and releases content -1; the prober marks the pair `s` once it has caught up.
 */
async function finish(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const { input, snapshot, planned, coordinator, standby: found } = await context(deps, doc, 'add');
  const standby = addedRow(snapshot, planned, found);
  const mine = ownHold(snapshot, execution);
  if (standby.status === 'u' && !mine) {
    return { dbid: standby.dbid, already: true, message: `standby dbid ${standby.dbid} on ${where(standby)} is up` };
  }
  await renewHolds(deps, input.clusterId, execution, COORDINATOR_CONTENT, 'standby-init');
  const settings = await deps.catalog.loadSettings(input.clusterId);
  const synchronous = settings.standbySynchronous !== false;
  // While content -1 is held the prober leaves its sync rep alone; the standby streams, so commits do not wait long.
  if (synchronous) await deps.control.setSyncRep(coordinator, standby, true);
  const now = deps.now();
  const version = await applyFresh(deps.catalog, input.clusterId, (s) => {
    const current = standbyOf(s, planned);
    if (!current) throw new RebuildFailedError(`standby dbid ${planned.dbid} left the catalog of cluster ${s.clusterId} before it was marked up`);
    const held = ownHold(s, execution);
    if (current.status === 'u' && !held) return null;
    checkHeld(s, COORDINATOR_CONTENT, execution, now);
    const up: SegmentRow = { ...current, status: 'u', mode: 'n' };
    const rows = current.status === 'u' ? [] : [up];
    const after = s.segments.map((r) => (r.dbid === up.dbid ? up : r));
    return {
      rows,
      history: rows.map((r) => ({ time: now.toISOString(), dbid: r.dbid, description: historyText(r, `${LABEL}: standby on ${where(r)} copied and streaming from coordinator dbid ${coordinator.dbid}`) })),
      status: clusterStatusOf(after),
      clearOperations: [{ content: COORDINATOR_CONTENT, execution }],
    };
  });
  const message = `standby dbid ${standby.dbid} on ${where(standby)} streams from coordinator dbid ${coordinator.dbid}; ${synchronous ? 'sync rep is on: the prober marks the pair in sync once it has caught up' : 'asynchronous mode (standbySynchronous false): sync rep stays off'}`;
  deps.telemetry.info(`${LABEL}: ${message}`, { dbid: standby.dbid });
  return { dbid: standby.dbid, syncRep: synchronous, message, ...(version !== undefined ? { version } : {}) };
}

/** The catalog's standby of a remove step, or undefined once it is gone. */
async function removeContext(deps: WorkflowDeps, doc: unknown, execution: string, renew: boolean) {
  const ctx = await context(deps, doc, 'remove');
  if (!ctx.standby) return { ...ctx, gone: true as const };
  if (renew) await renewHolds(deps, ctx.input.clusterId, execution, COORDINATOR_CONTENT, 'standby-init');
  const snapshot = renew ? await load(deps, ctx.input.clusterId) : ctx.snapshot;
  checkHeld(snapshot, COORDINATOR_CONTENT, execution, deps.now());
  const standby = standbyOf(snapshot, ctx.planned);
  if (!standby) return { ...ctx, gone: true as const };
  return { ...ctx, snapshot, coordinator: coordinatorOf(snapshot, ctx.planned), standby, gone: false as const };
}

/**
 * `-r`, first: the pair is marked not in sync (the catalog never claims more than is true)
 * and sync rep is turned off at the coordinator, so no commit ever waits for a standby
 * that is going away.
 */
async function disableSyncRep(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const ctx = await removeContext(deps, doc, execution, true);
  if (ctx.gone) return { already: true };
  const now = deps.now();
  await applyFresh(deps.catalog, ctx.input.clusterId, (s) => {
    const rows = s.segments.filter((r) => r.content === COORDINATOR_CONTENT && r.mode === 's').map((r) => ({ ...r, mode: 'n' as const }));
    if (!rows.length) return null;
    const after = s.segments.map((r) => rows.find((x) => x.dbid === r.dbid) ?? r);
    return {
      rows,
      history: rows.map((r) => ({ time: now.toISOString(), dbid: r.dbid, description: historyText(r, `${LABEL} -r: synchronous replication to standby dbid ${ctx.planned.dbid} turned off before it is removed`) })),
      status: clusterStatusOf(after),
    };
  });
  await deps.control.setSyncRep(ctx.coordinator, undefined, false);
  return { dbid: ctx.standby.dbid, syncRep: false };
}

/**
 * `-r`: stops the standby (fast). A host that does not answer is reported, and the
 * removal goes on when the coordinator sees no stream from it (it cannot be in sync, and
 * its slot is dropped next); while it still streams, the step fails.
 */
async function stopStandby(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const ctx = await removeContext(deps, doc, execution, true);
  if (ctx.gone) return { already: true };
  const { standby, coordinator } = ctx;
  try {
    const report = await deps.host.stop(standby, 'fast');
    return { dbid: standby.dbid, stopped: true, wasRunning: report.wasRunning };
  } catch (e) {
    const settings = { ...(await deps.catalog.loadSettings(ctx.input.clusterId)), probeRetries: 0 };
    const probe = await deps.probe.probe(coordinator, settings, standby);
    if (!probe.ok) throw new HostCommandError(`the stop of standby dbid ${standby.dbid} failed (${(e as Error).message}) and coordinator dbid ${coordinator.dbid} does not answer (${probe.message}) to tell whether it still streams`);
    if (probe.mirror.state !== 'absent') {
      throw new HostCommandError(`the stop of standby dbid ${standby.dbid} on ${where(standby)} failed (${(e as Error).message}) and it still streams from the coordinator (${probe.mirror.state}): stop it by hand, then run gpinitstandby -r again`);
    }
    const warning = `the stop of standby dbid ${standby.dbid} on ${where(standby)} failed (${(e as Error).message}); it does not stream from the coordinator, so it is removed anyway: stop it on its host when it is back`;
    deps.telemetry.warn(`${LABEL} -r: ${warning}`, { dbid: standby.dbid });
    return { dbid: standby.dbid, stopped: false, warning };
  }
}

/** `-r`, last: drops the standby's slot on the coordinator, removes its row with a history row, releases content -1. */
async function removeStandby(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const ctx = await removeContext(deps, doc, execution, false);
  if (ctx.gone) {
    await release(deps, ctx.input.clusterId, execution);
    return { dbid: ctx.planned.dbid, removed: true, already: true, message: `standby dbid ${ctx.planned.dbid} is not in the catalog any more` };
  }
  const { coordinator, standby } = ctx;
  await deps.control.dropSlot(coordinator, standby.dbid);
  const now = deps.now();
  await applyFresh(deps.catalog, ctx.input.clusterId, (s) => {
    const current = standbyOf(s, ctx.planned);
    if (!current) return null;
    checkHeld(s, COORDINATOR_CONTENT, execution, now);
    return removal(s, current, now, `${LABEL} -r: standby dbid ${current.dbid} on ${where(current)} removed (execution ${execution})`, execution);
  });
  const message = `standby dbid ${standby.dbid} on ${where(standby)} removed; its replication slot ${mirrorSlotName(standby.dbid)} on coordinator dbid ${coordinator.dbid} dropped; its data directory is left on its host`;
  deps.telemetry.info(`${LABEL} -r: ${message}`, { dbid: standby.dbid });
  return { dbid: standby.dbid, removed: true, message };
}

/** The change that removes a standby row: its history row, the coordinator no longer in sync, the hold released. */
function removal(s: ClusterSnapshot, standby: SegmentRow, now: Date, description: string, execution: string): CatalogChange {
  const coordinator = s.segments.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p');
  const time = now.toISOString();
  const alone = coordinator && coordinator.mode === 's' ? { ...coordinator, mode: 'n' as const } : undefined;
  const after = s.segments.filter((r) => r.dbid !== standby.dbid).map((r) => (alone && r.dbid === alone.dbid ? alone : r));
  const hold = ownHold(s, execution);
  return {
    rows: alone ? [alone] : [],
    removeRows: [standby.dbid],
    history: [
      { time, dbid: standby.dbid, description: description.slice(0, 1000) },
      ...(alone ? [{ time, dbid: alone.dbid, description: historyText(alone, `${LABEL}: its standby dbid ${standby.dbid} was removed`) }] : []),
    ],
    status: clusterStatusOf(after),
    ...(hold ? { clearOperations: [{ content: COORDINATOR_CONTENT, execution }] } : {}),
  };
}

/** Releases this execution's hold on content -1, if it still has one. */
async function release(deps: WorkflowDeps, clusterId: string, execution: string): Promise<void> {
  await applyFresh(deps.catalog, clusterId, (s) => (ownHold(s, execution) ? { rows: [], history: [], clearOperations: [{ content: COORDINATOR_CONTENT, execution }] } : null));
}

/** Runs a best-effort cleanup call; returns a note for the operator when it failed. */
async function attempt(what: string, call: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await call();
    return undefined;
  } catch (e) {
    return `${what} failed: ${(e as Error).message}`;
  }
}

/**
 * Records why the run failed and undoes what it did. An add: its copy is cancelled, sync
 * rep turned off, the standby stopped and its slot on the coordinator dropped (each best
 * effort, each failure named), its row removed with a history row; its data directory is
 * left for the next attempt. A remove: the standby stays in the catalog (the prober takes
 * it back). Either way content -1 is released.
 */
async function recordFailure(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const cause = errorCause(doc);
  const d = (doc ?? {}) as { clusterId?: unknown; remove?: unknown };
  const wantedRemove = d.remove === true;
  if (typeof d.clusterId !== 'string') return { remove: wantedRemove, message: `${LABEL} failed: ${cause}; the state document names no cluster, nothing was changed` };
  let snapshot: ClusterSnapshot;
  try {
    snapshot = await deps.catalog.load(d.clusterId);
  } catch (e) {
    if (e instanceof ClusterNotFoundError) return { remove: wantedRemove, message: `${LABEL} failed: ${cause}; cluster ${d.clusterId} is not in the catalog, nothing was changed` };
    throw e;
  }
  const mine = ownHold(snapshot, execution);
  let planned: StandbyPlan | undefined;
  if (mine) planned = heldPlan(mine, execution);
  else {
    const fromDoc = planResultSchema.safeParse((doc as { plan?: unknown }).plan);
    if (fromDoc.success) planned = standbyPlanSchema.parse({ action: fromDoc.data.action, dbid: fromDoc.data.dbid, coordinatorDbid: fromDoc.data.coordinatorDbid, hostname: fromDoc.data.hostname, address: fromDoc.data.address, port: fromDoc.data.port, datadir: fromDoc.data.datadir });
  }
  if (!planned) return { remove: wantedRemove, message: `${LABEL}${wantedRemove ? ' -r' : ''} failed before it planned anything: ${cause}; nothing was changed` };
  deps.telemetry.error(`${LABEL}${planned.action === 'remove' ? ' -r' : ''} failed`, { dbid: planned.dbid, cause });
  const time = deps.now().toISOString();
  if (planned.action === 'remove') {
    await applyFresh(deps.catalog, d.clusterId, (s) => {
      const row = s.segments.find((r) => r.dbid === planned.dbid) ?? s.segments.find((r) => r.content === COORDINATOR_CONTENT);
      const held = ownHold(s, execution);
      if (!row && !held) return null;
      return {
        rows: [],
        history: row ? [{ time, dbid: row.dbid, description: `${LABEL} -r of standby dbid ${planned.dbid} failed: ${cause}`.slice(0, 1000) }] : [],
        ...(held ? { clearOperations: [{ content: COORDINATOR_CONTENT, execution }] } : {}),
      };
    });
    const still = (await deps.catalog.load(d.clusterId)).segments.some((r) => r.dbid === planned.dbid);
    return {
      remove: true,
      dbid: planned.dbid,
      message: `${LABEL} -r of standby dbid ${planned.dbid} on ${where(planned)} failed: ${cause}. ${still ? 'The standby is still in the catalog; the prober turns sync rep back on once it streams. Fix the cause and run gpinitstandby -r again' : 'Its row is gone from the catalog'}`,
    };
  }
  // An add: undo it, unless the catalog already marks the standby up (Finish wrote it).
  const standby = snapshot.segments.find((r) => r.dbid === planned.dbid && r.content === COORDINATOR_CONTENT && r.role === 'm');
  const coordinator = snapshot.segments.find((r) => r.dbid === planned.coordinatorDbid && r.role === 'p');
  if (standby?.status === 'u') {
    await release(deps, d.clusterId, execution);
    return { remove: false, dbid: planned.dbid, message: `${LABEL} of standby dbid ${planned.dbid} on ${where(planned)} reported a failure after the standby was marked up: ${cause}; the standby stays` };
  }
  const notes: string[] = [];
  const note = (n: string | undefined) => void (n !== undefined && notes.push(n));
  const loop = loopSchema.safeParse(doc);
  const job = loop.success ? loop.data.startCopy?.job : undefined;
  if (job) note(await attempt('cancelling the copy', () => deps.host.cancelJob(job as HostJob)));
  if (standby) {
    // Only this standby can be the coordinator's synchronous one: off is right whatever Finish got to.
    if (coordinator) note(await attempt(`turning sync rep off at coordinator dbid ${coordinator.dbid}`, () => deps.control.setSyncRep(coordinator, undefined, false)));
    // Stopped only when it answers as this standby: the directory may hold another instance (a refused copy did nothing there).
    const settings = { ...(await deps.catalog.loadSettings(d.clusterId)), probeRetries: 0 };
    const probe = await deps.probe.probe(standby, settings);
    if (probe.ok) note(await attempt(`stopping standby dbid ${standby.dbid}`, () => deps.host.stop(standby, 'fast')));
    else if (probe.kind === 'wrong-instance') note(`another instance answers at the standby's place (${probe.message}); it was left alone`);
  }
  if (coordinator) {
    const slot = mirrorSlotName(planned.dbid);
    const failed = await attempt(`dropping slot ${slot} on coordinator dbid ${coordinator.dbid}`, () => deps.control.dropSlot(coordinator, planned.dbid));
    note(failed && `${failed}; it keeps WAL on the coordinator: drop it by hand (SELECT pg_drop_replication_slot('${slot}'))`);
  }
  let outcome = 'Its row is not in the catalog any more';
  await applyFresh(deps.catalog, d.clusterId, (s) => {
    const current = s.segments.find((r) => r.dbid === planned.dbid && r.content === COORDINATOR_CONTENT && r.role === 'm' && r.status === 'd');
    const held = ownHold(s, execution);
    const other = liveOperation(s, COORDINATOR_CONTENT, deps.now());
    if (current && other && other.execution !== execution) {
      outcome = `Its row (m/d/n) is left in the catalog: content -1 is held by ${describeOperation(other)} now; remove it with gpinitstandby -r once that has ended`;
      return null;
    }
    if (current) {
      outcome = 'Its row was removed from the catalog and content -1 released';
      return removal(s, current, deps.now(), `${LABEL}: standby dbid ${current.dbid} on ${where(current)} removed: its init failed: ${cause}`, execution);
    }
    if (!held) return null;
    const row = s.segments.find((r) => r.content === COORDINATOR_CONTENT);
    return { rows: [], history: row ? [{ time, dbid: row.dbid, description: `${LABEL} of standby dbid ${planned.dbid} failed: ${cause}`.slice(0, 1000) }] : [], clearOperations: [{ content: COORDINATOR_CONTENT, execution }] };
  });
  const message = [
    `${LABEL} of standby dbid ${planned.dbid} on ${where(planned)} failed: ${cause}.`,
    `${outcome}; its data directory ${planned.datadir} on ${planned.hostname} is left for the next attempt.`,
    ...notes.map((n) => `Note: ${n}.`),
  ].join(' ');
  return { remove: false, dbid: planned.dbid, message: message.slice(0, 30_000) };
}

/** The InitStandby step table. */
export const INIT_STANDBY_STEPS: StepTable<WorkflowDeps> = {
  plan,
  'start-copy': startCopy,
  'poll-copy': pollCopy,
  'verify-streaming': verifyStreaming,
  finish,
  'disable-sync-rep': disableSyncRep,
  'stop-standby': stopStandby,
  'remove-standby': removeStandby,
  'record-failure': recordFailure,
};

const run = stepRunner(INIT_STANDBY_SPEC, INIT_STANDBY_STEPS);

/** Runs the step a Task state names (the Lambda and local mode both call this). */
export async function runInitStandbyStepEvent(deps: WorkflowDeps, event: { step?: unknown; input?: unknown; execution?: unknown }): Promise<Record<string, unknown>> {
  return run(deps, event);
}
