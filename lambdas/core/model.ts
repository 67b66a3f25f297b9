/**
 * The catalog model: `gp_segment_configuration` and `gp_configuration_history` rows,
 * plus where each instance runs on EC2. Pure data, shared by every layer.
 */

/** Role of a segment instance: `p` primary, `m` mirror (Greenplum's one-letter codes). */
export type Role = 'p' | 'm';
/** `u` up, `d` down. */
export type Status = 'u' | 'd';
/** `s` synchronized (the pair is in sync), `n` not in sync. Both rows of a pair carry the same mode. */
export type Mode = 's' | 'n';

/** The coordinator (Greenplum's master) and its standby have content -1. */
export const COORDINATOR_CONTENT = -1;

/** One row of `gp_segment_configuration`, plus its EC2 placement. */
export interface SegmentRow {
  /** Unique id of the instance, stable for its life. */
  dbid: number;
  /** The shard this instance holds; -1 for the coordinator and its standby. */
  content: number;
  /** Current (acting) role. */
  role: Role;
  /** Role assigned at initialization; rebalance restores it. */
  preferredRole: Role;
  mode: Mode;
  status: Status;
  port: number;
  hostname: string;
  /** Address the prober and peers connect to (an IP or resolvable name). */
  address: string;
  datadir: string;
  /** EC2 instance id of the host, when known. */
  instanceId?: string;
  availabilityZone?: string;
  placementGroup?: string;
  /** Partition number within a partition placement group. */
  partitionNumber?: number;
  /**
   * System identifier of the content's database cluster (`pg_control_system()`, a
   * decimal string). Both instances of a content share it (a mirror is a physical copy);
   * probes and workflow steps refuse an instance whose identifier differs.
   */
  systemIdentifier?: string;
}

/** One row of `gp_configuration_history`. */
export interface HistoryRow {
  /** ISO-8601 time of the change. */
  time: string;
  dbid: number;
  description: string;
}

/**
 * `up`: every content has an acting primary up and its mirror in sync.
 * `degraded`: every content is served, but some run without an in-sync mirror.
 * `unavailable`: at least one content has no working primary (double fault, or a
 * failed primary without a mirror).
 */
export type ClusterStatus = 'up' | 'degraded' | 'unavailable';

/**
 * A promotion whose catalog flip is written but whose action may not have finished
 * (CloudNativePG's pending `TargetPrimary`): any step can resume from it.
 */
export interface PendingPromotion {
  content: number;
  /** The mirror being promoted (acting primary in the catalog once flipped). */
  mirrorDbid: number;
  /** The failed primary (now role `m`, status `d`). */
  failedPrimaryDbid: number;
  /** Catalog version written by the flip. */
  version: number;
  startedAt: string;
}

/**
 * A fence the catalog owes an instance (an old primary after a failover, or a row
 * marked down that answered as a writable primary): recorded before it is attempted,
 * cleared once it is done, retried by the prober while the host does not answer.
 */
export interface PendingFence {
  dbid: number;
  content: number;
  /** The content's acting primary when the fence was recorded (its `primary_conninfo` target). */
  newPrimaryDbid?: number;
  since: string;
  reason: string;
}

/**
 * Operator workflows that hold a content while they work on it: gprecoverseg's recovery
 * and rebalance of segments, and the coordinator's standby activation and standby
 * (re)initialization (content -1).
 */
export type OperationKind = 'recovery' | 'rebalance' | 'activation' | 'standby-init';

/**
 * A content held by an operator workflow (RecoverSegments = gprecoverseg, Rebalance =
 * gprecoverseg -r): the prober leaves it alone, other workflows refuse it. With
 * {@link PendingPromotion} (the promotion kind of hold) it is the lock per content
 * between the prober and the workflows; see lambdas/core/operations.ts.
 */
