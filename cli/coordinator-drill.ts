/**
 * What the coordinator demo (`ftsctl demo --coordinator`) and the benchmark share, as
 * cli/failover-drill.ts is for segments: a prober run in this process with the client
 * endpoint bound (so an automatic ActivateStandby moves it), a write workload through the
 * endpoint, and one measured coordinator loss: kill -9 of the coordinator, the prober's
 * alarm, the activation by hand (as `ftsctl activatestandby` runs it) or by the prober
 * (`autoActivateStandby`), each step of the workflow, and the first commit the workload
 * gets through the endpoint from the new coordinator.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { killInstance } from '../lambdas/adapters/local/host';
import { COORDINATOR_CONTENT, type SegmentRow } from '../lambdas/core/model';
import type { Catalog } from '../lambdas/ports/catalog';
import type { SegmentControl } from '../lambdas/ports/segments';
import { executionNameFor } from '../lambdas/ports/workflows';
import { activateStandbyRequest, runWorkflowLocally, type WorkflowRunResult } from '../bin/ftsctl';
import { Workload, type Ack, type Timeline } from './failover-drill';
import type { LocalCluster } from './local-cluster';
import { fileSink, startLocalProber, timelineTelemetry, type LocalProber, type TimelineEvent } from './local-prober';

/** How the standby is activated: by the operator's command, or by the prober itself. */
export type ActivationMode = 'manual' | 'automatic';

/** The message of the event {@link observedControl} adds when a write through the endpoint reached the new coordinator. */
export const WRITE_VERIFIED = 'write verified on the new coordinator';

/**
 * `control` whose `verifyWritable` of a coordinator (the ActivateStandby VerifyWrite
 * step; the only step that logs nothing) adds a timeline event once the write committed.
 */
export function observedControl<C extends SegmentControl>(control: C, push: (event: TimelineEvent) => void): C {
  const observed = Object.create(control) as C;
  observed.verifyWritable = async (segment: SegmentRow, timeoutMs: number): Promise<void> => {
    await control.verifyWritable(segment, timeoutMs);
    if (segment.content === COORDINATOR_CONTENT) push({ at: Date.now(), level: 'info', message: WRITE_VERIFIED, content: COORDINATOR_CONTENT, through: `${segment.address}:${segment.port}` });
  };
  return observed;
}

/**
 * Starts the cluster's prober in this process (the same service code as the background
 * prober, at the catalog's settings), with the client endpoint bound so an automatic
 * activation moves it. Its events go to `timeline` and to the cluster's prober.log.
 */
export function startCoordinatorProber(cluster: LocalCluster, timeline: Timeline): LocalProber {
  const toFile = fileSink(cluster.proberLog);
  const push = (event: TimelineEvent): void => {
    timeline.push(event);
    toFile(event);
  };
  return startLocalProber({
    clusterId: cluster.state.clusterId,
    catalog: cluster.catalog,
    probe: cluster.probe,
    control: observedControl(cluster.control, push),
    host: cluster.host,
    ...(cluster.endpoint ? { endpoint: cluster.endpoint } : {}),
    telemetry: timelineTelemetry(push),
  });
}

/** The catalog's coordinator and standby rows. */
export async function coordinatorPair(catalog: Catalog, clusterId: string): Promise<{ coordinator?: SegmentRow; standby?: SegmentRow }> {
  const rows = (await catalog.load(clusterId)).segments.filter((r) => r.content === COORDINATOR_CONTENT);
  return { coordinator: rows.find((r) => r.role === 'p'), standby: rows.find((r) => r.role === 'm') };
}

