/**
 * The catalog-change validator: the rules every `Catalog.apply` enforces, whoever
 * writes (prober, workflow step, CLI), before anything is written. Pure: the adapter
 * passes the snapshot it read and the change; a broken rule is a ValidationError naming
 * every problem, and nothing is written.
 *
 * The rules: rows, history rows and markers are well-formed; a change only replaces
 * existing rows and never moves an instance to another content; every changed row has a
 * history row; every (role, status, mode) change is a row of the transitions table
 * (./transitions.ts), and only an in-sync mirror is promoted; the catalog stays valid as
 * a whole (one acting primary per content, equal modes within a pair); pending
 * promotions and fences name rows of their content.
 */
import { ValidationError } from './errors';
import type { CatalogChange, ClusterSnapshot, ClusterStatus, HistoryRow, PendingFence, PendingPromotion, SegmentRow } from './model';
import { validateHistoryRows, validatePendingFences, validatePendingPromotions, validateSegmentRows } from './rows';
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
}

/** What the change leaves: pending promotions and fences by key, when it touches them. */
export interface ValidatedChange {
  /** content -> marker; undefined when the change does not touch pending promotions. */
  pending?: Record<string, PendingPromotion>;
  /** dbid -> fence; undefined when the change does not touch fences. */
  fences?: Record<string, PendingFence>;
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
 * leaves. Throws ValidationError listing every broken rule (see the module comment).
 */
export function validateChange(current: ClusterSnapshot, change: ParsedChange): ValidatedChange {
  const { clusterId } = current;
  const { rows, history, setPending, clearPending, setFences, clearFences } = change;
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
  for (const h of history) if (!stored.has(h.dbid)) issues.push(`history row names dbid ${h.dbid}, which is not in the catalog of cluster ${clusterId}`);
  if (issues.length) fail(issues);

  const changed = new Map(rows.map((r) => [r.dbid, r]));
  const segments = current.segments.map((r) => changed.get(r.dbid) ?? r);
  try {
    validateSegmentRows(segments);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    fail(err.issues, `change to cluster ${clusterId} would leave an invalid catalog`);
  }
  // The transitions table, enforced in production: every state change is a listed row.
  const broken = checkInvariants(segments, current.segments, { rows, history }).filter((v) => /transition|promoted although|without a history row/.test(v));
  if (broken.length) fail(broken, `change to cluster ${clusterId} breaks the transitions table`);

  for (const p of setPending) {
    if (clearPending.includes(p.content)) issues.push(`content ${p.content} is both set and cleared as pending promotion`);
    const pairDbids = segments.filter((r) => r.content === p.content).map((r) => r.dbid);
    for (const dbid of [p.mirrorDbid, p.failedPrimaryDbid]) {
      if (!pairDbids.includes(dbid)) issues.push(`pending promotion of content ${p.content} names dbid ${dbid}, not a row of that content`);
    }
  }
  for (const f of setFences) {
    const row = stored.get(f.dbid);
    if (!row) issues.push(`pending fence names dbid ${f.dbid}, which is not in the catalog of cluster ${clusterId}`);
    else if (row.content !== f.content) issues.push(`pending fence of dbid ${f.dbid} names content ${f.content}; the row is of content ${row.content}`);
    if (clearFences.includes(f.dbid)) issues.push(`dbid ${f.dbid} is both set and cleared as pending fence`);
  }
  if (issues.length) fail(issues);

  let pending: Record<string, PendingPromotion> | undefined;
  if (setPending.length || clearPending.length) {
    pending = {};
    for (const p of current.pendingPromotions) if (!clearPending.includes(p.content)) pending[String(p.content)] = p;
    for (const p of setPending) pending[String(p.content)] = p;
  }
  let fences: Record<string, PendingFence> | undefined;
  if (setFences.length || clearFences.length) {
    fences = {};
    for (const f of current.pendingFences) if (!clearFences.includes(f.dbid)) fences[String(f.dbid)] = f;
    for (const f of setFences) fences[String(f.dbid)] = f;
  }
  return { pending, fences, segments };
}
