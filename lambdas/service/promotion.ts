/**
 * The steps of the PromoteMirror workflow. Each step is idempotent and re-reads the
 * catalog, so Step Functions can retry any of them after a crash; the catalog is
 * written before the action it describes (DESIGN.md §2).
 */
import { z } from 'zod';
import type { Catalog } from '../ports/catalog';
import type { SegmentControl, SegmentProbe } from '../ports/segments';
import type { Telemetry } from '../ports/telemetry';
import type { PromoteMirrorInput } from '../ports/workflows';
import type { ClusterSnapshot, SegmentRow } from '../core/model';
import { planFailover } from '../core/decide';
import { MirrorNotPromotableError, PrimaryAliveError, ValidationError } from '../core/errors';

/** A mirror whose WAL receiver heard from its primary this recently says the primary is alive. */
export const SECOND_OPINION_FRESH_SECONDS = 10;
/** How long promotion (pg_promote) may take before the step fails and is retried. */
export const PROMOTE_TIMEOUT_MS = 30_000;
/** How long the write check on the promoted mirror may take. */
export const VERIFY_WRITE_TIMEOUT_MS = 10_000;

/** Workflow input as the prober (or a person in the console) sends it. */
export const promoteMirrorInputSchema = z
  .object({
    clusterId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/, 'clusterId: 1 to 48 letters, digits, - or _'),
    content: z.number().int().min(0),
    failedPrimaryDbid: z.number().int().min(1),
    mirrorDbid: z.number().int().min(1),
    catalogVersion: z.number().int().min(1),
    reason: z.string().max(2000).default('started by hand'),
  })
  .strict()
  .refine((i) => i.failedPrimaryDbid !== i.mirrorDbid, 'failedPrimaryDbid and mirrorDbid must differ');

/** What the steps need. */
export interface PromotionDeps {
  catalog: Catalog;
  probe: SegmentProbe;
  control: SegmentControl;
  telemetry: Telemetry;
  now: () => Date;
  /** Sends a notification (SNS in AWS, the console locally). */
  notify?: (subject: string, message: string) => Promise<void>;
}

/** The step names, as the state machine's payloads carry them, in workflow order. */
export const PROMOTE_STEPS = [
  'validate',
  'confirm-failure',
  'flip-catalog',
  'promote',
  'verify-writable',
  'clear-pending',
  'notify',
  'record-abort',
  'record-failure',
] as const;
export type PromoteStep = (typeof PROMOTE_STEPS)[number];

/** Runs the step a Task state names in its payload `{"step", "input"}` (the Lambda and local mode both call this). */
export async function runPromoteStepEvent(deps: PromotionDeps, event: { step?: unknown; input?: unknown }): Promise<Record<string, unknown>> {
  const step = event?.step;
  if (typeof step !== 'string' || !(PROMOTE_STEPS as readonly string[]).includes(step)) {
    throw new ValidationError(`unknown PromoteMirror step ${JSON.stringify(step)}; known steps are ${PROMOTE_STEPS.join(', ')}`);
  }
  return runPromoteStep(deps, step as PromoteStep, event.input);
}

/** Parses workflow input; ValidationError names every problem. */
export function parsePromoteInput(input: unknown): PromoteMirrorInput {
  const result = promoteMirrorInputSchema.safeParse(input);
  if (!result.success) {
    const issues = result.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
    throw new ValidationError(`invalid PromoteMirror input: ${issues.join('; ')}`, issues);
  }
  return result.data;
}

function rowOf(snapshot: ClusterSnapshot, dbid: number, content: number): SegmentRow {
  const row = snapshot.segments.find((r) => r.dbid === dbid);
  if (!row || row.content !== content) throw new ValidationError(`dbid ${dbid} is not an instance of content ${content} in cluster ${snapshot.clusterId}`);
  return row;
}

/** True once the catalog names the mirror as the content's acting primary. */
const flipped = (snapshot: ClusterSnapshot, input: PromoteMirrorInput): boolean =>
  rowOf(snapshot, input.mirrorDbid, input.content).role === 'p';