/** Waits until the catalog has the coordinator and its standby in sync (mode `s`): the only state an automatic activation starts from. */
export async function waitStandbyInSync(catalog: Catalog, clusterId: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { coordinator, standby } = await coordinatorPair(catalog, clusterId);
    if (coordinator?.mode === 's' && standby?.mode === 's' && standby.status === 'u') return;
    if (Date.now() > deadline) throw new Error(`the coordinator and its standby are not in sync after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A workload writing through the cluster's client endpoint, started, once it has `commits` acknowledged commits. */
export async function startEndpointWorkload(cluster: LocalCluster, commits = 20, timeoutMs = 30_000): Promise<Workload> {
  if (!cluster.state.endpoint) throw new Error(`cluster ${cluster.state.clusterId} has no client endpoint (no coordinator)`);
  const workload = new Workload(cluster.catalog, cluster.state.clusterId, COORDINATOR_CONTENT, cluster.state.endpoint);
  await workload.prepare();
  workload.start();
  const deadline = Date.now() + timeoutMs;
  while (workload.acks.length < commits) {
    if (Date.now() > deadline) {
      await workload.stop();
      throw new Error(`the workload got ${workload.acks.length} commits through the client endpoint in ${timeoutMs} ms`);
    }
    await sleep(20);
  }
  return workload;
}

/** Milestones of one activation, epoch ms. */
export interface ActivationMeasurement {
  mode: ActivationMode;
  killedDbid: number;
  standbyDbid: number;
  execution: string;
  killedAt: number;
  /** The prober's decision: CoordinatorUnreachable (manual) or the start of ActivateStandby (automatic). */
  detectedAt: number;
  /** Manual: when the command started (it reads the catalog, then runs the workflow). */
  commandAt?: number;
  plannedAt: number;
  confirmedDownAt: number;
  fencedAt: number;
  promotedAt: number;
  endpointMovedAt: number;
  writeVerifiedAt: number;
  completeAt: number;
  /** First commit the workload got through the endpoint from the new coordinator. */
  firstCommitAt: number;
  detectionMs: number;
  /** Command (manual) or decision (automatic) to the workflow's own write through the endpoint. */
  activationMs: number;
  /** Automatic: kill to first commit. Manual: command to first commit. */
  rtoMs: number;
  /** Kill to first commit, both modes (manual: includes the wait for the alarm). */
  killToCommitMs: number;
}

/** The timeline's milestones of ActivateStandby, by the messages its steps log. */
export const ACTIVATION_MILESTONES = {
  unreachable: (e: TimelineEvent): boolean => e.content === COORDINATOR_CONTENT && e.decision === 'coordinator-unreachable',
  autoStarted: (e: TimelineEvent): boolean => e.content === COORDINATOR_CONTENT && e.decision === 'activate-standby',
  planned: (e: TimelineEvent): boolean => e.message === 'activation planned',
  confirmedDown: (e: TimelineEvent): boolean => e.message === 'coordinator confirmed down' || e.message === 'coordinator alive, activation forced',
  fenced: (e: TimelineEvent): boolean => e.message === 'old coordinator fenced',
  promoted: (e: TimelineEvent): boolean => e.message === 'standby promoted to coordinator',
  endpointMoved: (e: TimelineEvent): boolean => e.message === 'client endpoint moved',
  writeVerified: (e: TimelineEvent): boolean => e.message === WRITE_VERIFIED,
  complete: (e: TimelineEvent): boolean => e.message === 'activation complete',
} as const;

/** Options of {@link killCoordinatorAndMeasure}. */
export interface CoordinatorDrillOptions {
  mode: ActivationMode;
  /** Hears each milestone as it happens. */
  onMilestone?: (name: string, atMs: number, detail: string) => void;
  /** Manual mode: the command's result once it ended. */
  onResult?: (result: WorkflowRunResult) => void;
  /** Longest wait for each milestone; default 60 s. */
  timeoutMs?: number;
}

const endpointText = (e: TimelineEvent): string => {
  const endpoint = e.endpoint as { address?: string; port?: number } | undefined;
  return endpoint ? `${endpoint.address}:${endpoint.port}` : 'the client endpoint';
};

/**
 * Kills the coordinator with kill -9 while `workload` writes through the client endpoint,
 * waits for the prober's decision, then (manual) runs ActivateStandby as `ftsctl
 * activatestandby` does, or (automatic) follows the one the prober started, and waits
 * until the workload commits through the endpoint on the activated standby. The prober
 * must be running (see {@link startCoordinatorProber}) and push its events into
 * `timeline`; manual mode pushes the workflow's events there too.
 */
export async function killCoordinatorAndMeasure(cluster: LocalCluster, workload: Workload, timeline: Timeline, options: CoordinatorDrillOptions): Promise<ActivationMeasurement> {
  const { catalog } = cluster;
  const clusterId = cluster.state.clusterId;
  const onMilestone = options.onMilestone ?? (() => undefined);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const { coordinator, standby } = await coordinatorPair(catalog, clusterId);
  if (!coordinator || !standby) throw new Error(`cluster ${clusterId} needs a coordinator and a standby`);
  if (workload.content !== COORDINATOR_CONTENT) throw new Error('the workload must write through the client endpoint (content -1)');

  const killedAt = Date.now();
  await killInstance(coordinator.datadir);
  onMilestone('killed', killedAt, `kill -9 of coordinator dbid ${coordinator.dbid} (${coordinator.hostname}:${coordinator.port}); standby dbid ${standby.dbid} on ${standby.hostname}:${standby.port}`);

  let ended: WorkflowRunResult | undefined;
  let failedRun: Error | undefined;
  let first: Ack | undefined;
  /** Announces the workload's first commit on the new coordinator as soon as it is seen (it may come before the workflow's last steps). */
  const lookForFirstCommit = (): void => {
    if (first || !(first = workload.firstAckBy(standby.dbid, killedAt))) return;
    onMilestone('first commit', first.at, `the workload committed id ${first.id} through the endpoint on dbid ${standby.dbid}`);
  };
  /** Waits for the first event at or after the kill that matches; gives up when the manual run ended without it. */
  const next = async (what: string, match: (e: TimelineEvent) => boolean): Promise<TimelineEvent> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      timeline.poll();
      lookForFirstCommit();
      const found = timeline.events.find((e) => e.at >= killedAt && match(e));
      if (found) return found;
      if (failedRun) throw failedRun;
      if (ended && ended.status !== 'SUCCEEDED') throw new Error(`ActivateStandby ${ended.executionName} ended ${ended.status} before ${what}: ${ended.error}: ${ended.cause}`);
      if (Date.now() > deadline) {
        const failures = timeline.events.filter((e) => e.at >= killedAt && /^ActivateStandby (failed|aborted)$/.test(e.message)).map((e) => `${e.message}: ${String(e.cause ?? e.error)}`);
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${failures.length ? ` (${failures.join('; ')})` : ''}`);
      }
      await sleep(10);
    }
  };

  let detected: TimelineEvent;
  let commandAt: number | undefined;
  let execution: string;
  if (options.mode === 'manual') {
    detected = await next('the CoordinatorUnreachable alarm', ACTIVATION_MILESTONES.unreachable);
    onMilestone('alarm', detected.at, `CoordinatorUnreachable: ${detected.message}`);
    // What `ftsctl activatestandby` does: read the catalog's version, run the workflow to its end.
    commandAt = Date.now();
    const snapshot = await catalog.load(clusterId);
    const input = activateStandbyRequest(clusterId, snapshot.version, {});
    execution = executionNameFor('ActivateStandby', input);
    onMilestone('command', commandAt, `$ ftsctl activatestandby --cluster ${clusterId}   (execution ${execution})`);
    const adapters = { ...cluster, control: observedControl(cluster.control, timeline.push) };
    void runWorkflowLocally(adapters, 'ActivateStandby', input, { executionName: execution, onLog: timeline.push }).then(
      (result) => {
        ended = result;
        options.onResult?.(result);
      },
      (e: unknown) => (failedRun = e as Error),
    );
  } else {
    detected = await next('the prober starting ActivateStandby', ACTIVATION_MILESTONES.autoStarted);
    execution = String(detected.execution);
    onMilestone('auto-activation', detected.at, `the prober started ActivateStandby ${execution}: ${detected.message}`);
  }

  const planned = await next('the activation plan', ACTIVATION_MILESTONES.planned);
  onMilestone('planned', planned.at, `content -1 held: coordinator dbid ${String(planned.coordinatorDbid)} is replaced by standby dbid ${String(planned.standbyDbid)}`);
  const confirmed = await next('the coordinator confirmed down', ACTIVATION_MILESTONES.confirmedDown);
  onMilestone('confirmed down', confirmed.at, `probe of the coordinator: ${String(confirmed.probe)}; standby's WAL receiver: ${String(confirmed.standbyReceiver)}${confirmed.standbyReceiver !== 'absent' && typeof confirmed.heardSecondsAgo === 'number' ? `, last heard ${confirmed.heardSecondsAgo.toFixed(1)} s ago` : ''}`);
  const fenced = await next('the fence of the old coordinator', ACTIVATION_MILESTONES.fenced);
  onMilestone('fenced', fenced.at, `dbid ${coordinator.dbid} ${fenced.wasRunning ? (fenced.killed ? 'killed' : 'stopped') : 'was not running'}; a restart comes up read-only, as a standby of dbid ${standby.dbid}`);
  const promoted = await next('the promotion', ACTIVATION_MILESTONES.promoted);
  onMilestone('activated', promoted.at, `catalog version ${String(promoted.version)} names dbid ${standby.dbid} the coordinator; pg_promote done`);
  const moved = await next('the endpoint move', ACTIVATION_MILESTONES.endpointMoved);
  onMilestone('endpoint moved', moved.at, `${endpointText(moved)} leads to dbid ${standby.dbid} (${standby.hostname}:${standby.port})`);
  const verified = await next('the write check through the endpoint', ACTIVATION_MILESTONES.writeVerified);
  onMilestone('write verified', verified.at, `the workflow committed a row through ${String(verified.through)}`);
  const complete = await next('the end of the activation', ACTIVATION_MILESTONES.complete);
  onMilestone('complete', complete.at, `history written, content -1 released`);

  const deadline = Date.now() + 30_000;
  while (!first) {
    if (Date.now() > deadline) throw new Error(`the workload made no commit through the endpoint on dbid ${standby.dbid} within 30 s of the activation`);
    await sleep(10);
    lookForFirstCommit();
  }
  // The manual run ends right after Finish; its result is the command's output.
  while (options.mode === 'manual' && !ended && !failedRun) await sleep(10);
  const start = commandAt ?? detected.at;
  return {
    mode: options.mode,
    killedDbid: coordinator.dbid,
    standbyDbid: standby.dbid,
    execution,
    killedAt,
    detectedAt: detected.at,
    ...(commandAt !== undefined ? { commandAt } : {}),
    plannedAt: planned.at,
    confirmedDownAt: confirmed.at,
    fencedAt: fenced.at,
    promotedAt: promoted.at,
    endpointMovedAt: moved.at,
    writeVerifiedAt: verified.at,
    completeAt: complete.at,
    firstCommitAt: first.at,
    detectionMs: detected.at - killedAt,
    activationMs: verified.at - start,
    rtoMs: first.at - (options.mode === 'manual' ? start : killedAt),
    killToCommitMs: first.at - killedAt,
  };
}
