/**
 * The prober: take the lease, then every probe interval start a probe of each content
 * whose previous probe has finished, until the invocation's deadline. Contents are
 * independent: each content's decision is made and written as soon as its own probe
 * completes, so a frozen host (a probe that takes its whole timeout and retries) never
 * delays another content's mirror-down handling. Catalog writes are serialized within
 * the prober, conditioned on the version and on the lease, and every action checks the
 * lease first: a prober paused past its lease decides nothing that anyone acts on.
 */
import type { Catalog, Lease } from '../ports/catalog';
import type { SegmentControl, SegmentHost, SegmentProbe } from '../ports/segments';
import type { MetricName, Telemetry } from '../ports/telemetry';
import type { Workflows } from '../ports/workflows';
import type { WorkflowInputs } from '../workflows';
import type { ClusterSnapshot, PendingFence, ProberMemory, SegmentRow } from '../core/model';
import { COORDINATOR_CONTENT, pairsByContent } from '../core/model';
import type { Decision, RoundPlan } from '../core/decide';
import { decide, recordReceiver, replicationLagBytes } from '../core/decide';
import type { ProbeResult } from '../core/probe';
import type { Settings } from '../core/settings';
import { worstCaseProbeSeconds } from '../core/settings';
import { CatalogConflictError, ClusterNotFoundError, LeaseLostError, NotLeaseHolderError } from '../core/errors';

/** What the prober needs; built once per Lambda container (or local daemon). */
export interface ProberDeps {
  catalog: Catalog;
  probe: SegmentProbe;
  control: SegmentControl;
  /** Host operations (fences of zombie old primaries). */
  host: SegmentHost;
  workflows: Workflows;
  telemetry: Telemetry;
  /** Epoch milliseconds. */
  clock: () => number;
  sleep: (ms: number) => Promise<void>;
}

/** What one content's probe and decision saw and did. */
export interface ContentReport {
  content: number;
  version: number;
  probes: ProbeResult[];
  decisions: Decision[];
  /** False when the catalog could not be written (another writer kept winning, or the lease was lost). */
  written: boolean;
  durationMs: number;
}

/** What one tick of the prober started. */
export interface RoundReport {
  version: number;
  /** Contents whose probe this tick started. */
  started: number[];
  /** Contents still busy with an earlier probe or action (not probed again yet). */
  busy: number[];
  durationMs: number;
}

/** Decisions that only raise an alarm: the metric each emits. */
const ALARM_METRICS: Partial<Record<Decision['kind'], MetricName>> = {
  'double-fault': 'DoubleFault',
  'content-unavailable': 'ContentUnavailable',
  'coordinator-unreachable': 'CoordinatorUnreachable',
  'probe-misconfigured': 'ProbeMisconfigured',
  'wrong-instance': 'WrongInstance',
  'too-many-connections': 'TooManyConnections',
  'primary-reset': 'PrimaryReset',
  'reset-loop': 'PrimaryResetLoop',
  'replication-timeout-misconfigured': 'ReplicationTimeoutMisconfigured',
  'standby-down': 'StandbyDown',
  'standby-lagging': 'StandbyLagging',
};

/** Attempts to write one content's decision when other writers keep changing the catalog. */
const WRITE_ATTEMPTS = 3;
/** An action is only taken while the lease has at least this long to live. */
const LEASE_SAFETY_MS = 1000;
/** Longest a sync rep change or a fence may take (the lease must outlive it). */
const ACTION_ALLOWANCE_SECONDS = 20;

/** The lease outlives the longest probe plus its actions, so a live prober never loses it between renewals. */
export const leaseTtlMs = (settings: Settings): number => (worstCaseProbeSeconds(settings) + settings.probeIntervalSeconds + ACTION_ALLOWANCE_SECONDS) * 1000;

/** Options of one prober invocation. */
export interface ProberRun {
  clusterId: string;
  /** Unique per invocation (the Lambda request id). */
  owner: string;
  /** Epoch ms by which the invocation must have released the lease. */
  deadline: number;
  /** Called after every tick (local mode counts rounds from it). */
  onRound?: (report: RoundReport) => void;
  /** Called when a content's decision is made (and written). */
  onDecided?: (report: ContentReport) => void;
  /** Ends the invocation after the current tick (local mode's `local down`, tests). */
  signal?: AbortSignal;
}

