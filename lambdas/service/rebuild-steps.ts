/**
 * The per-content steps RecoverSegments and Rebalance share: rebuild one instance as a
 * mirror of its content's acting primary in a wait-and-poll loop, then mark it up, or
 * record why not; and the summary of a whole run. Each step re-reads the catalog and
 * checks the content is still held by this execution, so a retried or re-run step does
 * the right thing, and no step waits for a long copy.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { clusterStatusOf, historyText } from '../core/decide';
import { ContentBusyError, RebuildFailedError, ValidationError } from '../core/errors';
import type { ClusterSnapshot, OperationKind, PendingOperation, SegmentRow } from '../core/model';
import { liveOperation } from '../core/operations';
import type { HostJob, HostJobStatus } from '../ports/segments';
import { DEFAULT_STALL_SECONDS } from '../workflows/recover-segments';
import { applyFresh, errorCause, type WorkflowDeps } from './steps';

/** How many starts a rebuild gets in all when its process vanishes (killed, host restarted). */
export const MAX_REBUILD_STARTS = 3;
/** How many times a start refused because an earlier copy still holds the directory's lock is tried again. */
export const MAX_BUSY_STARTS = 60;
/**
 * Phases that report no copied bytes (before the tool's first report: the stop, a wipe,
 * pg_rewind's crash recovery; after the copy: the start and its replay) get this many
 * times `stallSeconds` before they count as stuck.
 */
export const UNMEASURED_PHASE_FACTOR = 4;
/** Seconds a rebuilt instance may take to stream from its primary before it counts as not recovered. */
export const STREAM_WAIT_SECONDS = 60;
/** Pause between two looks at a rebuilt instance's WAL receiver. */
const STREAM_POLL_MS = 500;

/** Where an instance was before a recovery moved it (`-i`, `-p`). */
const locationSchema = z.object({ hostname: z.string(), address: z.string(), port: z.number().int(), datadir: z.string(), instanceId: z.string().optional() }).strict();

/** One content's rebuild, as a Map iteration gets it. */
export const rebuildItemSchema = z
  .object({
    content: z.number().int().min(0),
    /** The row rebuilt as a mirror (a down mirror; in a rebalance, the old primary). */
    dbid: z.number().int().min(1),
    /** The content's acting primary, the source. */
    sourceDbid: z.number().int().min(1),
    method: z.enum(['rewind', 'basebackup']),
    /** The row's place before a move, whose instance must not keep running there. */
    previous: locationSchema.optional(),
  });

/** One content's rebuild. */
export type RebuildItem = z.output<typeof rebuildItemSchema>;

const iterationSchema = z.object({
  clusterId: z.string().min(1),
  pollSeconds: z.number().int().min(1),
  /** Seconds a running copy may go without progress before it is cancelled as stuck. */
  stallSeconds: z.number().min(1).default(DEFAULT_STALL_SECONDS),
  item: rebuildItemSchema,
  startRebuild: z.object({ job: z.object({ id: z.string(), dbid: z.number(), startedAt: z.string() }).nullable(), starts: z.number().int(), busyStarts: z.number().int() }).partial().optional(),
  pollRebuild: z.object({ busy: z.boolean(), watch: z.object({ bytes: z.number(), at: z.string() }) }).partial().optional(),
});

