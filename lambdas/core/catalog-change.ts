/**
 * The catalog-change validator: the rules every `Catalog.apply` enforces, whoever
 * writes (prober, workflow step, CLI), before anything is written. Pure: the adapter
 * passes the snapshot it read, the change, and the current time; a broken rule is a
 * ValidationError naming every problem, and nothing is written.
 *
 * The rules: rows, history rows and markers are well-formed; a change replaces existing
 * rows and never moves an instance to another content, and adds or removes rows only at
 * the coordinator (a standby added or removed, the old coordinator removed by an
 * activation); every changed row has a
 * history row; every (role, status, mode) change is a row of the transitions table
 * (./transitions.ts), and only an in-sync mirror is promoted; the catalog stays valid as
 * a whole (one acting primary per content, equal modes within a pair); pending
 * promotions and fences name rows of their content; operations name contents of the
 * catalog.
 *
 * The lock per content (./operations.ts): a content is held by at most one pending
 * promotion or live operation. Taking a content another holds, starting a promotion on
 * a content an operation holds, or releasing another execution's operation is a
 * ContentBusyError (a ValidationError), checked once the change is otherwise valid.
 */
import { ContentBusyError, ValidationError } from './errors';
import type { CatalogChange, ClusterSnapshot, ClusterStatus, HistoryRow, PendingFence, PendingOperation, PendingPromotion, SegmentRow } from './model';
import { COORDINATOR_CONTENT } from './model';
import { describeOperation, isLive } from './operations';
import { validateHistoryRows, validateOperationReleases, validatePendingFences, validatePendingOperations, validatePendingPromotions, validateSegmentRows } from './rows';
import { checkInvariants } from './transitions';

const CLUSTER_STATUSES: readonly ClusterStatus[] = ['up', 'degraded', 'unavailable'];

/** A change whose parts are each well-formed (see {@link parseChange}). */
export interface ParsedChange {
  rows: SegmentRow[];
  history: HistoryRow[];
  status?: ClusterStatus;
  setPending: PendingPromotion[];
  clearPending: number[];
  setFences: PendingFence[];
  clearFences: number[];
  setOperations: PendingOperation[];
  clearOperations: { content: number; execution: string }[];
  addRows: SegmentRow[];
  removeRows: number[];
}

/** What the change leaves: pending promotions and fences by key, when it touches them. */
export interface ValidatedChange {
  /** content -> marker; undefined when the change does not touch pending promotions. */
  pending?: Record<string, PendingPromotion>;
  /** dbid -> fence; undefined when the change does not touch fences. */
  fences?: Record<string, PendingFence>;
  /** content -> operation; undefined when the change does not touch operations. */
  operations?: Record<string, PendingOperation>;
  /** The rows after the change. */
  segments: SegmentRow[];
}

/** Checks each part of a change on its own (no snapshot needed). Throws ValidationError. */
export function parseChange(change: CatalogChange): ParsedChange {
  const issues: string[] = [];
  const clearPending = change.clearPending ?? [];
  const clearFences = change.clearFences ?? [];
  for (const content of clearPending) if (!Number.isInteger(content)) issues.push(`clearPending holds ${JSON.stringify(content)}, not a content id`);
  for (const dbid of clearFences) if (!Number.isInteger(dbid)) issues.push(`clearFences holds ${JSON.stringify(dbid)}, not a dbid`);
  for (const dbid of change.removeRows ?? []) if (!Number.isInteger(dbid)) issues.push(`removeRows holds ${JSON.stringify(dbid)}, not a dbid`);
  if (change.status !== undefined && !CLUSTER_STATUSES.includes(change.status)) {
    issues.push(`cluster status must be one of ${CLUSTER_STATUSES.join('|')}, got ${JSON.stringify(change.status)}`);
  }
  if (issues.length) throw new ValidationError(`invalid catalog change: ${issues.join('; ')}`, issues);
  return {
    rows: validateSegmentRows(change.rows ?? []),
    history: validateHistoryRows(change.history ?? []),
    ...(change.status !== undefined ? { status: change.status } : {}),
    setPending: validatePendingPromotions(change.setPending ?? []),
    clearPending,
    setFences: validatePendingFences(change.setFences ?? []),
    clearFences,
    setOperations: validatePendingOperations(change.setOperations ?? []),
    clearOperations: validateOperationReleases(change.clearOperations ?? []),
    addRows: validateSegmentRows(change.addRows ?? []),
    removeRows: change.removeRows ?? [],
  };
}

const ROW_FIELDS: readonly (keyof SegmentRow)[] = [
  'dbid', 'content', 'role', 'preferredRole', 'mode', 'status', 'port', 'hostname', 'address', 'datadir',
  'instanceId', 'availabilityZone', 'placementGroup', 'partitionNumber', 'systemIdentifier',
];

/** True when two rows are the same in every field. */
export const sameRow = (a: SegmentRow, b: SegmentRow): boolean => ROW_FIELDS.every((f) => a[f] === b[f]);

