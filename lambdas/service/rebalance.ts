/**
 * The steps of Rebalance (gprecoverseg -r): plan and hold, then per content a planned
 * switchover (one step: the write-unavailable window is one invocation) and the shared
 * rewind of the old primary into a mirror (./rebuild-steps.ts), then the summary.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { clusterStatusOf, historyText } from '../core/decide';
import { SwitchoverAbortedError, ValidationError } from '../core/errors';
import { compareLsn, lsnBytes, pairsByContent, type ClusterSnapshot, type SegmentRow } from '../core/model';
import { sameRow } from '../core/catalog-change';
import { rebalancePlan } from '../core/recovery';
import { REBALANCE_SPEC } from '../workflows/rebalance';
import { parseWorkflowInput } from '../workflows/spec';
import { checkHeld, holdOf, plannedBefore, rebuildItemSchema, rebuildSteps, summarize, type RebuildItem, type SkippedContent } from './rebuild-steps';
import { PROMOTE_TIMEOUT_MS, VERIFY_WRITE_TIMEOUT_MS } from './promotion';
import { applyFresh, stepRunner, type StepTable, type WorkflowDeps } from './steps';

/** How long the CHECKPOINT before the stop may take (it runs while the primary still serves). */
export const SWITCHOVER_CHECKPOINT_TIMEOUT_MS = 60_000;
/** Pause between two looks at the mirror's received position. */
const RECEIVE_POLL_MS = 20;

/** What `plan` returns. */
interface PlanResult extends Record<string, unknown> {
  switches: (RebuildItem & { maxReplayLagBytes: number | null })[];
  skipped: SkippedContent[];
  /** Contents asked for that are in their preferred roles already. */
  upToDate: number[];
  parallel: number;
  pollSeconds: number;
  stallSeconds: number;
  receiveSeconds: number;
}

const rowOf = (snapshot: ClusterSnapshot, dbid: number): SegmentRow | undefined => snapshot.segments.find((r) => r.dbid === dbid);

/** The replay lag of each out-of-place pair's mirror (of `contents`, when given), as its acting primary reports it. */
async function replayLags(deps: WorkflowDeps, snapshot: ClusterSnapshot, contents?: number[]): Promise<Record<number, number>> {
  const settings = { ...(await deps.catalog.loadSettings(snapshot.clusterId)), probeRetries: 0 };
  const lags: Record<number, number> = {};
  await Promise.all(
    pairsByContent(snapshot.segments)
      .filter((p) => p.primary && p.mirror && p.primary.role !== p.primary.preferredRole && (!contents || contents.includes(p.content)))
      .map(async ({ content, primary, mirror }) => {
        const probe = await deps.probe.probe(primary as SegmentRow, settings, mirror);
        if (probe.ok && !probe.inRecovery && probe.mirror.flushLsn && probe.mirror.replayLsn) lags[content] = Math.max(0, lsnBytes(probe.mirror.replayLsn, probe.mirror.flushLsn));
      }),
  );
  return lags;
}

