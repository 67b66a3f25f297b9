/**
 * The steps of ActivateStandby (gpactivatestandby; lambdas/workflows/activate-standby.ts).
 * Validate holds content -1 and records the old coordinator's row in the hold, so each
 * later step re-reads the catalog, checks the hold is still this execution's, and can be
 * run again after a crash: the catalog flip and the promotion are idempotent, the fence
 * and the endpoint move too.
 */
import { z } from 'zod';
import { clusterStatusOf, SECOND_OPINION_FRESH_SECONDS } from '../core/decide';
import { ContentBusyError, CoordinatorAliveError, FenceUnconfirmedError, MirrorNotPromotableError, ValidationError, WrongInstanceError } from '../core/errors';
import { COORDINATOR_CONTENT, type CatalogChange, type ClusterSnapshot, type PendingOperation, type SegmentRow } from '../core/model';
import { describeOperation, liveOperation } from '../core/operations';
import { segmentRowSchema } from '../core/rows';
import type { Settings } from '../core/settings';
import { ACTIVATE_STANDBY_SPEC, activateStandbyInputSchema, type ActivateStandbyInput } from '../workflows/activate-standby';
import { parseWorkflowInput } from '../workflows/spec';
import { PROMOTE_TIMEOUT_MS, VERIFY_WRITE_TIMEOUT_MS } from './promotion';
import { checkHeld, holdOf } from './rebuild-steps';
import { applyFresh, errorCause, pickInput, stepRunner, type StepTable, type WorkflowDeps } from './steps';

/** What the hold records: the coordinator being replaced (its row leaves the catalog at the flip) and the standby taking over. */
const activationPlanSchema = z.object({ coordinator: segmentRowSchema, standbyDbid: z.number().int().min(1) }).strict();
type ActivationPlan = z.output<typeof activationPlanSchema>;

const INPUT_KEYS = Object.keys(activateStandbyInputSchema.shape);

/** The workflow input part of a state document (later states carry step results too). */
function inputOf(doc: unknown, first: boolean): ActivateStandbyInput {
  return parseWorkflowInput(ACTIVATE_STANDBY_SPEC, first ? doc : pickInput(doc, INPUT_KEYS));
}

const coordinatorRows = (snapshot: ClusterSnapshot) => ({
  coordinator: snapshot.segments.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p'),
  standby: snapshot.segments.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'm'),
});

