/**
 * The lock per content between the prober and the workflows, read from a snapshot.
 *
 * A content is held by at most one of: a pending promotion (PromoteMirror's marker,
 * `ClusterSnapshot.pendingPromotions`) or a live pending operation of an operator
 * workflow (`ClusterSnapshot.pendingOperations`: RecoverSegments, Rebalance). The
 * prober leaves a held content alone, and a workflow refuses a content another holds
 * (ContentBusyError); the catalog-change validator keeps the two kinds apart.
 *
 * An operation lapses at its `expiresAt` unless its holder renews it (a stopped
 * execution renews nothing): a lapsed operation counts as absent everywhere. Pure: the caller passes `now`;
 * without it every stored operation counts as live (the safe reading when no clock is at
 * hand).
 */
import type { ClusterSnapshot, PendingOperation } from './model';

/** True while an operation holds its content: its `expiresAt` is after `now` (always, without `now`). */
export function isLive(operation: PendingOperation, now?: Date): boolean {
  return now === undefined || Date.parse(operation.expiresAt) > now.getTime();
}

/** The live operation holding `content`, or undefined (none, or lapsed at `now`). */
export function liveOperation(snapshot: Pick<ClusterSnapshot, 'pendingOperations'>, content: number, now?: Date): PendingOperation | undefined {
  const operation = (snapshot.pendingOperations ?? []).find((op) => op.content === content);
  return operation && isLive(operation, now) ? operation : undefined;
}

/** `rebalance execution X (since T, until U)`, for messages. */
export function describeOperation(operation: PendingOperation): string {
  return `${operation.kind} execution ${operation.execution} (since ${operation.since}, until ${operation.expiresAt})`;
}
