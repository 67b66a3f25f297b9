/**
 * The prober: take the lease, run probe rounds every probe interval until the
 * invocation's deadline, renewing the lease and storing the prober's memory with it.
 * Each round: snapshot, probe acting primaries, `decide`, write the catalog, then act.
 */
import type { Catalog, Lease } from '../ports/catalog';
import type { SegmentControl, SegmentProbe } from '../ports/segments';
import type { MetricName, Telemetry } from '../ports/telemetry';
import type { Workflows } from '../ports/workflows';
import type { ClusterSnapshot, ProberMemory, SegmentRow } from '../core/model';
import type { Decision, RoundPlan } from '../core/decide';
import { decide } from '../core/decide';
import type { Settings } from '../core/settings';
import { worstCaseProbeSeconds } from '../core/settings';
import { CatalogConflictError, LeaseLostError } from '../core/errors';

/** What the prober needs; built once per Lambda container (or local daemon). */
export interface ProberDeps {
  catalog: Catalog;
  probe: SegmentProbe;
  control: SegmentControl;
  workflows: Workflows;
  telemetry: Telemetry;
  /** Epoch milliseconds. */
  clock: () => number;
  sleep: (ms: number) => Promise<void>;
}

/** What one round saw and did. */
export interface RoundReport {
  version: number;
  probes: number;
  probesFailed: number;
  decisions: Decision[];
  /** False when another writer changed the catalog first; the next round decides again. */
  written: boolean;
  durationMs: number;
  memory: ProberMemory;
}

/** Runs one probe round. Actions that fail are logged; the next round sees what is left to do. */
export async function runProbeRound(deps: ProberDeps, clusterId: string, settings: Settings): Promise<RoundReport> {
  const started = deps.clock();
  const snapshot = await deps.catalog.load(clusterId);
  const primaries = snapshot.segments.filter((r) => r.role === 'p');
  const probes = await deps.probe.probeAll(primaries, settings, snapshot.segments);
  const plan = decide(snapshot, probes, settings, new Date(deps.clock()));
  let written = true;
  if (plan.change) {
    try {
      await deps.catalog.apply(clusterId, snapshot.version, plan.change); // catalog first
    } catch (e) {
      if (!(e instanceof CatalogConflictError)) throw e;
      written = false;
      deps.telemetry.warn('catalog changed during the round; deciding again next round', { clusterId, version: snapshot.version });
    }
  }
  if (written) await act(deps, snapshot, plan);
  const report: RoundReport = {
    version: snapshot.version,
    probes: probes.length,
    probesFailed: probes.filter((p) => !p.ok).length,
    decisions: plan.decisions,
    written,
    durationMs: deps.clock() - started,
    memory: written ? plan.memory : snapshot.memory,
  };
  deps.telemetry.metric('RoundDurationMs', report.durationMs, 'Milliseconds');
  deps.telemetry.metric('ProbesFailed', report.probesFailed);
  deps.telemetry.metric('Decisions', plan.decisions.length);
  deps.telemetry.flush();
  return report;
}

/** Decisions that only raise an alarm: the metric each emits. */
const ALARM_METRICS: Partial<Record<Decision['kind'], MetricName>> = {
  'double-fault': 'DoubleFault',
  'content-unavailable': 'ContentUnavailable',
  'coordinator-unreachable': 'CoordinatorUnreachable',
  'probe-misconfigured': 'ProbeMisconfigured',
};

