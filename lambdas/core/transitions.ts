/**
 * The catalog transitions FTS may make, as data (pg_auto_failover's `KeeperFSM[]`):
 * each row is a (role, status, mode) change of one segment row, who makes it (the prober
 * or a workflow) and why. The invariant checker rejects any change not listed here, and
 * docs are generated from the same table.
 */
import type { CatalogChange, Mode, Role, SegmentRow, Status } from './model';
import { COORDINATOR_CONTENT, pairsByContent } from './model';

/** `role/status/mode`, e.g. `p/u/s`. */
export type RowState = `${Role}/${Status}/${Mode}`;

/** Who makes a transition: the prober, or one of the workflows. */
export type TransitionActor = 'prober' | 'PromoteMirror' | 'RecoverSegments' | 'Rebalance' | 'ActivateStandby' | 'InitStandby';

/**
 * One allowed transition of a segment row. The same (from, to) pair may be listed once
 * per actor (`by`), each with its own `why`; the validator cannot tell who writes, so a
 * change is allowed when some row has its (from, to).
 */
export interface Transition {
  from: RowState;
  to: RowState;
  /** Who makes it. */
  by: TransitionActor;
  /** Why it is made. */
  why: string;
}

/** Every transition, grouped by actor in this order (docs/transitions.md follows it). */
export const TRANSITIONS: readonly Transition[] = [
  // The prober: mirror health as its primary reports it.
  { from: 'p/u/s', to: 'p/u/n', by: 'prober', why: 'the mirror is down or behind: the primary runs on without synchronous replication' },
  { from: 'm/u/s', to: 'm/u/n', by: 'prober', why: 'the mirror is connected but fell behind (catching up)' },
  { from: 'm/u/s', to: 'm/d/n', by: 'prober', why: 'the mirror stayed down past the grace period (or crash-looped)' },
  { from: 'm/u/n', to: 'm/d/n', by: 'prober', why: 'a catching-up mirror stayed down past the grace period' },
  { from: 'm/d/n', to: 'm/u/n', by: 'prober', why: 'the mirror reconnected and is catching up' },
  { from: 'p/u/n', to: 'p/u/s', by: 'prober', why: 'the mirror caught up and acknowledges commits synchronously' },
  { from: 'm/u/n', to: 'm/u/s', by: 'prober', why: 'the mirror caught up and acknowledges commits synchronously' },
  { from: 'm/d/n', to: 'm/u/s', by: 'prober', why: 'the mirror reconnected and caught up between two probe rounds' },
  // The prober: contents that cannot fail over.
  { from: 'p/u/n', to: 'p/d/n', by: 'prober', why: 'the primary failed with no in-sync mirror (double fault, or no mirror): the content is unavailable' },
  { from: 'p/d/n', to: 'p/u/n', by: 'prober', why: 'the unavailable primary answers again' },
  // Failover (PromoteMirror's catalog flip): the only unplanned way a mirror becomes the acting primary.
  { from: 'p/u/s', to: 'm/d/n', by: 'PromoteMirror', why: 'the acting primary failed: it is demoted in the catalog before its mirror is promoted' },
  { from: 'm/u/s', to: 'p/u/n', by: 'PromoteMirror', why: 'the in-sync mirror of a failed primary is promoted; it runs without a mirror until recovery' },
  // Recovery (gprecoverseg).
  {
    from: 'm/d/n',
    to: 'm/u/n',
    by: 'RecoverSegments',
    why: 'gprecoverseg rebuilt the down mirror (pg_rewind, or pg_basebackup for a full or moved recovery) and started it streaming from the acting primary; the prober marks the pair s once it has caught up',
  },
  // Rebalance (gprecoverseg -r): a planned switchover back to the preferred roles.
  { from: 'p/u/s', to: 'm/d/n', by: 'Rebalance', why: 'the acting primary, a mirror by preference, is stopped cleanly for a planned switchover once its in-sync mirror has received all its WAL' },
  { from: 'm/u/s', to: 'p/u/n', by: 'Rebalance', why: "the in-sync mirror, a primary by preference, becomes the acting primary again (promoted after the old primary's clean stop, no commit lost)" },
  { from: 'm/d/n', to: 'm/u/n', by: 'Rebalance', why: 'the old primary, rewound into a mirror of the new primary, streams again' },
  // Standby activation (gpactivatestandby): content -1 only; the same change removes the old coordinator's row.
  {
    from: 'm/u/s',
    to: 'p/u/n',
    by: 'ActivateStandby',
    why: 'the in-sync standby becomes the coordinator (preferred role p, same dbid) once the old coordinator is fenced; it runs without a standby until gpinitstandby adds one',
  },
  {
    from: 'm/u/n',
    to: 'p/u/n',
    by: 'ActivateStandby',
    why: 'an asynchronous (or lagging) standby becomes the coordinator only when the operator accepts losing the commits it had not received (Greenplum asynchronous mode, or --ignore-lag)',
  },
  {
    from: 'm/d/n',
    to: 'p/u/n',
    by: 'ActivateStandby',
    why: 'a standby marked down (its coordinator could no longer see it) becomes the coordinator only when forced with --ignore-lag, after ConfirmDown found it running as a standby: the way out when the coordinator died after its standby was marked down',
  },
  // A new standby (gpinitstandby): its row is added as m/d/n before the copy, so a crash leaves it named in the catalog.
  { from: 'm/d/n', to: 'm/u/n', by: 'InitStandby', why: 'the new standby, copied with pg_basebackup and started, streams from the coordinator; the prober marks the pair s once it has caught up' },
];