/**
 * Checks a parsed change against the snapshot it will be applied to; returns what it
 * leaves. Throws ValidationError listing every broken rule (see the module comment), or
 * ContentBusyError when the change is valid but a content it takes or releases is held
 * by someone else. `now` is when the change is applied (adapters read the clock): an
 * operation whose `expiresAt` is not after it has lapsed and holds nothing; without
 * `now`, every stored operation holds its content.
 */
export function validateChange(current: ClusterSnapshot, change: ParsedChange, now?: Date): ValidatedChange {
  const { clusterId } = current;
  const { rows, history, setPending, clearPending, setFences, clearFences, setOperations, clearOperations, addRows, removeRows } = change;
  const fail = (issues: string[], what = `invalid change to cluster ${clusterId}`): never => {
    throw new ValidationError(`${what}: ${issues.join('; ')}`, issues);
  };
  const issues: string[] = [];
  const stored = new Map(current.segments.map((r) => [r.dbid, r]));
  for (const row of rows) {
    const old = stored.get(row.dbid);
    if (!old) issues.push(`dbid ${row.dbid} is not in the catalog of cluster ${clusterId}; a change only replaces existing rows`);
    else if (old.content !== row.content) issues.push(`dbid ${row.dbid} belongs to content ${old.content}, not ${row.content}; an instance never changes content`);
    else if (!sameRow(old, row) && !history.some((h) => h.dbid === row.dbid)) issues.push(`dbid ${row.dbid} changes without a history row`);
  }
  issues.push(...coordinatorPairIssues(current, change));
  for (const h of history) {
    if (!stored.has(h.dbid) && !addRows.some((r) => r.dbid === h.dbid)) issues.push(`history row names dbid ${h.dbid}, which is not in the catalog of cluster ${clusterId}`);
  }
  if (issues.length) fail(issues);

  const changed = new Map(rows.map((r) => [r.dbid, r]));
  const segments = [...current.segments.filter((r) => !removeRows.includes(r.dbid)).map((r) => changed.get(r.dbid) ?? r), ...addRows];
  try {
    validateSegmentRows(segments);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    fail(err.issues, `change to cluster ${clusterId} would leave an invalid catalog`);
  }
  // The transitions table, enforced in production: every state change is a listed row.
  const broken = checkInvariants(segments, current.segments, { rows, history, removeRows }).filter((v) => /transition|promoted although|without a history row/.test(v));
  if (broken.length) fail(broken, `change to cluster ${clusterId} breaks the transitions table`);

  for (const p of setPending) {
    if (clearPending.includes(p.content)) issues.push(`content ${p.content} is both set and cleared as pending promotion`);
    const pairDbids = segments.filter((r) => r.content === p.content).map((r) => r.dbid);
    for (const dbid of [p.mirrorDbid, p.failedPrimaryDbid]) {
      // (a removed row is gone from `segments`: a promotion marker never names it)
      if (!pairDbids.includes(dbid)) issues.push(`pending promotion of content ${p.content} names dbid ${dbid}, not a row of that content`);
    }
  }
  for (const f of setFences) {
    const row = removeRows.includes(f.dbid) ? undefined : stored.get(f.dbid);
    if (!row) issues.push(`pending fence names dbid ${f.dbid}, which is not in the catalog of cluster ${clusterId}`);
    else if (row.content !== f.content) issues.push(`pending fence of dbid ${f.dbid} names content ${f.content}; the row is of content ${row.content}`);
    if (clearFences.includes(f.dbid)) issues.push(`dbid ${f.dbid} is both set and cleared as pending fence`);
  }
  const contents = new Set(current.segments.map((r) => r.content));
  for (const op of setOperations) {
    if (!contents.has(op.content)) issues.push(`pending operation names content ${op.content}, which is not in the catalog of cluster ${clusterId}`);
    if (clearOperations.some((c) => c.content === op.content)) issues.push(`content ${op.content} is both set and cleared as pending operation`);
  }
  if (issues.length) fail(issues);

  const storedOps = new Map((current.pendingOperations ?? []).map((op) => [op.content, op]));
  const busy = busyIssues(current, change, storedOps, now);
  if (busy.length) throw new ContentBusyError(`change to cluster ${clusterId} refused, a content is held by someone else: ${busy.join('; ')}`, busy);

  let pending: Record<string, PendingPromotion> | undefined;
  if (setPending.length || clearPending.length) {
    pending = {};
    for (const p of current.pendingPromotions) if (!clearPending.includes(p.content)) pending[String(p.content)] = p;
    for (const p of setPending) pending[String(p.content)] = p;
  }
  let fences: Record<string, PendingFence> | undefined;
  // A removed row owes no fence any more (the catalog no longer knows it).
  const droppedFences = current.pendingFences.filter((f) => removeRows.includes(f.dbid)).map((f) => f.dbid);
  if (setFences.length || clearFences.length || droppedFences.length) {
    fences = {};
    for (const f of current.pendingFences) if (!clearFences.includes(f.dbid) && !droppedFences.includes(f.dbid)) fences[String(f.dbid)] = f;
    for (const f of setFences) fences[String(f.dbid)] = f;
  }
  let operations: Record<string, PendingOperation> | undefined;
  if (setOperations.length || clearOperations.length) {
    operations = {};
    // A release by another execution is a no-op only for a lapsed operation (a live one was refused above): it stays stored.
    const released = (op: PendingOperation) => clearOperations.some((c) => c.content === op.content && c.execution === op.execution);
    for (const op of storedOps.values()) if (!released(op)) operations[String(op.content)] = op;
    for (const op of setOperations) operations[String(op.content)] = op;
  }
  return { pending, fences, operations, segments };
}