/** Checks input and catalog, measures replay lags, plans with the core planner and holds every pair it will switch. */
async function plan(deps: WorkflowDeps, doc: unknown, execution: string): Promise<PlanResult> {
  const input = parseWorkflowInput(REBALANCE_SPEC, doc);
  const maxReplayLagBytes = input.replayLagMB === null ? null : Math.round(input.replayLagMB * 1024 * 1024);
  for (let attempt = 1; ; attempt++) {
    const snapshot = await deps.catalog.load(input.clusterId);
    if (input.catalogVersion !== undefined && input.catalogVersion > snapshot.version) {
      throw new ValidationError(`catalogVersion ${input.catalogVersion} is newer than the catalog of cluster ${snapshot.clusterId} (version ${snapshot.version})`);
    }
    if (input.contents) {
      const unknown = input.contents.filter((c) => !snapshot.segments.some((r) => r.content === c));
      if (unknown.length) throw new ValidationError(`content ${unknown.join(', ')} is not in the catalog of cluster ${snapshot.clusterId}`);
    }
    const again = plannedBefore(snapshot, execution, switchItemSchema);
    if (again) return { switches: again, skipped: [], upToDate: [], parallel: input.parallel, pollSeconds: input.pollSeconds, stallSeconds: input.stallSeconds, receiveSeconds: input.receiveSeconds };
    const now = deps.now();
    const lags = await replayLags(deps, snapshot, input.contents);
    const planned = rebalancePlan(snapshot, { ...(maxReplayLagBytes !== null ? { maxReplayLagBytes } : {}), lags }, { now, execution });
    const wanted = (content: number) => !input.contents || input.contents.includes(content);
    const switches = planned.switches.filter((s) => wanted(s.content));
    const skipped = [...planned.refused, ...planned.skipped].filter((s) => wanted(s.content));
    const upToDate = (input.contents ?? []).filter((content) => !switches.some((s) => s.content === content) && !skipped.some((s) => s.content === content));
    const result: PlanResult = {
      switches: switches.map((s) => ({ content: s.content, dbid: s.primaryDbid, sourceDbid: s.mirrorDbid, method: 'rewind' as const, maxReplayLagBytes })),
      skipped,
      upToDate,
      parallel: input.parallel,
      pollSeconds: input.pollSeconds,
      stallSeconds: input.stallSeconds,
      receiveSeconds: input.receiveSeconds,
    };
    if (!switches.length) return result;
    try {
      await deps.catalog.apply(input.clusterId, snapshot.version, {
        rows: [],
        history: switches.map((s) => ({ time: now.toISOString(), dbid: s.mirrorDbid, description: `FTS: gprecoverseg -r (${execution}) holds content ${s.content} to switch dbid ${s.mirrorDbid} back to primary${s.replayLagBytes !== undefined ? ` (replay lag ${s.replayLagBytes} bytes)` : ''}` })),
        setOperations: result.switches.map((item) => holdOf('rebalance', item.content, execution, now, item)),
      });
      return result;
    } catch (e) {
      if ((e as Error).name !== 'CatalogConflictError' || attempt >= 5) throw e;
    }
  }
}

const switchItemSchema = rebuildItemSchema.extend({ maxReplayLagBytes: z.number().nullable() });

const switchDocSchema = z.object({
  clusterId: z.string().min(1),
  /** Seconds the mirror may take to show it received the shutdown checkpoint. */
  receiveSeconds: z.number().min(0.1).max(60),
  item: switchItemSchema,
});

/**
 * A planned switchover of one pair, losing no commit: with the pair in sync every
 * acknowledged commit is on the mirror; a CHECKPOINT while the primary still serves
 * shortens its stop; a fast stop ends with the shutdown checkpoint, which the mirror must
 * have received; the old primary is fenced (its next start is a standby; nothing of it
 * may run); then catalog first (old primary `m/d/n`, mirror `p/u/n`, written against a
 * fresh read and only if the content is still held by this execution and both rows are as
 * they were), promote, check it writes. Anything that goes wrong after the stop and
 * before the flip is written starts the old primary again as the primary and throws
 * SwitchoverAbortedError: nothing changed. Re-run after the flip, it completes the
 * promotion without stopping anything again.
 */
