/**
 * The steps of the PromoteMirror workflow. Each step is idempotent and re-reads the
 * catalog, so Step Functions can retry any of them after a crash; the catalog is
 * written before the action it describes.
 */
import { PROMOTE_MIRROR_SPEC, promoteMirrorInputSchema, type PromoteMirrorInput } from '../workflows/promote-mirror';
import { parseWorkflowInput } from '../workflows/spec';
import { applyFresh, errorCause, pickInput, stepRunner, type StepTable, type WorkflowDeps } from './steps';
import { COORDINATOR_CONTENT, type ClusterSnapshot, type PendingFence, type SegmentRow } from '../core/model';
import { planFailover, SECOND_OPINION_FRESH_SECONDS } from '../core/decide';
import { describeOperation, liveOperation } from '../core/operations';
import type { Settings } from '../core/settings';
import { ContentBusyError, MirrorNotPromotableError, PrimaryAliveError, ValidationError, WrongInstanceError } from '../core/errors';

export { SECOND_OPINION_FRESH_SECONDS };
/** How long promotion (pg_promote) may take before the step fails and is retried. */
export const PROMOTE_TIMEOUT_MS = 30_000;
/** How long the write check on the promoted mirror may take. */
export const VERIFY_WRITE_TIMEOUT_MS = 10_000;

/** What the steps need. */
export type PromotionDeps = WorkflowDeps;

/** The step names, as the state machine's payloads carry them, in workflow order. */
export const PROMOTE_STEPS = [
  'validate',
  'confirm-failure',
  'fence-old-primary',
  'flip-catalog',
  'promote',
  'verify-writable',
  'clear-pending',
  'notify',
  'record-abort',
  'record-failure',
] as const;
export type PromoteStep = (typeof PROMOTE_STEPS)[number];

const PROMOTE_STEP_TABLE: StepTable<PromotionDeps> = Object.fromEntries(PROMOTE_STEPS.map((step) => [step, (deps: PromotionDeps, doc: unknown) => runPromoteStep(deps, step, doc)]));
const runPromote = stepRunner(PROMOTE_MIRROR_SPEC, PROMOTE_STEP_TABLE);

/** Runs the step a Task state names in its payload `{"step", "input"}` (the Lambda and local mode both call this). */
export async function runPromoteStepEvent(deps: PromotionDeps, event: { step?: unknown; input?: unknown; execution?: unknown }): Promise<Record<string, unknown>> {
  return runPromote(deps, event);
}

/** Parses workflow input; ValidationError names every problem. */
export function parsePromoteInput(input: unknown): PromoteMirrorInput {
  return parseWorkflowInput(PROMOTE_MIRROR_SPEC, input);
}

function rowOf(snapshot: ClusterSnapshot, dbid: number, content: number): SegmentRow {
  const row = snapshot.segments.find((r) => r.dbid === dbid);
  if (!row || row.content !== content) throw new ValidationError(`dbid ${dbid} is not an instance of content ${content} in cluster ${snapshot.clusterId}`);
  return row;
}

/**
 * True once the catalog records this very promotion: the mirror is the acting primary
 * and the pending marker names the same pair. A mirror that is the acting primary for
 * another reason (an earlier, finished failover; dbids swapped in the input) is not.
 */
const flipped = (snapshot: ClusterSnapshot, input: PromoteMirrorInput): boolean =>
  rowOf(snapshot, input.mirrorDbid, input.content).role === 'p' &&
  snapshot.pendingPromotions.some((p) => p.content === input.content && p.mirrorDbid === input.mirrorDbid && p.failedPrimaryDbid === input.failedPrimaryDbid);

/**
 * Checks the input against the catalog, whoever sent it (prober, console, CLI): both
 * dbids are rows of the content, and either the failed primary is the acting primary
 * and the mirror its mirror, or this very promotion is already recorded. Anything else
 * (swapped dbids, a finished failover, a version from the future) is a ValidationError.
 */