/**
 * Rows come and go only at the coordinator (content -1), as gpinitstandby and
 * gpactivatestandby make them: a standby row is added where there is none (role and
 * preferred role `m`, not in sync, a new dbid); a standby row is removed; the
 * coordinator row is removed only by the change that makes its standby the coordinator.
 * Each added or removed row has a history row, and a removed row is not also updated.
 */
function coordinatorPairIssues(current: ClusterSnapshot, change: ParsedChange): string[] {
  const { rows, history, addRows, removeRows } = change;
  const issues: string[] = [];
  const stored = new Map(current.segments.map((r) => [r.dbid, r]));
  const coordinatorRows = current.segments.filter((r) => r.content === COORDINATOR_CONTENT && !removeRows.includes(r.dbid));
  for (const row of addRows) {
    const where = `added dbid ${row.dbid}`;
    if (stored.has(row.dbid)) issues.push(`${where} is already in the catalog; a new instance takes a new dbid`);
    else if (row.content !== COORDINATOR_CONTENT) issues.push(`${where} is of content ${row.content}; only a standby of the coordinator (content -1) is added`);
    else if (row.role !== 'm' || row.preferredRole !== 'm' || row.mode !== 'n') issues.push(`${where} must be a standby not yet in sync (role m, preferred m, mode n: m/d/n while it is built, m/u/n once it streams), got ${row.role}/${row.status}/${row.mode} preferred ${row.preferredRole}`);
    else if (coordinatorRows.some((r) => r.role === 'm')) issues.push(`${where}: the coordinator has a standby already (dbid ${coordinatorRows.find((r) => r.role === 'm')!.dbid}); remove it first`);
    if (addRows.filter((r) => r.dbid === row.dbid).length > 1) issues.push(`${where} is added twice`);
    if (!history.some((h) => h.dbid === row.dbid)) issues.push(`${where} has no history row`);
  }
  if (addRows.length > 1) issues.push(`a change adds at most one standby, got ${addRows.length} rows`);
  for (const dbid of removeRows) {
    const row = stored.get(dbid);
    if (!row) {
      issues.push(`removed dbid ${dbid} is not in the catalog of cluster ${current.clusterId}`);
      continue;
    }
    if (row.content !== COORDINATOR_CONTENT) issues.push(`removed dbid ${dbid} is of content ${row.content}; only the coordinator's rows (content -1) are removed`);
    if (row.role === 'p') {
      const promoted = rows.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p' && stored.get(r.dbid)?.role === 'm');
      if (!promoted) issues.push(`removed dbid ${dbid} is the coordinator; it is removed only by the change that makes its standby the coordinator`);
    }
    if (rows.some((r) => r.dbid === dbid)) issues.push(`dbid ${dbid} is both updated and removed`);
    if (!history.some((h) => h.dbid === dbid)) issues.push(`removed dbid ${dbid} has no history row`);
  }
  return issues;
}

/**
 * The lock rules: a content is taken only when no pending promotion and no live
 * operation of another execution holds it (after the change), a promotion starts only
 * on a content no live operation holds (after the change), and a live operation is
 * released only by its own execution.
 */
function busyIssues(current: ClusterSnapshot, change: ParsedChange, storedOps: Map<number, PendingOperation>, now: Date | undefined): string[] {
  const { setPending, clearPending, setOperations, clearOperations } = change;
  const issues: string[] = [];
  const promotions = new Map(current.pendingPromotions.filter((p) => !clearPending.includes(p.content)).map((p) => [p.content, p]));
  for (const p of setPending) promotions.set(p.content, p);
  for (const op of setOperations) {
    const promotion = promotions.get(op.content);
    const held = storedOps.get(op.content);
    if (promotion) {
      issues.push(`content ${op.content} has a pending promotion of dbid ${promotion.mirrorDbid} (started ${promotion.startedAt}): ${op.kind} execution ${op.execution} cannot take it`);
    } else if (held && held.execution !== op.execution && isLive(held, now)) {
      issues.push(`content ${op.content} is held by ${describeOperation(held)}: ${op.kind} execution ${op.execution} cannot take it`);
    }
  }
  for (const p of setPending) {
    const released = clearOperations.some((c) => c.content === p.content);
    const held = storedOps.get(p.content);
    if (held && !released && isLive(held, now) && !setOperations.some((op) => op.content === p.content)) {
      issues.push(`content ${p.content} is held by ${describeOperation(held)}: no promotion may start on it`);
    }
  }
  for (const c of clearOperations) {
    const held = storedOps.get(c.content);
    if (held && held.execution !== c.execution && isLive(held, now)) {
      issues.push(`content ${c.content} is held by ${describeOperation(held)}, not by execution ${c.execution}: a workflow releases only its own hold`);
    }
  }
  return issues;
}