async function switchOver(deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> {
  const parsed = switchDocSchema.safeParse(doc);
  if (!parsed.success) throw new ValidationError(`invalid switchover document: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const { clusterId, item, receiveSeconds } = parsed.data;
  const snapshot = await deps.catalog.load(clusterId);
  checkHeld(snapshot, item.content, execution, deps.now());
  const old = rowOf(snapshot, item.dbid);
  const mirror = rowOf(snapshot, item.sourceDbid);
  if (!old || !mirror || old.content !== item.content || mirror.content !== item.content) throw new ValidationError(`dbids ${item.dbid} and ${item.sourceDbid} are not the pair of content ${item.content}`);
  if (mirror.role === 'p' && old.role === 'm') {
    // Flipped by an earlier run of this step: the old primary's next start must be a standby, then finish the promotion.
    await deps.host.writeMirrorConfig(old, mirror);
    await deps.control.promote(mirror, PROMOTE_TIMEOUT_MS);
    await deps.control.verifyWritable(mirror, VERIFY_WRITE_TIMEOUT_MS);
    return { alreadyFlipped: true };
  }
  const inSync = (r: SegmentRow) => r.status === 'u' && r.mode === 's';
  if (!(old.role === 'p' && mirror.role === 'm' && inSync(old) && inSync(mirror))) {
    throw new SwitchoverAbortedError(`content ${item.content} is no longer an in-sync pair (dbid ${old.dbid} ${old.role}/${old.status}/${old.mode}, dbid ${mirror.dbid} ${mirror.role}/${mirror.status}/${mirror.mode}): not switched`);
  }
  // Greenplum's guard, again right before the switch: the mirror must not have much WAL left to replay.
  const settings = { ...(await deps.catalog.loadSettings(clusterId)), probeRetries: 0 };
  const probe = await deps.probe.probe(old, settings, mirror);
  if (!probe.ok || probe.inRecovery) throw new SwitchoverAbortedError(`acting primary dbid ${old.dbid} does not answer as a primary (${probe.ok ? 'in recovery' : probe.kind}): not switched`);
  if (probe.mirror.state !== 'streaming' || probe.mirror.syncState !== 'sync') {
    throw new SwitchoverAbortedError(`mirror dbid ${mirror.dbid} is not the streaming synchronous standby (${probe.mirror.state}, ${probe.mirror.syncState}): not switched`);
  }
  const lag = probe.mirror.flushLsn && probe.mirror.replayLsn ? Math.max(0, lsnBytes(probe.mirror.replayLsn, probe.mirror.flushLsn)) : undefined;
  if (item.maxReplayLagBytes !== null && lag === undefined) throw new SwitchoverAbortedError(`the replay lag of mirror dbid ${mirror.dbid} is unknown and a limit of ${item.maxReplayLagBytes} bytes is set (--replay-lag): not switched`);
  if (item.maxReplayLagBytes !== null && lag !== undefined && lag > item.maxReplayLagBytes) {
    throw new SwitchoverAbortedError(`mirror dbid ${mirror.dbid} has ${lag} bytes of WAL to replay, more than the ${item.maxReplayLagBytes} allowed (--replay-lag): not switched`);
  }
  await deps.control.checkpoint(old, SWITCHOVER_CHECKPOINT_TIMEOUT_MS);

  const clock = (): number => deps.now().getTime();
  const stoppedAt = clock();
  let flipped = false;
  let checkpointLsn: string | undefined;
  let received: string | undefined;
  const demoted: SegmentRow = { ...old, role: 'm', status: 'd', mode: 'n' };
  const promoted: SegmentRow = { ...mirror, role: 'p', status: 'u', mode: 'n' };
  try {
    const stop = await deps.host.stop(old, 'fast');
    if (!stop.latestCheckpointLsn || stop.clusterState !== 'shut down') throw new SwitchoverAbortedError(`dbid ${old.dbid} did not shut down cleanly (${stop.clusterState ?? 'no control data'})`);
    checkpointLsn = stop.latestCheckpointLsn;
    for (const deadline = clock() + receiveSeconds * 1000; ; await (deps.sleep ?? sleep)(RECEIVE_POLL_MS)) {
      received = (await deps.control.walReceiver(mirror).catch(() => undefined))?.receivedLsn;
      if (received && compareLsn(received, checkpointLsn) > 0) break;
      if (clock() > deadline) throw new SwitchoverAbortedError(`mirror dbid ${mirror.dbid} received WAL up to ${received ?? 'nothing'}, not past the shutdown checkpoint ${checkpointLsn} of dbid ${old.dbid}, within ${receiveSeconds} s`);
    }
    // Its next start must be a standby of the new primary, and nothing may run in its
    // directory now: a start by hand since the stop could have taken commits the mirror
    // lacks (then it serves on as the primary). The fence does both, and says which.
    const fenced = await deps.host.fence(old, mirror);
    if (fenced.wasRunning) throw new SwitchoverAbortedError(`dbid ${old.dbid} ran again during the switchover, started by someone else (it may hold commits its mirror lacks)`);
    const lsn = checkpointLsn;
    await applyFresh(deps.catalog, clusterId, (s) => {
      const now = deps.now();
      const [o, m] = [rowOf(s, old.dbid), rowOf(s, mirror.dbid)];
      // Written by an earlier try of this very write whose answer was lost.
      if (o && m && sameRow(o, demoted) && sameRow(m, promoted)) return null;
      checkHeld(s, item.content, execution, now);
      if (!o || !m || !sameRow(o, old) || !sameRow(m, mirror)) throw new SwitchoverAbortedError(`the rows of content ${item.content} changed during the switchover: not flipped`);
      const after = s.segments.map((r) => (r.dbid === demoted.dbid ? demoted : r.dbid === promoted.dbid ? promoted : r));
      return {
        rows: [demoted, promoted],
        history: [
          { time: now.toISOString(), dbid: demoted.dbid, description: historyText(demoted, `gprecoverseg -r: stopped cleanly for a planned switchover (shutdown checkpoint ${lsn}, received by dbid ${promoted.dbid})`) },
          { time: now.toISOString(), dbid: promoted.dbid, description: historyText(promoted, 'gprecoverseg -r: back to its preferred role of primary') },
        ],
        status: clusterStatusOf(after),
      };
    });
    flipped = true;
  } catch (e) {
    if (flipped) throw e;
    // Not flipped: the catalog still names the old primary, so it must serve again.
    const why = e instanceof SwitchoverAbortedError ? e.message : `${(e as Error).name}: ${(e as Error).message}`;
    try {
      await deps.host.start(old, { asPrimary: true });
    } catch (startError) {
      throw new SwitchoverAbortedError(`${why}; starting dbid ${old.dbid} again FAILED (${(startError as Error).message}): the content has no running primary until it is started or failed over`);
    }
    throw new SwitchoverAbortedError(`${why}; dbid ${old.dbid} was started again as the acting primary: nothing changed`);
  }
  const flippedAt = clock();
  await deps.control.promote(promoted, PROMOTE_TIMEOUT_MS);
  await deps.control.verifyWritable(promoted, VERIFY_WRITE_TIMEOUT_MS);
  const writableAt = clock();
  deps.telemetry.info(`gprecoverseg -r: dbid ${promoted.dbid} is the acting primary of content ${item.content} again`, { content: item.content, writeGapMs: writableAt - stoppedAt });
  return { checkpointLsn, receivedLsn: received, replayLagBytes: lag, writeGapMs: writableAt - stoppedAt, flipMs: flippedAt - stoppedAt };
}

const TABLE: StepTable<WorkflowDeps> = {
  plan,
  'switch-over': switchOver,
  ...rebuildSteps('gprecoverseg -r', 'rebalance'),
  summarize: async (deps, doc, execution) => {
    const d = doc as { plan?: PlanResult };
    return summarize(deps, doc, execution, { verb: 'switched back to their preferred roles', skipped: d.plan?.skipped ?? [], upToDate: d.plan?.upToDate });
  },
};

const run = stepRunner(REBALANCE_SPEC, TABLE);

/** Runs the step a Task state names (the Lambda and local mode both call this). */
export async function runRebalanceStepEvent(deps: WorkflowDeps, event: { step?: unknown; input?: unknown; execution?: unknown }): Promise<Record<string, unknown>> {
  return run(deps, event);
}