/** One invocation's state: the latest snapshot, the memory, the lease and the contents in flight. */
class Invocation {
  snapshot!: ClusterSnapshot;
  memory!: ProberMemory;
  settings!: Settings;
  lost = false;
  private writeQueue: Promise<unknown> = Promise.resolve();
  readonly inFlight = new Map<number, Promise<void>>();
  /** The read-only probe of the coordinator's standby in flight, if any (never awaited by a content's cycle). */
  standbyProbe: Promise<void> | undefined;

  constructor(
    readonly deps: ProberDeps,
    readonly run: ProberRun,
    public lease: Lease,
  ) {}

  /** True while the lease has time left; an action must not start otherwise. */
  leaseLive(): boolean {
    return !this.lost && this.deps.clock() < this.lease.expiresAt - LEASE_SAFETY_MS;
  }

  /** Runs `work` after every earlier write of this invocation has finished (one writer at a time). */
  serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.writeQueue.then(work, work);
    this.writeQueue = next.catch(() => undefined);
    return next;
  }

  async reload(): Promise<void> {
    const snapshot = await this.deps.catalog.load(this.run.clusterId);
    this.snapshot = snapshot;
    this.memory ??= snapshot.memory;
  }

  /** Probes a content's acting primary (with the write check) and its down mirror (zombie check). */
  async probeContent(content: number): Promise<ProbeResult[]> {
    const { probe } = this.deps;
    const pair = pairsByContent(this.snapshot.segments).find((p) => p.content === content);
    if (!pair?.primary) return [];
    const settings = this.settings;
    const probes: Promise<ProbeResult>[] = [probe.probe(pair.primary, settings, pair.mirror, { writeCheck: pair.primary.status === 'u' })];
    // One quick attempt: a down row that answers at all is worth a look; one that does not is what the catalog says.
    if (pair.mirror?.status === 'd') probes.push(probe.probe(pair.mirror, { ...settings, probeRetries: 0 }));
    return Promise.all(probes);
  }

  /** Decides one content on the latest snapshot and writes the change; re-decides after a conflict. */
  async decideAndWrite(content: number, probes: ProbeResult[]): Promise<{ plan: RoundPlan; snapshot: ClusterSnapshot; written: boolean }> {
    return this.serialized(async () => {
      for (let attempt = 1; ; attempt++) {
        const snapshot: ClusterSnapshot = { ...this.snapshot, memory: this.memory };
        const plan = decide(snapshot, probes, this.settings, new Date(this.deps.clock()), content);
        if (!plan.change) {
          this.memory = plan.memory;
          return { plan, snapshot, written: true };
        }
        if (!this.leaseLive()) return { plan, snapshot, written: false };
        try {
          await this.deps.catalog.apply(this.run.clusterId, snapshot.version, plan.change, { owner: this.lease.owner, token: this.lease.token, now: this.deps.clock() });
          this.memory = plan.memory;
          await this.reload();
          return { plan, snapshot, written: true };
        } catch (e) {
          if (e instanceof NotLeaseHolderError) {
            this.lost = true;
            this.deps.telemetry.warn(`prober lease lost; not acting: ${e.message}`, { clusterId: this.run.clusterId, content });
            return { plan, snapshot, written: false };
          }
          if (!(e instanceof CatalogConflictError)) throw e;
          await this.reload();
          if (attempt >= WRITE_ATTEMPTS) {
            this.deps.telemetry.warn('catalog kept changing; deciding this content again at its next probe', { clusterId: this.run.clusterId, content });
            return { plan, snapshot, written: false };
          }
        }
      }
    });
  }

  /**
   * Starts a read-only probe of the coordinator's standby (one attempt, no write check)
   * unless one is still in flight, and records what its WAL receiver says in the memory
   * when it answers. The coordinator's own cycle never waits for it: a black-holed standby
   * delays no decision (the coordinator's walsender is what decides). A standby marked
   * down is probed by the cycle itself (the zombie check), whose answer is recorded instead.
   */
  observeStandby(): void {
    if (this.standbyProbe) return;
    const pair = pairsByContent(this.snapshot.segments).find((p) => p.content === COORDINATOR_CONTENT);
    const { primary, mirror } = pair ?? {};
    if (!primary || !mirror || mirror.status === 'd') return;
    const { deps } = this;
    this.standbyProbe = deps.probe
      .probe(mirror, { ...this.settings, probeRetries: 0 })
      .then((result) =>
        this.serialized(async () => {
          // Only while the catalog still names the same pair (an activation may have happened meanwhile).
          const now = pairsByContent(this.snapshot.segments).find((p) => p.content === COORDINATOR_CONTENT);
          if (now?.primary?.dbid === primary.dbid && now.mirror?.dbid === mirror.dbid) this.memory = recordReceiver(this.memory, primary, mirror, result, new Date(deps.clock()));
        }),
      )
      .catch((e: unknown) => deps.telemetry.warn(`probe of standby dbid ${mirror.dbid} failed: ${(e as Error).message}`, { clusterId: this.run.clusterId, content: COORDINATOR_CONTENT }))
      .finally(() => (this.standbyProbe = undefined));
  }

  /** Records the cycle's own probe of a standby marked down (its zombie check) as the standby's receiver view. */
  private async recordDownStandby(probes: readonly ProbeResult[]): Promise<void> {
    const pair = pairsByContent(this.snapshot.segments).find((p) => p.content === COORDINATOR_CONTENT);
    const { primary, mirror } = pair ?? {};
    const probe = mirror?.status === 'd' ? probes.find((p) => p.dbid === mirror.dbid) : undefined;
    if (!primary || !mirror || !probe) return;
    await this.serialized(async () => {
      this.memory = recordReceiver(this.memory, primary, mirror, probe, new Date(this.deps.clock()));
    });
  }

  /** One content: probe, decide and write, then act. Errors are logged; the next tick tries again. */
  async cycle(content: number): Promise<void> {
    const started = this.deps.clock();
    if (content === COORDINATOR_CONTENT) this.observeStandby();
    const probes = await this.probeContent(content);
    if (content === COORDINATOR_CONTENT) await this.recordDownStandby(probes);
    const { plan, snapshot, written } = await this.decideAndWrite(content, probes);
    const { telemetry } = this.deps;
    const durationMs = this.deps.clock() - started;
    // Emitted together, in this order (the benchmark reads them so).
    telemetry.metric('ContentRoundMs', durationMs, 'Milliseconds');
    telemetry.metric('ProbesFailed', probes.filter((p) => !p.ok).length);
    telemetry.metric('Decisions', plan.decisions.length);
    if (content === COORDINATOR_CONTENT) {
      // The standby's lag as the coordinator reports it, each round it answers (a gauge for the dashboard).
      const coordinator = probes.find((p) => p.ok && p.dbid === snapshot.segments.find((r) => r.content === content && r.role === 'p')?.dbid);
      const lag = coordinator?.ok && !coordinator.inRecovery && coordinator.mirror.state !== 'absent' ? replicationLagBytes(coordinator) : undefined;
      if (lag !== undefined) telemetry.metric('StandbyLagBytes', lag);
    }
    if (written) await this.act(snapshot, plan);
    this.run.onDecided?.({ content, version: snapshot.version, probes, decisions: plan.decisions, written, durationMs });
  }

  private async act(snapshot: ClusterSnapshot, plan: RoundPlan): Promise<void> {
    const { deps } = this;
    const { telemetry } = deps;
    const row = (dbid: number): SegmentRow => snapshot.segments.find((r) => r.dbid === dbid)!;
    const mirrorOf = (content: number): SegmentRow | undefined => snapshot.segments.find((r) => r.content === content && r.role === 'm');
    const leaseLive = (): boolean => this.leaseLive();
    const startPromotion = (input: Omit<WorkflowInputs['PromoteMirror'], 'clusterId' | 'catalogVersion'>, version: number) =>
      deps.workflows.start('PromoteMirror', { clusterId: snapshot.clusterId, catalogVersion: version, ...input });
    for (const d of plan.decisions) {
      const fields = { clusterId: snapshot.clusterId, content: d.content, decision: d.kind, reason: d.reason };
      if (!this.leaseLive()) {
        telemetry.warn('prober lease no longer live: decision not acted on', fields);
        continue;
      }
      try {
        switch (d.kind) {
          case 'mark-mirror-down':
          case 'sync-rep-off':
            telemetry.info(d.reason, fields);
            await deps.control.setSyncRep(row(d.primaryDbid), mirrorOf(d.content), false, leaseLive);
            break;
          case 'mark-catching-up':
            telemetry.info(d.reason, fields);
            if (d.syncRepOff) await deps.control.setSyncRep(row(d.primaryDbid), mirrorOf(d.content), false, leaseLive);
            break;
          case 'sync-rep-on':
            telemetry.info(d.reason, fields);
            await deps.control.setSyncRep(row(d.primaryDbid), row(d.mirrorDbid), true, leaseLive);
            break;
          case 'fail-over': {
            if (d.failure === 'disk') telemetry.metric('DiskFailure', 1);
            if (d.failure === 'reset-loop') telemetry.metric('PrimaryResetLoop', 1);
            const input = { content: d.content, failedPrimaryDbid: d.failedPrimaryDbid, mirrorDbid: d.mirrorDbid, failure: d.failure, attempt: d.attempt.attempt, reason: d.reason };
            const started = await startPromotion(input, d.attempt.version);
            telemetry.metric('FailoversStarted', 1);
            telemetry.warn(d.reason, { ...fields, execution: started.executionName, started: started.started });
            break;
          }
          case 'activate-standby': {
            telemetry.metric('CoordinatorUnreachable', 1);
            const started = await deps.workflows.start('ActivateStandby', {
              clusterId: snapshot.clusterId,
              catalogVersion: d.attempt.version,
              standbyDbid: d.standbyDbid,
              automatic: true,
              attempt: d.attempt.attempt,
              reason: d.reason,
            });
            telemetry.metric('StandbyActivationsStarted', 1);
            telemetry.error(d.reason, { ...fields, execution: started.executionName, started: started.started });
            break;
          }
          case 'promote-again': {
            const input = { content: d.content, failedPrimaryDbid: d.failedPrimaryDbid, mirrorDbid: d.dbid, attempt: d.attempt.attempt, reason: d.reason };
            const started = await startPromotion(input, d.attempt.version);
            telemetry.warn(d.reason, { ...fields, execution: started.executionName, started: started.started });
            break;
          }
          case 'fence-zombie':
            telemetry.metric('ZombieFenced', 1);
            telemetry.error(d.reason, fields);
            await this.fence(d.fence, fields);
            break;
          case 'retry-fence':
            // The PromoteMirror workflow fences its own old primary; the prober only takes over once it is done.
            if (snapshot.pendingPromotions.some((p) => p.content === d.content)) break;
            telemetry.info(d.reason, fields);
            await this.fence(d.fence, fields);
            break;
          default: {
            const alarm = ALARM_METRICS[d.kind];
            if (!alarm) {
              telemetry.info(d.reason, fields);
              break;
            }
            telemetry.metric(alarm, 1);
            // A lagging standby is a warning each round it lasts; the others need a person.
            if (d.kind === 'standby-lagging') telemetry.warn(d.reason, fields);
            else telemetry.error(d.reason, fields);
          }
        }
      } catch (e) {
        telemetry.warn(`action failed, retried at the next probe: ${(e as Error).message}`, fields);
      }
    }
  }

  /** Carries out a fence owed in the catalog and clears it; a fence that fails stays pending (alarm). */
  private async fence(fence: PendingFence, fields: Record<string, unknown>): Promise<void> {
    const { deps } = this;
    const target = this.snapshot.segments.find((r) => r.dbid === fence.dbid);
    if (!target) return;
    const newPrimary = this.snapshot.segments.find((r) => r.content === fence.content && r.role === 'p' && r.dbid !== fence.dbid);
    try {
      const report = await deps.host.fence(target, newPrimary);
      deps.telemetry.warn(`dbid ${fence.dbid} fenced`, { ...fields, ...report });
    } catch (e) {
      deps.telemetry.metric('FencePending', 1);
      deps.telemetry.error(`fence of dbid ${fence.dbid} failed, still pending: ${(e as Error).message}`, fields);
      return;
    }
    await this.serialized(async () => {
      for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
        if (!this.snapshot.pendingFences.some((f) => f.dbid === fence.dbid) || !this.leaseLive()) return;
        try {
          await deps.catalog.apply(
            this.run.clusterId,
            this.snapshot.version,
            {
              rows: [],
              history: [{ time: new Date(deps.clock()).toISOString(), dbid: fence.dbid, description: `FTS: dbid ${fence.dbid} with contentid ${fence.content} fenced (stopped; a restart comes up read-only): ${fence.reason}` }],
              clearFences: [fence.dbid],
            },
            { owner: this.lease.owner, token: this.lease.token, now: deps.clock() },
          );
          await this.reload();
          return;
        } catch (e) {
          if (e instanceof NotLeaseHolderError) {
            this.lost = true;
            return;
          }
          if (!(e instanceof CatalogConflictError)) throw e;
          await this.reload();
        }
      }
    });
  }

  /** Starts a cycle for every content that is not busy; returns the tick's report. */
  tick(started: number): RoundReport {
    const report: RoundReport = { version: this.snapshot.version, started: [], busy: [], durationMs: 0 };
    const contents = new Set([...this.snapshot.segments.filter((r) => r.role === 'p').map((r) => r.content), ...this.snapshot.pendingFences.map((f) => f.content)]);
    for (const content of [...contents].sort((a, b) => a - b)) {
      if (this.inFlight.has(content)) {
        report.busy.push(content);
        continue;
      }
      report.started.push(content);
      const cycle = this.cycle(content)
        .catch((e: unknown) => {
          this.deps.telemetry.metric('ProberRoundFailed', 1);
          this.deps.telemetry.error(`probe of content ${content} failed: ${(e as Error).message}`, { clusterId: this.run.clusterId, content });
        })
        .finally(() => this.inFlight.delete(content));
      this.inFlight.set(content, cycle);
    }
    report.durationMs = this.deps.clock() - started;
    return report;
  }
}