/** The iteration document: clusterId, pollSeconds, the item, and what earlier steps returned. */
function iteration(doc: unknown) {
  const result = iterationSchema.safeParse(doc);
  if (!result.success) throw new ValidationError(`invalid rebuild iteration document: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return result.data;
}

const rowOf = (snapshot: ClusterSnapshot, dbid: number, content: number): SegmentRow => {
  const row = snapshot.segments.find((r) => r.dbid === dbid);
  if (!row || row.content !== content) throw new ValidationError(`dbid ${dbid} is not an instance of content ${content} in cluster ${snapshot.clusterId}`);
  return row;
};

/**
 * Seconds a hold lasts unless renewed. Every step that works on a held content renews
 * every hold of its execution once half of this has passed, so contents waiting in the
 * Map's queue stay held while others are copied. An execution that was stopped (or a
 * local `ftsctl` that was killed) renews nothing: its holds lapse within this, and the
 * prober takes its contents back.
 */
export const HOLD_TTL_SECONDS = 600;

/** The copied bytes last seen to grow, and when. */
export interface CopyWatch {
  bytes: number;
  at: string;
}

/**
 * A running copy whose bytes have not grown for `stallSeconds` (a frozen host or tool)
 * would keep its content held for good: it is cancelled and RebuildFailedError thrown.
 * While bytes are copied (reported, not all yet) the limit is `stallSeconds`; the phases
 * that report no bytes get {@link UNMEASURED_PHASE_FACTOR} times that. Returns the watch
 * to carry to the next poll. `what` names the copy in the error.
 */
export async function watchForStall(deps: WorkflowDeps, job: HostJob, status: HostJobStatus, previous: CopyWatch | undefined, stallSeconds: number, what: string): Promise<CopyWatch> {
  const now = deps.now();
  const before = previous ?? { bytes: -1, at: job.startedAt };
  const bytes = status.progress?.bytes ?? -1;
  const watch = bytes > before.bytes ? { bytes, at: now.toISOString() } : before;
  const stalled = (now.getTime() - Date.parse(watch.at)) / 1000;
  const copying = watch.bytes >= 0 && (status.progress === undefined || status.progress.bytes < status.progress.total);
  const limit = copying ? stallSeconds : UNMEASURED_PHASE_FACTOR * stallSeconds;
  if (stalled <= limit) return watch;
  const why = `${what} made no progress for ${Math.round(stalled)} s (limit ${limit} s from stallSeconds ${stallSeconds})`;
  try {
    await deps.host.cancelJob(job);
  } catch (e) {
    throw new RebuildFailedError(`${why}; cancelling it failed (${(e as Error).message}): stop it on the host`);
  }
  throw new RebuildFailedError(`${why}: cancelled`);
}

/** Throws ContentBusyError unless `execution` still holds `content`. */
export function checkHeld(snapshot: ClusterSnapshot, content: number, execution: string, now: Date): PendingOperation {
  const operation = liveOperation(snapshot, content, now);
  if (!operation || operation.execution !== execution) {
    throw new ContentBusyError(`content ${content} is no longer held by execution ${execution}${operation ? ` (held by ${operation.kind} execution ${operation.execution})` : ''}: not touching it`);
  }
  return operation;
}

/** The hold an execution takes on a content, lapsing after `ttlSeconds` (default {@link HOLD_TTL_SECONDS}) unless renewed; `plan` is what it will do there. */
export function holdOf(kind: OperationKind, content: number, execution: string, now: Date, plan?: object, ttlSeconds = HOLD_TTL_SECONDS): PendingOperation {
  return { content, kind, execution, since: now.toISOString(), expiresAt: new Date(now.getTime() + ttlSeconds * 1000).toISOString(), ...(plan ? { plan: JSON.stringify(plan) } : {}) };
}

/**
 * The items of an earlier run of `plan` by the same execution (a step retried after its
 * catalog write committed), read back from its holds; undefined when it holds nothing. A
 * second plan would not find rows it already moved where the request names them.
 */
export function plannedBefore<T>(snapshot: ClusterSnapshot, execution: string, schema: z.ZodType<T>): T[] | undefined {
  const ours = snapshot.pendingOperations.filter((op) => op.execution === execution && op.plan !== undefined);
  if (!ours.length) return undefined;
  return ours.map((op) => {
    const unreadable = () => new ValidationError(`the hold of content ${op.content} by execution ${execution} records a plan this version cannot read: ${op.plan}`);
    let json: unknown;
    try {
      json = JSON.parse(op.plan as string);
    } catch {
      throw unreadable();
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw unreadable();
    return parsed.data;
  });
}

/**
 * Renews the holds of `execution` that have less than half their time left, and takes
 * `content` again if its hold lapsed while nobody else took it. ContentBusyError when
 * another execution (or a promotion) holds `content` now: this one must stop touching it.
 */
export async function renewHolds(deps: WorkflowDeps, clusterId: string, execution: string, content: number, kind: OperationKind): Promise<void> {
  await applyFresh(deps.catalog, clusterId, (s) => {
    const now = deps.now();
    const other = liveOperation(s, content, now);
    if (other && other.execution !== execution) checkHeld(s, content, execution, now);
    if (s.pendingPromotions.some((p) => p.content === content)) throw new ContentBusyError(`content ${content} has a pending promotion: execution ${execution} no longer holds it`);
    const stale = (op: PendingOperation) => Date.parse(op.expiresAt) - now.getTime() < (HOLD_TTL_SECONDS * 1000) / 2;
    const renew = s.pendingOperations.filter((op) => op.execution === execution && (liveOperation(s, op.content, now) ? stale(op) : op.content === content));
    if (!renew.some((op) => op.content === content) && !other) renew.push({ ...holdOf(kind, content, execution, now), since: now.toISOString() });
    if (!renew.length) return null;
    return { rows: [], history: [], setOperations: renew.map((op) => ({ ...op, expiresAt: new Date(now.getTime() + HOLD_TTL_SECONDS * 1000).toISOString() })) };
  });
}

/**
 * The steps shared by RecoverSegments and Rebalance; `label` names the workflow in
 * history rows (`gprecoverseg`, `gprecoverseg -r`).
 */
export function rebuildSteps(label: string, kind: OperationKind) {
  return {
    /**
     * Stops anything of this instance still running where it is rebuilt (and at its old
     * place after a move), then starts the rebuild in the background.
     */
    'start-rebuild': async (deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> => {
      const it = iteration(doc);
      const { item } = it;
      await renewHolds(deps, it.clusterId, execution, item.content, kind);
      const snapshot = await deps.catalog.load(it.clusterId);
      checkHeld(snapshot, item.content, execution, deps.now());
      const row = rowOf(snapshot, item.dbid, item.content);
      const source = rowOf(snapshot, item.sourceDbid, item.content);
      // A start refused because another rebuild of the directory still ran (a retried step) did nothing: it does not count.
      const starts = (it.startRebuild?.starts ?? 0) + (it.pollRebuild?.busy ? 0 : 1);
      const busyStarts = (it.startRebuild?.busyStarts ?? 0) + (it.pollRebuild?.busy ? 1 : 0);
      if (busyStarts > MAX_BUSY_STARTS) {
        throw new RebuildFailedError(`an earlier rebuild of dbid ${item.dbid}'s data directory still holds its lock after ${MAX_BUSY_STARTS} tries: stop it on the host, then run the recovery again`);
      }
      if (row.role === 'm' && row.status === 'u') return { job: null, starts, busyStarts, already: true };
      if (row.role !== 'm' || source.role !== 'p' || source.status !== 'u') {
        throw new RebuildFailedError(`content ${item.content} changed: dbid ${row.dbid} is ${row.role}/${row.status} and dbid ${source.dbid} is ${source.role}/${source.status}; a mirror is rebuilt only from an acting primary that is up`);
      }
      const settings = { ...(await deps.catalog.loadSettings(it.clusterId)), probeRetries: 0 };
      // A copy of this instance that answers as a writable primary must never see a
      // client again: fenced (its identity was checked by the probe). One that answers
      // as a standby at the old place of a moved instance would take the slot: stopped.
      // The old place is reached on its own host (its instance id), never the new one's.
      const previous = item.previous ? (({ instanceId: _dropped, ...rest }) => ({ ...rest, ...item.previous }))(row) : undefined;
      const places: SegmentRow[] = [row, ...(previous ? [previous] : [])];
      for (const place of places) {
        const probe = await deps.probe.probe(place, settings);
        const moved = place !== row;
        if (probe.ok && (moved || !probe.inRecovery)) {
          const report = await deps.host.fence(place, source);
          deps.telemetry.warn(`dbid ${row.dbid} answered at ${place.address}:${place.port} before its rebuild: fenced`, { content: item.content, ...report });
        }
      }
      const job = await deps.host.startRebuild(row, source, item.method);
      deps.telemetry.info(`${label}: rebuild of dbid ${row.dbid} by ${item.method} started`, { content: item.content, dbid: row.dbid, job: job.id, starts });
      return { job, starts, busyStarts };
    },

    /** Looks at the rebuild once: running, succeeded, lost (start again), or failed (RebuildFailedError). */
    'poll-rebuild': async (deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> => {
      const it = iteration(doc);
      const job = it.startRebuild?.job as HostJob | null | undefined;
      if (!job) return { state: 'succeeded' };
      // Still ours (a lost hold ends here, and the catch cancels the copy), and the other holds of the run stay alive.
      await renewHolds(deps, it.clusterId, execution, it.item.content, kind);
      const status = await deps.host.jobStatus(job);
      const fields = { content: it.item.content, dbid: it.item.dbid, ...(status.progress ?? {}) };
      if (status.state === 'running') {
        const watch = await watchForStall(deps, job, status, it.pollRebuild?.watch, it.stallSeconds, `the rebuild of dbid ${it.item.dbid} of content ${it.item.content}`);
        deps.telemetry.info('rebuild progress', fields);
        return { state: 'running', watch, ...(status.progress ? { progress: status.progress } : {}) };
      }
      if (status.state === 'succeeded') return { state: 'succeeded', ...(status.progress ? { progress: status.progress } : {}) };
      if (status.incrementalImpossible) {
        throw new RebuildFailedError(`pg_rewind cannot rebuild dbid ${it.item.dbid} of content ${it.item.content} incrementally (${status.incrementalImpossible}); run a full recovery (gprecoverseg -F, mode "full")`);
      }
      if (status.busy) {
        // An earlier start of this rebuild (a step retried after a crash) still runs: wait for it, then start again.
        deps.telemetry.info(`another rebuild of dbid ${it.item.dbid}'s data directory still runs: starting again once it ends`, fields);
        return { state: 'restart', busy: true };
      }
      if (status.wipeRefused) throw new RebuildFailedError(`refusing the full copy into dbid ${it.item.dbid}'s data directory: ${status.message ?? 'it is not a data directory of this content, nor empty'}; nothing was deleted`);
      if (status.lost && (it.startRebuild?.starts ?? 1) < MAX_REBUILD_STARTS) {
        deps.telemetry.warn(`the rebuild of dbid ${it.item.dbid} ended without an exit status (${status.message ?? 'process lost'}): starting it again`, fields);
        return { state: 'restart', message: status.message };
      }
      throw new RebuildFailedError(`the rebuild of dbid ${it.item.dbid} of content ${it.item.content} failed${status.exitCode !== undefined ? ` (exit ${status.exitCode})` : ''}: ${status.message ?? 'no message'}`);
    },

    /** The rebuilt instance runs as a standby: mark it up (`m/u/n`; the prober marks the pair in sync) and release the content. */
    'mark-recovered': async (deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> => {
      const it = iteration(doc);
      const { item } = it;
      const snapshot = await deps.catalog.load(it.clusterId);
      const row = rowOf(snapshot, item.dbid, item.content);
      const busy = (s: ClusterSnapshot, current: SegmentRow): void => {
        const holder = liveOperation(s, item.content, deps.now());
        if (current.status !== 'u' && holder && holder.execution !== execution) checkHeld(s, item.content, execution, deps.now());
      };
      busy(snapshot, row);
      // A standby that cannot stream (its WAL does not follow its primary's) is not recovered, whatever it says.
      let receiver = await deps.control.walReceiver(row); // checks its identity too
      for (const deadline = deps.now().getTime() + STREAM_WAIT_SECONDS * 1000; receiver.inRecovery && receiver.state !== 'streaming'; ) {
        if (deps.now().getTime() > deadline) {
          throw new RebuildFailedError(
            `dbid ${row.dbid} runs as a standby but does not stream from dbid ${item.sourceDbid} (its WAL receiver is ${receiver.state}) ${STREAM_WAIT_SECONDS} s after its rebuild; run a full recovery (mode "full", gprecoverseg -F)`,
          );
        }
        await (deps.sleep ?? sleep)(STREAM_POLL_MS);
        receiver = await deps.control.walReceiver(row);
      }
      if (!receiver.inRecovery) throw new RebuildFailedError(`dbid ${row.dbid} answers but is not a standby after its rebuild; leaving it down`);
      const now = deps.now();
      const version = await applyFresh(deps.catalog, it.clusterId, (s) => {
        const current = rowOf(s, item.dbid, item.content);
        busy(s, current);
        const held = liveOperation(s, item.content, now)?.execution === execution;
        if (current.status === 'u' && !held) return null;
        const up: SegmentRow = { ...current, status: 'u', mode: 'n' };
        const rows = current.status === 'u' ? [] : [up];
        const after = s.segments.map((r) => (r.dbid === up.dbid ? up : r));
        // It runs as a standby of the acting primary now: a fence still owed to it (a switchover's old primary) is done.
        const fenceOwed = s.pendingFences.some((f) => f.dbid === up.dbid);
        return {
          ...(fenceOwed ? { clearFences: [up.dbid] } : {}),
          rows,
          history: rows.map((r) => ({ time: now.toISOString(), dbid: r.dbid, description: historyText(r, `${label} rebuilt it (${item.method}); it streams from dbid ${item.sourceDbid}`) })),
          status: clusterStatusOf(after),
          ...(held ? { clearOperations: [{ content: item.content, execution }] } : {}),
        };
      });
      deps.telemetry.info(`${label}: dbid ${row.dbid} of content ${item.content} is a mirror again`, { content: item.content, dbid: row.dbid, receiver: receiver.state });
      return { content: item.content, dbid: item.dbid, recovered: true, method: item.method, receiver: receiver.state, ...(version !== undefined ? { version } : {}) };
    },

    /** Records why a content was not rebuilt, stops its rebuild if one runs, and releases the content. */
    'record-content-failure': async (deps: WorkflowDeps, doc: unknown, execution: string): Promise<Record<string, unknown>> => {
      const it = iteration(doc);
      const { item } = it;
      const cause = errorCause(doc);
      const job = it.startRebuild?.job as HostJob | null | undefined;
      if (job) await deps.host.cancelJob(job).catch(() => undefined); // best effort: the failure is recorded either way
      deps.telemetry.error(`${label}: content ${item.content} not rebuilt`, { content: item.content, dbid: item.dbid, cause });
      await applyFresh(deps.catalog, it.clusterId, (s) => {
        const held = liveOperation(s, item.content)?.execution === execution;
        return {
          rows: [],
          history: [{ time: deps.now().toISOString(), dbid: item.dbid, description: `FTS: ${label} of dbid ${item.dbid} with contentid ${item.content} failed: ${cause}`.slice(0, 1000) }],
          ...(held ? { clearOperations: [{ content: item.content, execution }] } : {}),
        };
      });
      return { content: item.content, dbid: item.dbid, failed: true, cause };
    },
  };
}