export interface PendingOperation {
  content: number;
  kind: OperationKind;
  /** Name of the workflow execution that holds the content. */
  execution: string;
  /** ISO-8601 time it was taken. */
  since: string;
  /** ISO-8601 time after which the hold lapses unless the holder renews it (a stopped execution renews nothing). */
  expiresAt: string;
  /**
   * What the holder does to the content, as the JSON its workflow planned (e.g. which row
   * is rebuilt from which, by which method, from which old place): shown to operators, and
   * read back when the same execution plans again after a retry.
   */
  plan?: string;
}

/** One failover attempt the prober started (a failure episode), by content. */
export interface FailoverAttempt {
  failedPrimaryDbid: number;
  /** Catalog version the attempt was decided on. */
  version: number;
  /** 1 for the first attempt at that version; a retry of the same episode counts up. */
  attempt: number;
  at: string;
}

/**
 * What the prober last saw of a pair's replication, from both ends: the acting primary's
 * walsender for the mirror (`sender`, at each answer of the primary) and the mirror's own
 * WAL receiver (`receiver`, at each read-only probe of the mirror). Kept for the
 * coordinator and its standby, so `ftsctl state -f` shows it (`gpstate -f`) without
 * connecting to the instances. Positions are LSNs (`X/Y`); times are ISO-8601.
 */
export interface PairReplication {
  /** The acting primary (the coordinator) and the mirror (the standby) the entry is about; a new pair starts a new entry. */
  primaryDbid: number;
  mirrorDbid: number;
  sender?: {
    at: string;
    /** WAL sender state as pg_stat_replication shows it (`streaming`, `catchup`, `startup`, ...), `absent` without one. */
    state: string;
    /** `sync`, `async`, `potential`, `quorum`, or `none` without a walsender. */
    syncState: string;
    /** `synchronous_standby_names` set at the primary. */
    syncRepOn: boolean;
    /** The mode the prober kept the pair in: synchronous (`standbySynchronous`; always for segments) or not. */
    synchronous: boolean;
    /** The primary's current WAL position. */
    primaryLsn?: string;
    sentLsn?: string;
    writeLsn?: string;
    flushLsn?: string;
    replayLsn?: string;
    /** `primaryLsn` minus `flushLsn`: WAL the mirror has not flushed yet (what an activation now would lose, asynchronously). */
    lagBytes?: number;
    /** pg_stat_replication's `replay_lag`, seconds. */
    replayLagSeconds?: number;
  };
  receiver?: {
    at: string;
    /** pg_stat_wal_receiver's status (`streaming`, `waiting`, ...), `absent` without a receiver, `unreachable` when the probe failed. */
    state: string;
    /** `pg_last_wal_receive_lsn()`. */
    receivedLsn?: string;
    /** `pg_last_wal_replay_lsn()`. */
    replayLsn?: string;
    /** Seconds since the last message from the primary, by the mirror's own clock. */
    heardSecondsAgo?: number;
    /** Why the probe failed, when it did. */
    error?: string;
  };
}

/**
 * What the prober remembers between rounds, stored with its lease so a prober that
 * replaces a dead one resumes with the same view.
 */
export interface ProberMemory {
  /** content -> ISO time the primary first reported its mirror not streaming. */
  mirrorDownSince: Record<string, string>;
  /** content -> how often the mirror stopped streaming since `since` (a crash loop, gpdb #10327). */
  mirrorDrops: Record<string, { count: number; since: string }>;
  /** dbid -> replay LSN last reported while the instance was in crash recovery. */
  recoveryLsn: Record<string, string>;
  /** dbid -> when crash recovery was first seen or last made visible progress. */
  recoveryProgressAt: Record<string, string>;
  /** content -> a PromoteMirror workflow the prober started and whose flip it has not seen yet. */
  failoversStarted: Record<string, FailoverAttempt>;
  /**
   * content -> the primary's WAL position when sync rep was seen on with the mirror as
   * synchronous standby while the pair was not in sync: once the mirror has flushed up to
   * it, every commit acknowledged before sync rep took effect is on the mirror, and the
   * pair may be marked `s`.
   */
  syncTarget: Record<string, string>;
  /** dbid -> crash resets of a primary's postmaster: its last initialization time and the times resets were seen. */
  resets: Record<string, { initializedAt: string; seenAt: string[] }>;
  /**
   * content -> what the prober last saw of the pair's replication (the coordinator's
   * content -1 only: one small entry, whatever the number of segments). Optional: a
   * memory stored before it existed has none.
   */
  replication?: Record<string, PairReplication>;
}

