/**
 * The lock per content between the prober and the workflows, read from a snapshot.
 *
 * A content is held by at most one of: a pending promotion (PromoteMirror's marker,
 * `ClusterSnapshot.pendingPromotions`) or a live pending operation of an operator
 * workflow (`ClusterSnapshot.pendingOperations`: RecoverSegments, Rebalance). The
 * prober leaves a held content alone, and a workflow refuses a content another holds
 * (ContentBusyError); the catalog-change validator keeps the two kinds apart.
 *
 * An operation lapses at its `expiresAt` (its execution has timed out and can no longer
 * act): a lapsed operation counts as absent everywhere. Pure: the caller passes `now`;
 * without it every stored operation counts as live (the safe reading when no clock is at
 * hand).
 */
import type { ClusterSnapshot, OperationKind, PendingOperation } from './model';

/** What holds a content: a pending promotion or an operator workflow. */
export type HoldKind = 'promotion' | OperationKind;

/** Who holds a content, as {@link contentHold} reports it. */
export interface ContentHold {
  kind: HoldKind;
  /** The workflow execution holding it (operations only: a pending promotion does not name one). */
  execution?: string;
  /** ISO-8601 time the hold was taken. */
  since: string;
}

/** True while an operation holds its content: its `expiresAt` is after `now` (always, without `now`). */
export function isLive(operation: PendingOperation, now?: Date): boolean {
  return now === undefined || Date.parse(operation.expiresAt) > now.getTime();
}

/** The live operation holding `content`, or undefined (none, or lapsed at `now`). */
export function liveOperation(snapshot: Pick<ClusterSnapshot, 'pendingOperations'>, content: number, now?: Date): PendingOperation | undefined {
  const operation = (snapshot.pendingOperations ?? []).find((op) => op.content === content);
  return operation && isLive(operation, now) ? operation : undefined;
}

/**
 * Who holds `content` at `now`: its pending promotion, else its live operation, else
 * undefined. A promotion comes first: it cannot coexist with a live operation (the
 * validator refuses that), but it may with a lapsed one read without a clock.
 */
export function contentHold(snapshot: Pick<ClusterSnapshot, 'pendingPromotions' | 'pendingOperations'>, content: number, now?: Date): ContentHold | undefined {
  const promotion = snapshot.pendingPromotions.find((p) => p.content === content);
  if (promotion) return { kind: 'promotion', since: promotion.startedAt };
  const operation = liveOperation(snapshot, content, now);
  return operation ? { kind: operation.kind, execution: operation.execution, since: operation.since } : undefined;
}

/** `rebalance execution X (since T, until U)`, for messages. */
export function describeOperation(operation: PendingOperation): string {
  return `${operation.kind} execution ${operation.execution} (since ${operation.since}, until ${operation.expiresAt})`;
}
