/**
 * The catalog port: `gp_segment_configuration`, `gp_configuration_history`, the cluster
 * item (settings, version, status, pending promotions) and the prober lease.
 *
 * Consistency needs (what an adapter must guarantee):
 * - `load` is a strongly consistent read of the cluster item and all its rows, taken so
 *   that rows and version belong together.
 * - `apply` is atomic and compare-and-set on the version: all rows, history rows, status,
 *   pending promotions and pending fences are written with version + 1, or nothing is
 *   ({@link CatalogConflictError} when the version moved); a prober's writes are also
 *   conditioned on its lease (fencing token), so a prober paused past its lease writes nothing.
 * - The lease calls are compare-and-set on owner, token and expiry: at most one live
 *   holder; the token grows with every acquisition (a fencing token).
 */
import type { CatalogChange, ClusterSnapshot, HistoryRow, ProberMemory, SegmentRow } from '../core/model';
import type { Settings } from '../core/settings';
import { ValidationError } from '../core/errors';

/** A held prober lease. */
export interface Lease {
  clusterId: string;
  owner: string;
  /** Fencing token: increases with every acquisition, never reused. */
  token: number;
  /** Epoch milliseconds when the lease lapses unless renewed. */
  expiresAt: number;
}

/** A lease a write is conditioned on: held by `owner` with `token` and live at `now`. */
export interface LeaseCondition extends Pick<Lease, 'owner' | 'token'> {
  /** Epoch milliseconds the caller considers now. */
  now: number;
}

export interface Catalog {
  /** Creates the cluster item and its rows at version 1; fails if the cluster exists. */
  initialize(clusterId: string, segments: SegmentRow[], settings: Settings, time: string): Promise<void>;
  /** Strongly consistent snapshot; throws ClusterNotFoundError. */
  load(clusterId: string): Promise<ClusterSnapshot>;
  /** The cluster's settings as stored. */
  loadSettings(clusterId: string): Promise<Settings>;
  /**
   * Atomically applies a change conditioned on `expectedVersion` (CatalogConflictError)
   * and, when given, on the prober lease (NotLeaseHolderError); returns the new version.
   */
  apply(clusterId: string, expectedVersion: number, change: CatalogChange, lease?: LeaseCondition): Promise<number>;
  /** History rows, oldest first (at most `limit`, the newest ones). */
  history(clusterId: string, limit?: number): Promise<HistoryRow[]>;
  /** Takes the lease if free or expired; null when another owner holds a live lease. */
  acquireLease(clusterId: string, owner: string, ttlMs: number, now: number): Promise<Lease | null>;
  /** Extends a held lease and stores the prober's memory; throws LeaseLostError if it was taken over. */
  renewLease(lease: Lease, ttlMs: number, now: number, memory?: ProberMemory): Promise<Lease>;
  /** Gives the lease up (no error if already lost). */
  releaseLease(lease: Lease): Promise<void>;
  /** Removes the cluster and all its rows (local mode teardown, tests). */
  destroy(clusterId: string): Promise<void>;
}

/** The argument rules every Catalog adapter enforces: a cluster id is a non-empty string. */
export function checkClusterId(clusterId: string): void {
  if (typeof clusterId !== 'string' || !clusterId.length) throw new ValidationError(`cluster id must be a non-empty string, got ${JSON.stringify(clusterId)}`);
}

/** The argument rules every Catalog adapter enforces on lease calls. */
export function checkLeaseArgs(owner: string, ttlMs: number, now: number): void {
  if (typeof owner !== 'string' || !owner.length) throw new ValidationError('lease owner must be a non-empty string');
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new ValidationError(`lease ttlMs must be a positive number, got ${ttlMs}`);
  if (!Number.isFinite(now)) throw new ValidationError(`lease time must be epoch milliseconds, got ${now}`);
}