/** `p/u/s` for a row. */
export const rowState = (row: Pick<SegmentRow, 'role' | 'status' | 'mode'>): RowState => `${row.role}/${row.status}/${row.mode}`;

/**
 * The transition a row change makes (the first listed, or the one of actor `by`), or
 * undefined when it is not allowed (for `by`).
 */
export function findTransition(before: SegmentRow, after: SegmentRow, by?: TransitionActor): Transition | undefined {
  return TRANSITIONS.find((t) => t.from === rowState(before) && t.to === rowState(after) && (by === undefined || t.by === by));
}

/** Rows with a change applied (rows replaced by dbid). */
export function applyRows(rows: readonly SegmentRow[], change: Pick<CatalogChange, 'rows'>): SegmentRow[] {
  const updated = new Map(change.rows.map((r) => [r.dbid, r]));
  return rows.map((r) => updated.get(r.dbid) ?? r);
}

/**
 * Checks the invariants FTS holds at every step; returns the violations (empty when
 * fine). With `before` and `change`, also checks the change itself.
 */
export function checkInvariants(after: readonly SegmentRow[], before?: readonly SegmentRow[], change?: CatalogChange): string[] {
  const violations: string[] = [];
  const counts = new Map<number, number>();
  for (const row of after) if (row.role === 'p') counts.set(row.content, (counts.get(row.content) ?? 0) + 1);
  for (const [content, n] of counts) if (n > 1) violations.push(`content ${content} has ${n} acting primaries`);
  for (const pair of pairsByContent(after)) {
    if (!pair.primary) violations.push(`content ${pair.content} has no acting primary`);
    if (pair.primary && pair.mirror && pair.primary.mode !== pair.mirror.mode) {
      violations.push(`content ${pair.content}: primary dbid ${pair.primary.dbid} mode ${pair.primary.mode} differs from mirror dbid ${pair.mirror.dbid} mode ${pair.mirror.mode}`);
    }
    if (pair.mirror?.mode === 's' && pair.mirror.status === 'd') violations.push(`mirror dbid ${pair.mirror.dbid} is down but marked in sync`);
  }
  if (!before) return violations;
  const old = new Map(before.map((r) => [r.dbid, r]));
  for (const row of after) {
    const prev = old.get(row.dbid);
    if (!prev || rowState(prev) === rowState(row)) continue;
    // Only an activation (the coordinator's row removed in the same change) may make a standby that is not in sync the coordinator.
    const activation = row.content === COORDINATOR_CONTENT && before.some((r) => r.content === COORDINATOR_CONTENT && r.role === 'p' && change?.removeRows?.includes(r.dbid));
    if (prev.role === 'm' && row.role === 'p' && !(prev.status === 'u' && prev.mode === 's') && !activation) {
      violations.push(`dbid ${row.dbid} was promoted although it was ${rowState(prev)}, not an in-sync mirror`);
    }
    if (!findTransition(prev, row)) {
      violations.push(`dbid ${row.dbid}: ${rowState(prev)} -> ${rowState(row)} is not an allowed transition`);
    }
    if (change && !change.history.some((h) => h.dbid === row.dbid)) violations.push(`dbid ${row.dbid} changed without a history row`);
  }
  return violations;
}
