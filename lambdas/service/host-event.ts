/**
 * EC2 says a host is going away (an "EC2 Instance State-change Notification" with state
 * `stopping`, `stopped`, `shutting-down` or `terminated`): the acting primaries on it are
 * probed at once, and decided on, instead of at the prober's next round after its retries.
 *
 * Design: this runs beside the prober and never takes its lease, so it writes nothing to
 * the catalog. The prober holds the lease for its whole invocation (renewing it every
 * round), so "taking it briefly" would mean waiting for the next handover, and a second
 * catalog writer would need a second lease discipline. What does not need the lease is
 * starting a workflow: PromoteMirror (and ActivateStandby) may be started by anyone
 * (`ftsctl workflow run` does), check their input against the catalog, confirm the
 * failure with the mirror's second opinion, fence, and flip the catalog under its version.
 * So for each content whose acting primary is on the instance:
 *
 * 1. one probe of the primary, without retries: the EC2 event is the confirmation the
 *    retries would wait for (a host that vanished answers nothing, and each retry of a
 *    probe that times out costs `probeTimeoutSeconds`);
 * 2. the prober's own per-content decision, `decide(snapshot, probes, settings, now,
 *    content)`, on the catalog and on the prober's memory as it stored it with its lease
 *    (at most one round old), so the attempt numbering is the prober's;
 * 3. for `fail-over` (or `activate-standby`, with `autoActivateStandby`): wait until the
 *    mirror's second opinion can count (SECOND_OPINION_FRESH_SECONDS after the state
 *    change: a mirror that heard from its primary less than that ago makes the workflow
 *    abort), read the catalog again, decide again on the same probe, and start the
 *    workflow with the input the prober would send. The execution name is derived from
 *    the input (cluster, content, catalog version, attempt), so when the prober decides
 *    the same failure it starts the same execution: a no-op, never a second failover.
 *
 * Everything else a decision may call for (marking a mirror on the host down, turning
 * synchronous replication off, fences, history rows) is a catalog write and stays the
 * prober's, at its next round.
 */
import { z } from 'zod';
import { decide, SECOND_OPINION_FRESH_SECONDS, type Decision } from '../core/decide';
import { ClusterNotFoundError, ValidationError } from '../core/errors';
import { pairsByContent, type ClusterSnapshot, type SegmentRow } from '../core/model';
import type { ProbeResult } from '../core/probe';
import type { Settings } from '../core/settings';
import type { Catalog } from '../ports/catalog';
import type { SegmentProbe } from '../ports/segments';
import type { Telemetry } from '../ports/telemetry';
import type { StartedExecution, Workflows } from '../ports/workflows';

/** EC2 instance states that mean the host is going away (the EventBridge rule matches these). */
export const HOST_LOST_STATES = ['stopping', 'stopped', 'shutting-down', 'terminated'] as const;
/** `detail-type` of the EC2 events. */
export const EC2_STATE_CHANGE_DETAIL_TYPE = 'EC2 Instance State-change Notification';
/** A workflow is started this long after the state change at the earliest: the mirror's second opinion must be able to count. */
export const SECOND_OPINION_WAIT_MS = (SECOND_OPINION_FRESH_SECONDS + 1) * 1000;

const eventSchema = z.looseObject({
  source: z.literal('aws.ec2'),
  'detail-type': z.literal(EC2_STATE_CHANGE_DETAIL_TYPE),
  /** When the state changed (ISO 8601, second precision). */
  time: z.string().optional(),
  detail: z.looseObject({ 'instance-id': z.string().regex(/^i-[0-9a-f]{8,17}$/), state: z.string().min(1) }),
});

/** The part of an EC2 state-change event FTS reads. */
export interface HostEvent {
  instanceId: string;
  /** The instance's new state. */
  state: string;
  /** Epoch ms of the state change (the event's `time`), or when the event was read. */
  at: number;
}