/** A prober memory with nothing in it. */
export const emptyMemory = (): ProberMemory => ({ mirrorDownSince: {}, mirrorDrops: {}, recoveryLsn: {}, recoveryProgressAt: {}, failoversStarted: {}, syncTarget: {}, resets: {}, replication: {} });

/** A consistent read of the catalog for one cluster. */
export interface ClusterSnapshot {
  clusterId: string;
  /** Catalog version; every write is conditioned on it and increments it. */
  version: number;
  status: ClusterStatus;
  segments: SegmentRow[];
  /** Pending promotions by content. */
  pendingPromotions: PendingPromotion[];
  /** Fences owed, by dbid. */
  pendingFences: PendingFence[];
  /** Contents held by operator workflows, by content (at most one per content; lapsed ones included). */
  pendingOperations: PendingOperation[];
  memory: ProberMemory;
}

/**
 * A change to the catalog, applied atomically: row updates, their history rows, the
 * cluster status, pending promotion markers, fences and operations, version + 1.
 */
export interface CatalogChange {
  /** Full new rows (replacing the rows with the same dbid). */
  rows: SegmentRow[];
  /** One history row per changed row, at least. */
  history: HistoryRow[];
  status?: ClusterStatus;
  /** Pending promotions to record. */
  setPending?: PendingPromotion[];
  /** Contents whose pending promotion is finished. */
  clearPending?: number[];
  /** Fences to record (replacing a pending fence of the same dbid). */
  setFences?: PendingFence[];
  /** dbids whose pending fence is done. */
  clearFences?: number[];
  /** Operations to record, each replacing the operation of its content (taking or renewing a hold). */
  setOperations?: PendingOperation[];
  /**
   * Operations released, each by the execution that holds it: a content no operation
   * holds is a no-op; one held by a different execution is refused (a late workflow
   * never releases another's hold).
   */
  clearOperations?: { content: number; execution: string }[];
  /**
   * Rows added (a new standby of the coordinator, gpinitstandby): content -1, role `m`,
   * a dbid the catalog does not hold, a history row each.
   */
  addRows?: SegmentRow[];
  /**
   * dbids of rows removed, each with a history row: the coordinator's standby
   * (gpinitstandby -r), or the old coordinator when the same change makes its standby
   * the coordinator (gpactivatestandby).
   */
  removeRows?: number[];
}

/** Rows of one content: its acting primary and its mirror (if any). */
export interface ContentPair {
  content: number;
  primary?: SegmentRow;
  mirror?: SegmentRow;
}

/** Groups rows by content; the acting primary is the row with role `p`. */
export function pairsByContent(segments: readonly SegmentRow[]): ContentPair[] {
  const byContent = new Map<number, ContentPair>();
  for (const row of segments) {
    const pair = byContent.get(row.content) ?? { content: row.content };
    if (row.role === 'p') pair.primary = row;
    else pair.mirror = row;
    byContent.set(row.content, pair);
  }
  return [...byContent.values()].sort((a, b) => a.content - b.content);
}

/** Replication slot / application name a mirror uses, derived from its dbid. */
export const mirrorSlotName = (mirrorDbid: number): string => `fts_mirror_dbid_${mirrorDbid}`;

const parseLsn = (lsn: string): bigint => {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};

/** Compares PostgreSQL LSNs of the form `X/Y`; negative when a < b. */
export function compareLsn(a: string, b: string): number {
  const d = parseLsn(a) - parseLsn(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** Bytes of WAL from `from` to `to` (negative when `to` is behind). */
export const lsnBytes = (from: string, to: string): number => Number(parseLsn(to) - parseLsn(from));