/** The activation plan an operation records, or undefined. */
function planOf(operation: PendingOperation | undefined): ActivationPlan | undefined {
  if (operation?.kind !== 'activation' || !operation.plan) return undefined;
  try {
    const parsed = activationPlanSchema.safeParse(JSON.parse(operation.plan));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Seconds an activation's hold lasts unless a step renews it: one step's longest run and
 * a margin. An execution stopped half-way (StopExecution, its timeout) renews nothing, so
 * it blocks the next activation at most this long, not the ten minutes of a recovery's hold.
 */
export const ACTIVATION_HOLD_SECONDS = ACTIVATE_STANDBY_SPEC.stepTimeoutSeconds + 60;

/**
 * The catalog and this execution's plan, its hold renewed once less than half of
 * {@link ACTIVATION_HOLD_SECONDS} is left (ContentBusyError when it holds content -1 no more).
 */
async function holding(deps: WorkflowDeps, clusterId: string, execution: string): Promise<{ snapshot: ClusterSnapshot; plan: ActivationPlan }> {
  const now = deps.now();
  const snapshot = await deps.catalog.load(clusterId);
  const plan = heldPlan(snapshot, execution, now);
  const hold = checkHeld(snapshot, COORDINATOR_CONTENT, execution, now);
  if (Date.parse(hold.expiresAt) - now.getTime() > (ACTIVATION_HOLD_SECONDS * 1000) / 2) return { snapshot, plan };
  await applyFresh(deps.catalog, clusterId, (s) => ({
    rows: [],
    history: [],
    setOperations: [{ ...checkHeld(s, COORDINATOR_CONTENT, execution, now), expiresAt: new Date(now.getTime() + ACTIVATION_HOLD_SECONDS * 1000).toISOString() }],
  }));
  return { snapshot: await deps.catalog.load(clusterId), plan };
}

/** The plan this execution recorded in its hold on content -1 (ContentBusyError when it holds nothing). */
function heldPlan(snapshot: ClusterSnapshot, execution: string, now: Date): ActivationPlan {
  const hold = checkHeld(snapshot, COORDINATOR_CONTENT, execution, now);
  const plan = planOf(hold);
  if (!plan) throw new ValidationError(`the hold of content -1 by execution ${execution} records no activation plan this version can read: ${hold.plan}`);
  return plan;
}

/**
 * An activation that failed after its catalog flip leaves its plan in a lapsed hold (see
 * record-failure): the next ActivateStandby finishes it (promote, endpoint, write check)
 * instead of looking for a standby that is the coordinator already.
 */
function unfinishedActivation(snapshot: ClusterSnapshot): ActivationPlan | undefined {
  const plan = planOf(snapshot.pendingOperations.find((o) => o.content === COORDINATOR_CONTENT));
  return plan && activated(snapshot, plan) ? plan : undefined;
}

/** True once the catalog names the standby as the coordinator and the old row is gone. */
const activated = (snapshot: ClusterSnapshot, plan: ActivationPlan): boolean =>
  snapshot.segments.some((r) => r.dbid === plan.standbyDbid && r.role === 'p') && !snapshot.segments.some((r) => r.dbid === plan.coordinator.dbid);

function standbyRow(snapshot: ClusterSnapshot, plan: ActivationPlan): SegmentRow {
  const row = snapshot.segments.find((r) => r.dbid === plan.standbyDbid);
  if (!row || row.content !== COORDINATOR_CONTENT) throw new ValidationError(`dbid ${plan.standbyDbid} is no longer a row of content -1 in cluster ${snapshot.clusterId}`);
  return row;
}

const where = (r: SegmentRow): string => `${r.hostname}:${r.port} ${r.datadir}`;

/** The catalog flip of an activation: the standby row becomes the coordinator (preferred p, same dbid), the old coordinator's row goes. */
export function planActivation(snapshot: ClusterSnapshot, plan: ActivationPlan, now: Date, reason: string): CatalogChange {
  const standby = standbyRow(snapshot, plan);
  const old = snapshot.segments.find((r) => r.dbid === plan.coordinator.dbid);
  const time = now.toISOString();
  const promoted: SegmentRow = { ...standby, role: 'p', preferredRole: 'p', status: 'u', mode: 'n' };
  const after = [...snapshot.segments.filter((r) => r.dbid !== plan.coordinator.dbid && r.dbid !== standby.dbid), promoted];
  return {
    rows: [promoted],
    history: [
      ...(old ? [{ time, dbid: old.dbid, description: `gpactivatestandby: coordinator dbid ${old.dbid} on ${where(old)} removed from the configuration; standby dbid ${standby.dbid} activated (${reason})`.slice(0, 1000) }] : []),
      { time, dbid: standby.dbid, description: `gpactivatestandby: update role, status, and mode for dbid ${standby.dbid} with contentid -1 to p, u, and n: standby on ${where(standby)} activated as the coordinator` },
    ],
    removeRows: old ? [old.dbid] : [],
    status: clusterStatusOf(after),
  };
}

/**
 * Whether the catalog lets the standby be activated for this input; the plan if so.
 * Refuses (nothing changed) no standby, a `standbyDbid` that is not it, a standby marked
 * down unless `force` and `ignoreLag` (it is not in sync; ConfirmDown then checks it runs
 * as a standby), one not in sync while sync rep is the mode unless `ignoreLag`, and an
 * automatic start unless the setting allows it and the standby is in sync.
 */
function checkActivation(snapshot: ClusterSnapshot, input: ActivateStandbyInput, settings: Settings): ActivationPlan {
  const { coordinator, standby } = coordinatorRows(snapshot);
  if (!coordinator) throw new ValidationError(`cluster ${snapshot.clusterId} has no coordinator row (content -1, role p)`);
  if (!standby) throw new ValidationError(`cluster ${snapshot.clusterId} has no standby (content -1, role m): nothing to activate; add one with gpinitstandby (ftsctl initstandby -s <host>)`);
  if (input.stopInstance && !coordinator.instanceId) {
    throw new ValidationError(`stopInstance needs the EC2 instance of coordinator dbid ${coordinator.dbid}, and its catalog row names none`);
  }
  if (input.standbyDbid !== undefined && input.standbyDbid !== standby.dbid) {
    throw new ValidationError(`standbyDbid ${input.standbyDbid} is not the standby of cluster ${snapshot.clusterId} (the catalog names dbid ${standby.dbid})`);
  }
  const synchronous = settings.standbySynchronous !== false;
  if (input.automatic) {
    if (!settings.autoActivateStandby) throw new ValidationError('automatic activation is off (setting autoActivateStandby): an automatic start is refused');
    if (!synchronous || standby.mode !== 's') throw new MirrorNotPromotableError(`standby dbid ${standby.dbid} is ${standby.status}/${standby.mode}, not in sync: an automatic activation never risks a commit`);
  } else if (standby.status === 'd' && !(input.force && input.ignoreLag)) {
    throw new MirrorNotPromotableError(
      `standby dbid ${standby.dbid} is marked down: it may lack acknowledged commits and may not run; if you know it runs as a standby and accept losing what it lacks: ftsctl activatestandby -f --ignore-lag`,
    );
  } else if (standby.mode !== 's' && synchronous && !input.ignoreLag) {
    throw new MirrorNotPromotableError(
      `standby dbid ${standby.dbid} is not in sync (mode ${standby.mode}): activating it may lose acknowledged commits; wait for it to catch up, or accept the loss with ignoreLag (ftsctl activatestandby --ignore-lag)`,
    );
  }
  return { coordinator, standbyDbid: standby.dbid };
}

/** Releases this execution's hold on content -1 with a history row; a no-op when it holds nothing any more. */
async function release(deps: WorkflowDeps, clusterId: string, execution: string, dbid: number | undefined, description: string): Promise<void> {
  await applyFresh(deps.catalog, clusterId, (s) => {
    const hold = liveOperation(s, COORDINATOR_CONTENT, deps.now()) ?? s.pendingOperations.find((o) => o.content === COORDINATOR_CONTENT);
    const ours = hold?.execution === execution;
    const row = dbid !== undefined && s.segments.some((r) => r.dbid === dbid) ? dbid : s.segments.find((r) => r.content === COORDINATOR_CONTENT)?.dbid;
    if (!ours && row === undefined) return null;
    return {
      rows: [],
      history: row !== undefined ? [{ time: deps.now().toISOString(), dbid: row, description: description.slice(0, 1000) }] : [],
      ...(ours ? { clearOperations: [{ content: COORDINATOR_CONTENT, execution }] } : {}),
    };
  });
}

/** The ActivateStandby step table. */
export const ACTIVATE_STANDBY_STEPS: StepTable<WorkflowDeps> = {
  /**
   * Checks the input against the catalog (whoever sent it) and holds content -1 with the
   * old coordinator's row as the plan. A re-run by the same execution reads its plan back.
   * Refuses a standby that is down, or not in sync while sync rep is the mode (it may
   * lack acknowledged commits) unless `ignoreLag`, and an automatic start unless the
   * setting allows it and the standby is in sync.
   */
  validate: async (deps, doc, execution) => {
    const input = inputOf(doc, true);
    const snapshot = await deps.catalog.load(input.clusterId);
    if (input.catalogVersion !== undefined && input.catalogVersion > snapshot.version) {
      throw new ValidationError(`catalogVersion ${input.catalogVersion} is newer than the catalog of cluster ${snapshot.clusterId} (version ${snapshot.version})`);
    }
    const now = deps.now();
    const hold = liveOperation(snapshot, COORDINATOR_CONTENT, now);
    if (hold?.execution === execution) {
      const plan = heldPlan(snapshot, execution, now);
      return { coordinatorDbid: plan.coordinator.dbid, standbyDbid: plan.standbyDbid, resumed: true };
    }
    const settings = await deps.catalog.loadSettings(input.clusterId);
    // Every check runs again on the snapshot the hold is written against: a prober round
    // that marked the standby down in between (sync rep off) is seen, not fenced past.
    let result: { coordinatorDbid: number; standbyDbid: number; resumed: boolean } | undefined;
    await applyFresh(deps.catalog, input.clusterId, (fresh) => {
      const held = liveOperation(fresh, COORDINATOR_CONTENT, now);
      if (held) {
        throw new ContentBusyError(
          `content -1 is held by ${describeOperation(held)}: not activating now${held.kind === 'activation' ? `; if that execution was stopped, its hold lapses at ${held.expiresAt}, and an activatestandby after that finishes what it began` : ''}`,
        );
      }
      const unfinished = coordinatorRows(fresh).standby ? undefined : unfinishedActivation(fresh);
      if (unfinished) {
        result = { coordinatorDbid: unfinished.coordinator.dbid, standbyDbid: unfinished.standbyDbid, resumed: true };
        return { rows: [], history: [], setOperations: [holdOf('activation', COORDINATOR_CONTENT, execution, now, unfinished, ACTIVATION_HOLD_SECONDS)] };
      }
      const plan = checkActivation(fresh, input, settings);
      result = { coordinatorDbid: plan.coordinator.dbid, standbyDbid: plan.standbyDbid, resumed: false };
      return { rows: [], history: [], setOperations: [holdOf('activation', COORDINATOR_CONTENT, execution, now, plan, ACTIVATION_HOLD_SECONDS)] };
    });
    deps.telemetry.info(result!.resumed ? 'resuming an unfinished activation' : 'activation planned', { clusterId: input.clusterId, ...result, execution });
    return result!;
  },

  /**
   * Confirms the coordinator is down: its probe fails, and its standby no longer hears
   * from it (the standby's clock: no skew). A coordinator that answers, or that the
   * standby still hears, is CoordinatorAliveError unless forced (then it is fenced next).
   */
  'confirm-down': async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const { snapshot, plan } = await holding(deps, input.clusterId, execution);
    if (activated(snapshot, plan)) return { alreadyActivated: true };
    const standby = standbyRow(snapshot, plan);
    const settings = await deps.catalog.loadSettings(input.clusterId);
    const probe = await deps.probe.probe(plan.coordinator, { ...settings, probeRetries: 0 }, standby);
    const receiver = await deps.control.walReceiver(standby); // checks the standby's identity
    if (!receiver.inRecovery) throw new MirrorNotPromotableError(`standby dbid ${standby.dbid} is not in recovery: it is not a standby any more (promoted by hand?); nothing is changed`);
    const heardAgo = receiver.heardSecondsAgo ?? (receiver.lastMessageAt === undefined ? Infinity : (deps.now().getTime() - receiver.lastMessageAt) / 1000);
    const seen = { probe: probe.ok ? (probe.inRecovery ? 'in recovery' : 'answers') : probe.kind, standbyReceiver: receiver.state, heardSecondsAgo: Number.isFinite(heardAgo) ? heardAgo : null };
    let alive: string | undefined;
    if (probe.ok && !probe.inRecovery) alive = `coordinator dbid ${plan.coordinator.dbid} answers as a writable coordinator`;
    else if (!probe.ok && (probe.kind === 'too-many-connections' || probe.kind === 'authentication')) alive = `coordinator dbid ${plan.coordinator.dbid} answers (${probe.kind})`;
    else if (!probe.ok && probe.kind === 'wrong-instance') alive = `the coordinator's address answers as another instance (${probe.message}): its state is unknown`;
    else if (receiver.state === 'streaming' && heardAgo < SECOND_OPINION_FRESH_SECONDS) {
      alive = `standby dbid ${standby.dbid} still streams from the coordinator (last message ${heardAgo.toFixed(1)} s ago): it is alive but unreachable from FTS`;
    }
    if (alive && !input.force) throw new CoordinatorAliveError(`${alive}; not activating the standby (force it with ftsctl activatestandby -f: the coordinator is fenced first)`);
    deps.telemetry.info(alive ? 'coordinator alive, activation forced' : 'coordinator confirmed down', { clusterId: input.clusterId, ...seen });
    return { coordinatorDown: !alive, ...seen };
  },

  /**
   * Fences the old coordinator before the catalog names its standby: stopped (killed if
   * frozen), and a restart comes up read-only as a standby of the new coordinator. A
   * fence that cannot be confirmed is FenceUnconfirmedError unless forced.
   */
  'fence-coordinator': async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const { snapshot, plan } = await holding(deps, input.clusterId, execution);
    // Fenced before an earlier run flipped the catalog (the flip comes only after a fence or a forced go-ahead).
    if (activated(snapshot, plan)) return { fenced: true, earlier: true, stopInstance: false };
    const standby = standbyRow(snapshot, plan);
    // What the native StopCoordinatorInstance state reads: whether to stop the instance, and which.
    const stop = input.stopInstance && plan.coordinator.instanceId ? { stopInstance: true, instanceIds: [plan.coordinator.instanceId] } : { stopInstance: false };
    try {
      const report = await deps.host.fence(plan.coordinator, standby);
      deps.telemetry.info('old coordinator fenced', { clusterId: input.clusterId, dbid: plan.coordinator.dbid, ...report });
      return { fenced: true, ...report, ...stop };
    } catch (e) {
      if (e instanceof WrongInstanceError) throw e;
      const cause = `${(e as Error).name}: ${(e as Error).message}`;
      if (!input.force) throw new FenceUnconfirmedError(`the fence of coordinator dbid ${plan.coordinator.dbid} on ${where(plan.coordinator)} could not be confirmed (${cause}); not activating the standby (force it with -f only if that host is surely down)`);
      deps.telemetry.metric('FencePending', 1);
      deps.telemetry.error('fence of the old coordinator not confirmed; activation forced', { clusterId: input.clusterId, cause });
      return { fenced: false, cause, ...stop };
    }
  },

  /** Writes the catalog flip (once), then promotes the standby; its sync rep goes off (it has no standby now). */
  activate: async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const now = deps.now();
    const { plan } = await holding(deps, input.clusterId, execution);
    const settings = await deps.catalog.loadSettings(input.clusterId);
    const version = await applyFresh(deps.catalog, input.clusterId, (s) => {
      if (activated(s, plan)) return null;
      checkActivation(s, input, settings); // what Validate allowed still holds (nobody changes a held content)
      return planActivation(s, plan, now, input.reason);
    });
    const snapshot = await deps.catalog.load(input.clusterId);
    const coordinator = standbyRow(snapshot, plan);
    await deps.control.promote(coordinator, PROMOTE_TIMEOUT_MS);
    deps.telemetry.info('standby promoted to coordinator', { clusterId: input.clusterId, dbid: coordinator.dbid, version: version ?? snapshot.version });
    return { version: version ?? snapshot.version, flipped: version !== undefined, promotedAt: deps.now().toISOString() };
  },

  /** Points the client endpoint at the new coordinator (no endpoint configured: nothing to move). */
  'move-endpoint': async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const { snapshot, plan } = await holding(deps, input.clusterId, execution);
    if (!deps.endpoint) return { moved: false, reason: 'no client endpoint is configured' };
    await deps.endpoint.moveTo(standbyRow(snapshot, plan));
    const endpoint = await deps.endpoint.describe();
    deps.telemetry.info('client endpoint moved', { clusterId: input.clusterId, endpoint });
    return { moved: true, endpoint };
  },

  /** Commits a row on the new coordinator, through the endpoint when there is one (the instance reached must be the new coordinator). */
  'verify-write': async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const { snapshot, plan } = await holding(deps, input.clusterId, execution);
    const coordinator = standbyRow(snapshot, plan);
    const endpoint = deps.endpoint ? await deps.endpoint.describe() : undefined;
    await deps.control.verifyWritable(endpoint ? { ...coordinator, address: endpoint.address, port: endpoint.port } : coordinator, VERIFY_WRITE_TIMEOUT_MS);
    return { writableAt: deps.now().toISOString(), through: endpoint ? `${endpoint.address}:${endpoint.port}` : `${coordinator.address}:${coordinator.port}` };
  },

  /** Releases content -1 with the history row that closes the activation, and tells the operators. */
  finish: async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const snapshot = await deps.catalog.load(input.clusterId);
    const plan = heldPlan(snapshot, execution, deps.now());
    const message = `standby dbid ${plan.standbyDbid} is the coordinator of cluster ${input.clusterId} (was dbid ${plan.coordinator.dbid} on ${where(plan.coordinator)}); it runs without a standby until one is added (ftsctl initstandby -s <host>)`;
    await release(deps, input.clusterId, execution, plan.standbyDbid, `gpactivatestandby: activation of dbid ${plan.standbyDbid} complete${input.automatic ? ' (automatic)' : ''}`);
    deps.telemetry.metric('StandbyActivated', 1);
    deps.telemetry.info('activation complete', { clusterId: input.clusterId, standbyDbid: plan.standbyDbid });
    try {
      await deps.notify?.(`FTS ${input.clusterId}: standby activated`, message);
    } catch (e) {
      // The activation is done and content -1 released: a notification that cannot be sent must not fail (or retry) this step.
      const cause = `${(e as Error).name}: ${(e as Error).message}`;
      deps.telemetry.error('activation complete, but its notification could not be sent', { clusterId: input.clusterId, standbyDbid: plan.standbyDbid, cause });
      return { activated: true, message, notified: false, cause };
    }
    return { activated: true, message };
  },

  /** The coordinator answers or its fence was not confirmed: nothing was changed but the hold, which is released. */
  'record-refusal': async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const cause = errorCause(doc);
    await release(deps, input.clusterId, execution, undefined, `gpactivatestandby: activation refused: ${cause}`);
    deps.telemetry.metric('ActivationRefused', 1);
    deps.telemetry.warn('activation refused', { clusterId: input.clusterId, cause });
    await deps.notify?.(`FTS ${input.clusterId}: standby activation refused`, cause);
    return { refused: true, cause };
  },

  /**
   * A step failed past its retries. Before the catalog flip, the hold is released: nothing
   * changed. After it, the hold is left lapsed with its plan (the prober takes content -1
   * back), so the next ActivateStandby finishes the activation; a history row says which.
   */
  'record-failure': async (deps, doc, execution) => {
    const input = inputOf(doc, false);
    const cause = errorCause(doc);
    const now = deps.now();
    const snapshot = await deps.catalog.load(input.clusterId);
    const hold = snapshot.pendingOperations.find((o) => o.content === COORDINATOR_CONTENT && o.execution === execution);
    const plan = planOf(hold);
    if (hold && plan && activated(snapshot, plan)) {
      const lapsed = new Date(Math.max(now.getTime(), Date.parse(hold.since) + 1)).toISOString();
      await applyFresh(deps.catalog, input.clusterId, () => ({
        rows: [],
        history: [{ time: now.toISOString(), dbid: plan.standbyDbid, description: `gpactivatestandby: activation failed after the catalog named dbid ${plan.standbyDbid} the coordinator; run it again to finish: ${cause}`.slice(0, 1000) }],
        setOperations: [{ ...hold, expiresAt: lapsed }],
      }));
    } else await release(deps, input.clusterId, execution, undefined, `gpactivatestandby: activation failed: ${cause}`);
    deps.telemetry.metric('ActivationFailed', 1);
    deps.telemetry.error('activation failed', { clusterId: input.clusterId, cause });
    await deps.notify?.(`FTS ${input.clusterId}: standby activation failed`, cause);
    return { recorded: true, cause };
  },
};

/** Runs the named ActivateStandby step on the state document. */
export const runActivateStandbyStepEvent = stepRunner(ACTIVATE_STANDBY_SPEC, ACTIVATE_STANDBY_STEPS);
