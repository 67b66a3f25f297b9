/** What one probe of an instance reports. Produced by the SegmentProbe port, consumed by `decide`. */

/** Why a probe failed; classes are kept apart because they lead to different decisions. */
export type ProbeFailureKind =
  /** TCP connection refused: nothing listens (instance or postmaster dead). */
  | 'refused'
  /** No answer within the probe timeout (host down, network cut, or overloaded). */
  | 'timeout'
  /** The instance rejected the prober's credentials. */
  | 'authentication'
  /** The postmaster answers but is starting up or shutting down. */
  | 'starting-up'
  /** The postmaster answers but is in crash recovery (not accepting connections). */
  | 'in-recovery'
  /** Connected, but a critical directory check failed (disk gone, permissions). */
  | 'check-failed'
  /** Anything else. */
  | 'error';

/** The mirror's replication as its primary's walsender sees it. */
export interface MirrorReplication {
  /** `streaming` (caught up or nearly), `catchup` (connected, behind), `absent` (no walsender for it). */
  state: 'streaming' | 'catchup' | 'absent';
  /** `sync` when the mirror is the synchronous standby acknowledging commits. */
  syncState: 'sync' | 'async' | 'potential' | 'quorum' | 'none';
  flushLsn?: string;
  replayLsn?: string;
}

/** A probe that reached the instance and ran its checks. */
export interface ProbeAnswer {
  ok: true;
  dbid: number;
  /** True when the instance reports itself as a standby (`pg_is_in_recovery()`). */
  inRecovery: boolean;
  /** The mirror's replication (meaningful when not in recovery). */
  mirror: MirrorReplication;
  /** Whether `synchronous_standby_names` is set on the instance. */
  syncRepOn: boolean;
  /** Replay LSN when in recovery; current WAL LSN otherwise. */
  lsn?: string;
  attempts: number;
  durationMs: number;
}

/** A probe that failed on every attempt. */
export interface ProbeFailure {
  ok: false;
  dbid: number;
  kind: ProbeFailureKind;
  /** Short description, never containing credentials. */
  message: string;
  /** For `in-recovery`: the replay LSN reached, when the host can tell. */
  recoveryLsn?: string;
  attempts: number;
  durationMs: number;
}

export type ProbeResult = ProbeAnswer | ProbeFailure;