async function act(deps: ProberDeps, snapshot: ClusterSnapshot, plan: RoundPlan): Promise<void> {
  const row = (dbid: number): SegmentRow => snapshot.segments.find((r) => r.dbid === dbid)!;
  const mirrorOf = (content: number): SegmentRow | undefined => snapshot.segments.find((r) => r.content === content && r.role === 'm');
  const startPromotion = (content: number, failedPrimaryDbid: number, mirrorDbid: number, reason: string) =>
    deps.workflows.startPromotion({ clusterId: snapshot.clusterId, content, failedPrimaryDbid, mirrorDbid, catalogVersion: snapshot.version, reason });
  const { telemetry } = deps;
  await Promise.all(
    plan.decisions.map(async (d) => {
      const fields = { clusterId: snapshot.clusterId, content: d.content, decision: d.kind, reason: d.reason };
      try {
        switch (d.kind) {
          case 'mark-mirror-down':
          case 'sync-rep-off':
            telemetry.info(d.reason, fields);
            await deps.control.setSyncRep(row(d.primaryDbid), mirrorOf(d.content), false);
            break;
          case 'sync-rep-on':
            telemetry.info(d.reason, fields);
            await deps.control.setSyncRep(row(d.primaryDbid), row(d.mirrorDbid), true);
            break;
          case 'fail-over': {
            const started = await startPromotion(d.content, d.failedPrimaryDbid, d.mirrorDbid, d.reason);
            telemetry.metric('FailoversStarted', 1);
            telemetry.warn(d.reason, { ...fields, execution: started.executionName, started: started.started });
            break;
          }
          case 'promote-again': {
            const failed = snapshot.segments.find((r) => r.content === d.content && r.dbid !== d.dbid);
            const started = await startPromotion(d.content, failed?.dbid ?? d.dbid, d.dbid, d.reason);
            telemetry.warn(d.reason, { ...fields, execution: started.executionName });
            break;
          }
          default: {
            const alarm = ALARM_METRICS[d.kind];
            if (!alarm) {
              telemetry.info(d.reason, fields);
              break;
            }
            telemetry.metric(alarm, 1);
            telemetry.error(d.reason, fields);
          }
        }
      } catch (e) {
        telemetry.warn(`action failed, retried next round: ${(e as Error).message}`, fields);
      }
    }),
  );
}

/** Options of one prober invocation. */
export interface ProberRun {
  clusterId: string;
  /** Unique per invocation (the Lambda request id). */
  owner: string;
  /** Epoch ms by which the invocation must have released the lease. */
  deadline: number;
  /** Called after every round (local mode prints a timeline from it). */
  onRound?: (report: RoundReport) => void;
  /** Ends the invocation after the current round (local mode's `local down`, tests). */
  signal?: AbortSignal;
}

/** The lease outlives a slow round by a margin, so a live prober never loses it between renewals. */
export const leaseTtlMs = (settings: Settings): number => (worstCaseProbeSeconds(settings) + settings.probeIntervalSeconds + 10) * 1000;

/**
 * One scheduled invocation: wait for the lease (a previous invocation may still hold it
 * briefly), run rounds until the deadline, release. Returns the rounds run.
 */
export async function runProber(deps: ProberDeps, run: ProberRun): Promise<number> {
  let settings = await deps.catalog.loadSettings(run.clusterId);
  let lease: Lease | null = null;
  while (!lease && !run.signal?.aborted && deps.clock() + settings.probeIntervalSeconds * 1000 < run.deadline) {
    lease = await deps.catalog.acquireLease(run.clusterId, run.owner, leaseTtlMs(settings), deps.clock());
    if (!lease) await deps.sleep(settings.probeIntervalSeconds * 1000);
  }
  if (!lease) return 0;
  deps.telemetry.info('prober lease acquired', { clusterId: run.clusterId, owner: run.owner, token: lease.token });
  let rounds = 0;
  try {
    for (;;) {
      const started = deps.clock();
      let memory: ProberMemory | undefined;
      try {
        const report = await runProbeRound(deps, run.clusterId, settings);
        memory = report.memory;
        rounds += 1;
        run.onRound?.(report);
      } catch (e) {
        deps.telemetry.metric('ProberRoundFailed', 1);
        deps.telemetry.error(`probe round failed: ${(e as Error).message}`, { clusterId: run.clusterId });
      }
      lease = await deps.catalog.renewLease(lease, leaseTtlMs(settings), deps.clock(), memory);
      settings = await deps.catalog.loadSettings(run.clusterId);
      const next = started + settings.probeIntervalSeconds * 1000;
      if (next > run.deadline || run.signal?.aborted) break; // a round may end after the deadline: the next invocation waits for the lease
      await deps.sleep(Math.max(0, next - deps.clock()));
    }
  } catch (e) {
    if (e instanceof LeaseLostError) {
      deps.telemetry.warn('prober lease lost; stopping', { clusterId: run.clusterId, owner: run.owner });
      return rounds;
    }
    throw e;
  } finally {
    if (lease) await deps.catalog.releaseLease(lease).catch(() => undefined);
  }
  return rounds;
}