/** Parses an EventBridge EC2 state-change event; ValidationError for anything else. */
export function parseHostEvent(event: unknown, now: number): HostEvent {
  const parsed = eventSchema.safeParse(event);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`);
    throw new ValidationError(`not an EC2 instance state-change event: ${issues.join('; ')}`, issues);
  }
  const time = parsed.data.time === undefined ? NaN : Date.parse(parsed.data.time);
  return { instanceId: parsed.data.detail['instance-id'], state: parsed.data.detail.state, at: Number.isFinite(time) ? time : now };
}

/** What the host-event handler needs. */
export interface HostEventDeps {
  catalog: Catalog;
  probe: SegmentProbe;
  workflows: Workflows;
  telemetry: Telemetry;
  /** Epoch milliseconds. */
  clock: () => number;
  sleep: (ms: number) => Promise<void>;
}

/** What happened to one content with a row on the instance. */
export interface HostContentReport {
  content: number;
  /** The rows of the content on the instance. */
  dbids: number[];
  /**
   * `started`: a workflow was started (or its execution already existed); `decided`: the
   * decision needs nothing this function may do (the prober acts on it); `left-to-prober`:
   * only a mirror or a row marked down is on the instance; `failed`: the probe, decision
   * or start threw (the prober still handles the content at its next round).
   */
  outcome: 'started' | 'decided' | 'left-to-prober' | 'failed';
  /** The primary's probe, when one was made. */
  probe?: ProbeResult;
  /** Kinds of the decisions made for the content. */
  decisions: Decision['kind'][];
  execution?: StartedExecution & { workflow: 'PromoteMirror' | 'ActivateStandby' };
  reason: string;
}

/** What one event led to. */
export interface HostEventReport {
  instanceId: string;
  state: string;
  /** Why nothing was looked at (a state that is no loss, a cluster not in the catalog, an instance no row names). */
  ignored?: string;
  contents: HostContentReport[];
}

/**
 * Handles one EC2 state change for the cluster: finds the rows on the instance and, for
 * each content whose acting primary is there, probes, decides and starts the failover
 * (see the module comment). Never writes the catalog.
 */
export async function handleHostEvent(deps: HostEventDeps, clusterId: string, event: HostEvent): Promise<HostEventReport> {
  const report: HostEventReport = { instanceId: event.instanceId, state: event.state, contents: [] };
  const fields = { clusterId, instanceId: event.instanceId, state: event.state };
  if (!(HOST_LOST_STATES as readonly string[]).includes(event.state)) return ignore(deps, report, `state ${event.state} is not a loss of the host`, fields);
  let snapshot: ClusterSnapshot;
  try {
    snapshot = await deps.catalog.load(clusterId);
  } catch (e) {
    if (e instanceof ClusterNotFoundError) return ignore(deps, report, `cluster ${clusterId} is not in the catalog`, fields);
    throw e;
  }
  const onHost = snapshot.segments.filter((r) => r.instanceId === event.instanceId);
  // Every instance of the account and region sends these events: most are not the cluster's.
  if (!onHost.length) return ignore(deps, report, `no row of cluster ${clusterId} names instance ${event.instanceId}`, fields);
  deps.telemetry.warn(`EC2 instance ${event.instanceId} is ${event.state}: it holds dbid ${onHost.map((r) => r.dbid).join(', ')}`, fields);
  const settings = await deps.catalog.loadSettings(clusterId);
  const contents = [...new Set(onHost.map((r) => r.content))].sort((a, b) => a - b);
  report.contents = await Promise.all(
    contents.map((content) =>
      handleContent(deps, clusterId, event, snapshot, settings, content, onHost.filter((r) => r.content === content)).catch(
        (e: unknown): HostContentReport => ({ content, dbids: onHost.filter((r) => r.content === content).map((r) => r.dbid), outcome: 'failed', decisions: [], reason: (e as Error).message }),
      ),
    ),
  );
  for (const c of report.contents) {
    const level = c.outcome === 'failed' ? 'error' : c.outcome === 'started' ? 'warn' : 'info';
    deps.telemetry[level](`content ${c.content} (${c.outcome}): ${c.reason}`, { ...fields, content: c.content, dbids: c.dbids, decisions: c.decisions, ...(c.execution ? { execution: c.execution.executionName, started: c.execution.started } : {}) });
  }
  return report;
}

function ignore(deps: HostEventDeps, report: HostEventReport, why: string, fields: Record<string, unknown>): HostEventReport {
  deps.telemetry.info(`EC2 event ignored: ${why}`, fields);
  return { ...report, ignored: why };
}

/** One content with rows on the instance. */
async function handleContent(
  deps: HostEventDeps,
  clusterId: string,
  event: HostEvent,
  snapshot: ClusterSnapshot,
  settings: Settings,
  content: number,
  rows: SegmentRow[],
): Promise<HostContentReport> {
  const dbids = rows.map((r) => r.dbid);
  const pair = pairsByContent(snapshot.segments).find((p) => p.content === content);
  const primary = pair?.primary;
  if (!primary || !rows.some((r) => r.dbid === primary.dbid) || primary.status !== 'u') {
    return {
      content,
      dbids,
      outcome: 'left-to-prober',
      decisions: [],
      reason: `no acting primary that is up is on the instance (dbid ${dbids.join(', ')}): what follows (a mirror marked down, sync rep off) is a catalog write, the prober's under its lease`,
    };
  }
  // One attempt: the EC2 event is the confirmation the retries would wait for.
  const probe = await deps.probe.probe(primary, { ...settings, probeRetries: 0 }, pair.mirror, { writeCheck: true });
  const first = decide(snapshot, [probe], settings, new Date(deps.clock()), content);
  const startable = (plan: { decisions: Decision[] }) => plan.decisions.find((d) => d.kind === 'fail-over' || d.kind === 'activate-standby');
  if (!startable(first)) {
    return {
      content,
      dbids,
      outcome: 'decided',
      probe,
      decisions: first.decisions.map((d) => d.kind),
      reason: first.decisions.length ? `nothing to start: ${first.decisions.map((d) => d.reason).join('; ')}` : `primary dbid ${primary.dbid} answers: nothing to decide yet`,
    };
  }
  // A mirror that heard from its primary less than SECOND_OPINION_FRESH_SECONDS ago makes the workflow abort: start after that.
  const wait = event.at + SECOND_OPINION_WAIT_MS - deps.clock();
  if (wait > 0) await deps.sleep(wait);
  // The prober may have acted meanwhile (its memory then says so): decide again on the catalog as it is now.
  const again = decide(await deps.catalog.load(clusterId), [probe], settings, new Date(deps.clock()), content);
  const decision = startable(again);
  const decisions = again.decisions.map((d) => d.kind);
  if (decision?.kind === 'fail-over') {
    const started = await deps.workflows.start('PromoteMirror', {
      clusterId,
      catalogVersion: decision.attempt.version,
      content: decision.content,
      failedPrimaryDbid: decision.failedPrimaryDbid,
      mirrorDbid: decision.mirrorDbid,
      failure: decision.failure,
      attempt: decision.attempt.attempt,
      reason: `EC2 instance ${event.instanceId} ${event.state}: ${decision.reason}`,
    });
    if (started.started) deps.telemetry.metric('FailoversStarted', 1);
    return { content, dbids, outcome: 'started', probe, decisions, execution: { ...started, workflow: 'PromoteMirror' }, reason: decision.reason };
  }
  if (decision?.kind === 'activate-standby') {
    const started = await deps.workflows.start('ActivateStandby', {
      clusterId,
      catalogVersion: decision.attempt.version,
      standbyDbid: decision.standbyDbid,
      automatic: true,
      attempt: decision.attempt.attempt,
      reason: `EC2 instance ${event.instanceId} ${event.state}: ${decision.reason}`,
    });
    if (started.started) deps.telemetry.metric('StandbyActivationsStarted', 1);
    return { content, dbids, outcome: 'started', probe, decisions, execution: { ...started, workflow: 'ActivateStandby' }, reason: decision.reason };
  }
  return { content, dbids, outcome: 'decided', probe, decisions, reason: `decided again after the wait, nothing to start: ${again.decisions.map((d) => d.reason).join('; ') || 'no decision'}` };
}