/**
 * One scheduled invocation: wait for the lease (a previous invocation may still hold it
 * briefly), tick until the deadline, wait for the contents in flight, release. Returns
 * the ticks run.
 */
export async function runProber(deps: ProberDeps, run: ProberRun): Promise<number> {
  let settings: Settings;
  let lease: Lease | null = null;
  try {
    settings = await deps.catalog.loadSettings(run.clusterId);
    while (!lease && !run.signal?.aborted && deps.clock() + settings.probeIntervalSeconds * 1000 < run.deadline) {
      lease = await deps.catalog.acquireLease(run.clusterId, run.owner, leaseTtlMs(settings), deps.clock());
      if (!lease) await deps.sleep(settings.probeIntervalSeconds * 1000);
    }
  } catch (e) {
    // Deployed before `ftsctl init` registered the cluster (or after it was removed): nothing to watch, not a failure.
    if (!(e instanceof ClusterNotFoundError)) throw e;
    deps.telemetry.warn(`cluster ${run.clusterId} is not in the catalog: nothing to probe until it is registered (ftsctl init --spec <cluster.json>)`, { clusterId: run.clusterId });
    deps.telemetry.flush();
    return 0;
  }
  if (!lease) return 0;
  deps.telemetry.info('prober lease acquired', { clusterId: run.clusterId, owner: run.owner, token: lease.token });
  const invocation = new Invocation(deps, run, lease);
  invocation.settings = settings;
  let rounds = 0;
  try {
    for (;;) {
      const started = deps.clock();
      try {
        await invocation.reload();
        const report = invocation.tick(started);
        rounds += 1;
        deps.telemetry.metric('RoundDurationMs', report.durationMs, 'Milliseconds');
        run.onRound?.(report);
      } catch (e) {
        deps.telemetry.metric('ProberRoundFailed', 1);
        deps.telemetry.error(`probe round failed: ${(e as Error).message}`, { clusterId: run.clusterId });
      }
      deps.telemetry.flush();
      if (invocation.lost) break;
      invocation.lease = await deps.catalog.renewLease(invocation.lease, leaseTtlMs(settings), deps.clock(), invocation.memory);
      settings = await deps.catalog.loadSettings(run.clusterId);
      invocation.settings = settings;
      const next = started + settings.probeIntervalSeconds * 1000;
      if (next > run.deadline || run.signal?.aborted) break; // the next invocation waits for the lease
      await deps.sleep(Math.max(0, next - deps.clock()));
    }
  } catch (e) {
    if (!(e instanceof LeaseLostError)) throw e;
    invocation.lost = true;
    deps.telemetry.warn('prober lease lost; stopping', { clusterId: run.clusterId, owner: run.owner });
  } finally {
    // Contents in flight finish (their actions check the lease) before the lease is released.
    await Promise.all([...invocation.inFlight.values(), invocation.standbyProbe]);
    if (!invocation.lost) {
      // The memory of the last decisions goes with the lease to the next invocation.
      await deps.catalog
        .renewLease(invocation.lease, leaseTtlMs(settings), deps.clock(), invocation.memory)
        .then((l) => deps.catalog.releaseLease(l))
        .catch(() => undefined);
    }
    deps.telemetry.flush();
  }
  return rounds;
}