/** A content the workflow left alone, and why. */
export interface SkippedContent {
  content: number;
  reason: string;
}

/**
 * The run's result: which contents were done, which failed and why, which were left
 * alone and why; releases every hold this execution still has (a Map that failed as a
 * whole). `complete` only when nothing failed and nothing asked for was left alone.
 */
export async function summarize(
  deps: WorkflowDeps,
  doc: unknown,
  execution: string,
  what: { verb: string; skipped: SkippedContent[]; upToDate?: number[]; warnings?: string[] },
): Promise<Record<string, unknown>> {
  const d = (doc ?? {}) as { clusterId?: string; results?: unknown[]; error?: unknown };
  if (typeof d.clusterId !== 'string') throw new ValidationError('the state document has no clusterId');
  const results = Array.isArray(d.results) ? (d.results as { markRecovered?: { content: number; dbid: number }; recordContentFailure?: { content: number; dbid: number; cause: string } }[]) : [];
  const done = results.flatMap((r) => (r.markRecovered ? [{ content: r.markRecovered.content, dbid: r.markRecovered.dbid }] : []));
  const failed = results.flatMap((r) => (r.recordContentFailure ? [{ content: r.recordContentFailure.content, dbid: r.recordContentFailure.dbid, reason: r.recordContentFailure.cause }] : []));
  const runError = d.error ? errorCause(d) : undefined;
  await applyFresh(deps.catalog, d.clusterId, (s) => {
    const ours = s.pendingOperations.filter((op) => op.execution === execution);
    return ours.length ? { rows: [], history: [], clearOperations: ours.map((op) => ({ content: op.content, execution })) } : null;
  });
  const complete = !runError && failed.length === 0 && what.skipped.length === 0;
  const parts = [
    `${done.length} content(s) ${what.verb}${done.length ? ` (${done.map((c) => c.content).join(', ')})` : ''}`,
    ...failed.map((f) => `content ${f.content} failed: ${f.reason}`),
    ...what.skipped.map((s) => `content ${s.content} left alone: ${s.reason}`),
    ...(what.upToDate ?? []).map((c) => `content ${c}: nothing to do`),
    ...(runError ? [`the run stopped: ${runError}`] : []),
  ];
  return { complete, done, failed, skipped: what.skipped, upToDate: what.upToDate ?? [], warnings: what.warnings ?? [], message: parts.join('; ') };
}