/** Runs one step; the workflow's state document (input plus earlier results) is `doc`. */
export async function runPromoteStep(deps: PromotionDeps, step: PromoteStep, doc: unknown): Promise<Record<string, unknown>> {
  // The first step sees the input as sent and rejects unknown keys; later ones also carry results.
  const input = parsePromoteInput(step === 'validate' ? doc : pickInput(doc));
  const { catalog, telemetry } = deps;
  const fields = { clusterId: input.clusterId, content: input.content, mirrorDbid: input.mirrorDbid, step };
  switch (step) {
    case 'validate': {
      const snapshot = await catalog.load(input.clusterId);
      rowOf(snapshot, input.failedPrimaryDbid, input.content);
      rowOf(snapshot, input.mirrorDbid, input.content);
      return { valid: true };
    }
    case 'confirm-failure': {
      const snapshot = await catalog.load(input.clusterId);
      if (flipped(snapshot, input)) return { alreadyFlipped: true, version: snapshot.version };
      // Eligibility first: never promote an out-of-sync mirror, whatever the probes say.
      planFailover(snapshot, input.content, input.failedPrimaryDbid, input.mirrorDbid, deps.now());
      const settings = await catalog.loadSettings(input.clusterId);
      const primary = rowOf(snapshot, input.failedPrimaryDbid, input.content);
      const mirror = rowOf(snapshot, input.mirrorDbid, input.content);
      const probe = await deps.probe.probe(primary, { ...settings, probeRetries: 0 });
      if (probe.ok && !probe.inRecovery) throw new PrimaryAliveError(`primary dbid ${primary.dbid} of content ${input.content} answers again; no failover`);
      const receiver = await deps.control.walReceiver(mirror);
      if (!receiver.inRecovery) throw new MirrorNotPromotableError(`mirror dbid ${mirror.dbid} is not in recovery: it is not a mirror any more`);
      const heardAgo = receiver.lastMessageAt === undefined ? Infinity : (deps.now().getTime() - receiver.lastMessageAt) / 1000;
      if (receiver.state === 'streaming' && heardAgo < SECOND_OPINION_FRESH_SECONDS) {
        throw new PrimaryAliveError(
          `mirror dbid ${mirror.dbid} still streams from primary dbid ${primary.dbid} (last message ${heardAgo.toFixed(1)} s ago): the primary is alive but unreachable from the prober; no failover`,
        );
      }
      return { alreadyFlipped: false, version: snapshot.version, probe: probe.ok ? 'in recovery' : probe.kind, mirrorReceiver: receiver.state };
    }
    case 'flip-catalog': {
      const snapshot = await catalog.load(input.clusterId);
      if (flipped(snapshot, input)) return { version: snapshot.version, written: false };
      const change = planFailover(snapshot, input.content, input.failedPrimaryDbid, input.mirrorDbid, deps.now());
      const version = await catalog.apply(input.clusterId, snapshot.version, change);
      telemetry.info('catalog flipped', { ...fields, version });
      return { version, written: true };
    }
    case 'promote': {
      const snapshot = await catalog.load(input.clusterId);
      const mirror = rowOf(snapshot, input.mirrorDbid, input.content);
      if (mirror.role !== 'p') throw new MirrorNotPromotableError(`catalog does not name dbid ${mirror.dbid} acting primary of content ${input.content}; refusing to promote before the catalog flip`);
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
      await deps.notify?.(`FTS ${input.clusterId}: content ${input.content} failed over`, message);
      return { notified: true };
    }
    case 'record-abort': {
      const cause = errorCause(doc);
      telemetry.metric('UnreachablePrimary', 1);
      telemetry.warn('promotion aborted', { ...fields, cause });
      await deps.notify?.(`FTS ${input.clusterId}: failover of content ${input.content} aborted`, cause);
      return { aborted: true, cause };
    }
    case 'record-failure': {
      const cause = errorCause(doc);
      telemetry.metric('PromotionFailed', 1);
      telemetry.error('promotion failed', { ...fields, cause });
      const snapshot = await catalog.load(input.clusterId);
      await catalog.apply(input.clusterId, snapshot.version, {
        rows: [],
        history: [{ time: deps.now().toISOString(), dbid: input.mirrorDbid, description: `FTS: promotion of dbid ${input.mirrorDbid} for content ${input.content} failed: ${cause}`.slice(0, 1000) }],
      });
      await deps.notify?.(`FTS ${input.clusterId}: failover of content ${input.content} failed`, cause);
      return { recorded: true, cause };
    }
  }
}

/** The workflow input is the state document minus the results the states added. */
function pickInput(doc: unknown): unknown {
  if (!doc || typeof doc !== 'object') return doc;
  const keys = Object.keys(promoteMirrorInputSchema.shape);
  return Object.fromEntries(Object.entries(doc).filter(([k]) => keys.includes(k)));
}

/** Error and cause a Catch put at `$.error`. */
function errorCause(doc: unknown): string {
  const error = (doc as { error?: { Error?: string; Cause?: string } }).error;
  if (!error) return 'unknown error';
  let cause = error.Cause ?? '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    cause = parsed.errorMessage ?? cause;
  } catch {
    /* a plain-text cause */
  }
  return `${error.Error ?? 'Error'}: ${cause}`;
}