function checkAgainstCatalog(snapshot: ClusterSnapshot, input: PromoteMirrorInput): void {
  if (input.content === COORDINATOR_CONTENT) throw new ValidationError('content -1 is the coordinator: PromoteMirror never promotes its standby (that is ActivateStandby)');
  if (input.catalogVersion > snapshot.version) {
    throw new ValidationError(`catalogVersion ${input.catalogVersion} is newer than the catalog of cluster ${snapshot.clusterId} (version ${snapshot.version})`);
  }
  const failed = rowOf(snapshot, input.failedPrimaryDbid, input.content);
  const mirror = rowOf(snapshot, input.mirrorDbid, input.content);
  if (failed.role === 'p' && mirror.role === 'm') return;
  if (flipped(snapshot, input)) return;
  const acting = snapshot.segments.find((r) => r.content === input.content && r.role === 'p');
  throw new ValidationError(
    `failedPrimaryDbid ${failed.dbid} is not the acting primary of content ${input.content} (the catalog names dbid ${acting?.dbid ?? 'none'}) and no promotion of dbid ${mirror.dbid} is pending: nothing to promote`,
  );
}

/**
 * Confirms the primary has failed, the way its failure kind calls for; throws
 * PrimaryAliveError (abort) when it has not, WrongInstanceError when the address answers
 * with another instance (its real state is unknown).
 */
async function confirmPrimaryFailed(deps: PromotionDeps, input: PromoteMirrorInput, settings: Settings, primary: SegmentRow, mirror: SegmentRow): Promise<Record<string, unknown>> {
  const once = { ...settings, probeRetries: 0 };
  const probe = await deps.probe.probe(primary, once, mirror, { writeCheck: input.failure === 'disk' });
  if (!probe.ok && probe.kind === 'wrong-instance') throw new WrongInstanceError(`the primary's address answers as another instance: ${probe.message}; not failing over`);
  if (!probe.ok && probe.kind === 'too-many-connections') throw new PrimaryAliveError(`primary dbid ${primary.dbid} of content ${input.content} answers (out of connection slots); no failover`);
  const receiver = await deps.control.walReceiver(mirror); // checks the mirror's identity
  if (!receiver.inRecovery) throw new MirrorNotPromotableError(`mirror dbid ${mirror.dbid} is not in recovery: it is not a mirror any more`);
  const seen = { probe: probe.ok ? (probe.inRecovery ? 'in recovery' : 'answers') : probe.kind, mirrorReceiver: receiver.state };
  // Alive but failing to write with an I/O error: the mirror streaming from it proves nothing. A
  // write that merely timed out gets the second opinion like an unreachable primary.
  if (input.failure === 'disk' && !probe.ok && probe.kind === 'disk' && probe.diskError === 'io') return seen;
  if (input.failure === 'reset-loop') {
    const lastReset = probe.ok && probe.initializedAt ? (deps.now().getTime() - Date.parse(probe.initializedAt)) / 1000 : 0;
    if (probe.ok && !probe.inRecovery && lastReset >= settings.resetLoopWindowSeconds) {
      throw new PrimaryAliveError(`primary dbid ${primary.dbid} of content ${input.content} has not reset for ${lastReset.toFixed(0)} s; no failover`);
    }
    return seen;
  }
  if (probe.ok && !probe.inRecovery) throw new PrimaryAliveError(`primary dbid ${primary.dbid} of content ${input.content} answers again${input.failure === 'disk' ? ' and writes' : ''}; no failover`);
  // The mirror's own clock says how long ago it heard from the primary (no skew between hosts).
  const heardAgo = receiver.heardSecondsAgo ?? (receiver.lastMessageAt === undefined ? Infinity : (deps.now().getTime() - receiver.lastMessageAt) / 1000);
  if (receiver.state === 'streaming' && heardAgo < SECOND_OPINION_FRESH_SECONDS) {
    throw new PrimaryAliveError(
      `mirror dbid ${mirror.dbid} still streams from primary dbid ${primary.dbid} (last message ${heardAgo.toFixed(1)} s ago): the primary is alive but unreachable from the prober; no failover`,
    );
  }
  return seen;
}

/** Runs one step; the workflow's state document (input plus earlier results) is `doc`. */
export async function runPromoteStep(deps: PromotionDeps, step: PromoteStep, doc: unknown): Promise<Record<string, unknown>> {
  // The first step sees the input as sent and rejects unknown keys; later ones also carry results.
  const input = parsePromoteInput(step === 'validate' ? doc : pickInput(doc, INPUT_KEYS));
  const { catalog, telemetry } = deps;
  const fields = { clusterId: input.clusterId, content: input.content, mirrorDbid: input.mirrorDbid, step };
  switch (step) {
    case 'validate': {
      checkAgainstCatalog(await catalog.load(input.clusterId), input);
      return { valid: true };
    }
    case 'confirm-failure': {
      const snapshot = await catalog.load(input.clusterId);
      checkAgainstCatalog(snapshot, input);
      if (flipped(snapshot, input)) return { alreadyFlipped: true, version: snapshot.version };
      // Eligibility first: never promote an out-of-sync mirror, whatever the probes say.
      planFailover(snapshot, input.content, input.failedPrimaryDbid, input.mirrorDbid, deps.now());
      const settings = await catalog.loadSettings(input.clusterId);
      const seen = await confirmPrimaryFailed(deps, input, settings, rowOf(snapshot, input.failedPrimaryDbid, input.content), rowOf(snapshot, input.mirrorDbid, input.content));
      return { alreadyFlipped: false, version: snapshot.version, ...seen };
    }
    case 'flip-catalog': {
      const snapshot = await catalog.load(input.clusterId);
      if (flipped(snapshot, input)) return { version: snapshot.version, written: false };
      // A fence done by the step before needs no fence owed; any other stays owed with the flip.
      const fenced = (doc as { fenceOldPrimary?: { fenced?: unknown } }).fenceOldPrimary?.fenced === true;
      const change = planFailover(snapshot, input.content, input.failedPrimaryDbid, input.mirrorDbid, deps.now(), { fenced });
      const version = await catalog.apply(input.clusterId, snapshot.version, change);
      telemetry.info('catalog flipped', { ...fields, version });
      return { version, written: true };
    }
    case 'fence-old-primary': {
      const snapshot = await catalog.load(input.clusterId);
      // An operator workflow that took the content after ConfirmFailure (a rebalance stopping
      // this primary on purpose) owns it now: fencing its primary would leave it without one.
      const operation = liveOperation(snapshot, input.content, deps.now());
      if (operation) throw new ContentBusyError(`content ${input.content} is held by ${describeOperation(operation)}: not fencing dbid ${input.failedPrimaryDbid}`);
      const target = rowOf(snapshot, input.failedPrimaryDbid, input.content);
      const newPrimary = rowOf(snapshot, input.mirrorDbid, input.content);
      // Catalog first: the fence is owed before it is attempted, so a crash here leaves it to the prober.
      let fence = snapshot.pendingFences.find((f) => f.dbid === target.dbid);
      if (!fence) {
        if (flipped(snapshot, input)) return { fenced: false, owed: false }; // fenced and cleared by an earlier run
        fence = { dbid: target.dbid, content: input.content, newPrimaryDbid: newPrimary.dbid, since: deps.now().toISOString(), reason: `failing over to dbid ${newPrimary.dbid}` };
        const owed: PendingFence = fence;
        await applyFresh(catalog, input.clusterId, (s) => (s.pendingFences.some((f) => f.dbid === owed.dbid) ? null : { rows: [], history: [], setFences: [owed] }));
      }
      try {
        const report = await deps.host.fence(target, newPrimary);
        telemetry.info('old primary fenced', { ...fields, ...report });
        const done = fence;
        await applyFresh(catalog, input.clusterId, (s) =>
          s.pendingFences.some((f) => f.dbid === target.dbid)
            ? {
                rows: [],
                history: [{ time: deps.now().toISOString(), dbid: target.dbid, description: `FTS: dbid ${target.dbid} with contentid ${input.content} fenced (stopped; a restart comes up read-only): ${done.reason}` }],
                clearFences: [target.dbid],
              }
            : null,
        );
        return { fenced: true, ...report };
      } catch (e) {
        // The promotion goes on: the fence stays owed in the catalog and the prober carries it out when the host answers.
        const cause = `${(e as Error).name}: ${(e as Error).message}`;
        telemetry.metric('FencePending', 1);
        telemetry.error('fence of the old primary failed; it stays pending', { ...fields, cause });
        return { fenced: false, owed: true, cause };
      }
    }
    case 'promote': {
      const snapshot = await catalog.load(input.clusterId);
      const mirror = rowOf(snapshot, input.mirrorDbid, input.content);
      if (!flipped(snapshot, input)) {
        throw new MirrorNotPromotableError(`the catalog does not record the promotion of dbid ${mirror.dbid} to acting primary of content ${input.content}; refusing to promote`);
      }
      await deps.control.promote(mirror, PROMOTE_TIMEOUT_MS);
      telemetry.info('mirror promoted', fields);
      return { promotedAt: deps.now().toISOString() };
    }
    case 'verify-writable': {
      const snapshot = await catalog.load(input.clusterId);
      await deps.control.verifyWritable(rowOf(snapshot, input.mirrorDbid, input.content), VERIFY_WRITE_TIMEOUT_MS);
      telemetry.info('new primary accepts writes', fields);
      return { writableAt: deps.now().toISOString() };
    }
    case 'clear-pending': {
      const snapshot = await catalog.load(input.clusterId);
      if (!snapshot.pendingPromotions.some((p) => p.content === input.content)) return { cleared: false };
      const version = await catalog.apply(input.clusterId, snapshot.version, {
        rows: [],
        history: [{ time: deps.now().toISOString(), dbid: input.mirrorDbid, description: `FTS: promotion of dbid ${input.mirrorDbid} to acting primary of content ${input.content} complete` }],
        clearPending: [input.content],
      });
      return { cleared: true, version };
    }
    case 'notify': {
      telemetry.metric('PromotionSucceeded', 1);
      const message = `mirror dbid ${input.mirrorDbid} is the acting primary of content ${input.content} (was dbid ${input.failedPrimaryDbid}): ${input.reason}`;
      telemetry.info('promotion complete', fields);
      if (!deps.notify) return { notified: false };
      try {
        await deps.notify(`FTS ${input.clusterId}: content ${input.content} failed over`, message);
      } catch (e) {
        // The promotion is done: a notification that cannot be sent is logged, never the promotion's failure.
        const cause = `${(e as Error).name}: ${(e as Error).message}`;
        telemetry.error('promotion complete, but its notification could not be sent', { ...fields, cause });
        return { notified: false, cause };
      }
      return { notified: true };
    }
    case 'record-abort': {
      const cause = errorCause(doc);
      telemetry.metric('PromotionAborted', 1);
      telemetry.metric('UnreachablePrimary', 1);
      telemetry.warn('promotion aborted', { ...fields, cause });
      // A history row (and so a new catalog version) per aborted attempt: the record, and a new episode for the next try.
      await applyFresh(catalog, input.clusterId, () => ({
        rows: [],
        history: [{ time: deps.now().toISOString(), dbid: input.failedPrimaryDbid, description: `FTS: failover of content ${input.content} from dbid ${input.failedPrimaryDbid} to dbid ${input.mirrorDbid} aborted: ${cause}`.slice(0, 1000) }],
      }));
      await deps.notify?.(`FTS ${input.clusterId}: failover of content ${input.content} aborted`, cause);
      return { aborted: true, cause };
    }
    case 'record-failure': {
      const cause = errorCause(doc);
      telemetry.metric('PromotionFailed', 1);
      telemetry.error('promotion failed', { ...fields, cause });
      await applyFresh(catalog, input.clusterId, (s) => {
        // Not flipped: a fence owed to the primary the catalog still names is this attempt's, and the next attempt owes its own.
        const stillActing = s.segments.some((r) => r.dbid === input.failedPrimaryDbid && r.role === 'p');
        const owed = stillActing && s.pendingFences.some((f) => f.dbid === input.failedPrimaryDbid);
        return {
          rows: [],
          history: [{ time: deps.now().toISOString(), dbid: input.mirrorDbid, description: `FTS: promotion of dbid ${input.mirrorDbid} for content ${input.content} failed: ${cause}`.slice(0, 1000) }],
          ...(owed ? { clearFences: [input.failedPrimaryDbid] } : {}),
        };
      });
      await deps.notify?.(`FTS ${input.clusterId}: failover of content ${input.content} failed`, cause);
      return { recorded: true, cause };
    }
  }
}

/** The input keys: the state document minus the results the states added. */
const INPUT_KEYS = Object.keys(promoteMirrorInputSchema.shape);
