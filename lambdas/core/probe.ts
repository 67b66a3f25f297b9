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
  /**
   * Connected, but the instance could not write and flush a heartbeat row within the
   * probe timeout (full or read-only disk, I/O error): it cannot serve writes.
   */
  | 'disk'
  /**
   * The instance that answered at the row's address is not the one the row means: its
   * `fts.dbid` / `fts.content` settings or its system identifier differ (DNS change,
   * reused IP, typo). Never acted on: the real instance's state is unknown.
   */
  | 'wrong-instance'
  /**
   * The postmaster answered but refused the session for lack of connection slots
   * (SQLSTATE 53300): it is alive. Not a failure.
   */
  | 'too-many-connections'
  /** Anything else. */
  | 'error';

/** The mirror's replication as its primary's walsender sees it (`pg_stat_replication`). */
export interface MirrorReplication {
  /** `streaming` (caught up or nearly), `catchup` (connected, behind), `absent` (no walsender for it). */
  state: 'streaming' | 'catchup' | 'absent';
  /** `sync` when the mirror is the synchronous standby acknowledging commits. */
  syncState: 'sync' | 'async' | 'potential' | 'quorum' | 'none';
  /**
   * The walsender's own state when there is one (`streaming`, `catchup`, `startup`,
   * `backup`, `stopping`): what `gpstate -f` shows as "WAL Sender State". A walsender in
   * `startup` or `stopping` replicates nothing and counts as `absent` above.
   */
  senderState?: string;
  /** Last WAL position sent to the mirror. */
  sentLsn?: string;
  /** Last position the mirror wrote, flushed and replayed, as it reported them. */
  writeLsn?: string;
  flushLsn?: string;
  replayLsn?: string;
  /** `replay_lag` in seconds: time from a local flush to the mirror's replay of it (absent while idle). */
  replayLagSeconds?: number;
}

/** What a standby's WAL receiver reports (`pg_stat_wal_receiver` and the recovery functions). */
export interface WalReceiverObservation {
  /** `streaming`, `waiting`, `starting`, `stopping`, ... or `absent` (no WAL receiver). */
  state: string;
  /** Last WAL position received and flushed (`pg_last_wal_receive_lsn()`). */
  receivedLsn?: string;
  /** Last WAL position replayed (`pg_last_wal_replay_lsn()`). */
  replayLsn?: string;
  /** Seconds since the last message from the sender, by the standby's own clock. */
  heardSecondsAgo?: number;
}

/** A probe that reached the instance and ran its checks. */
export interface ProbeAnswer {
  ok: true;
  dbid: number;
  /** True when the instance reports itself as a standby (`pg_is_in_recovery()`). */
  inRecovery: boolean;
  /** The mirror's replication (meaningful when not in recovery). */
  mirror: MirrorReplication;
  /** The instance's own WAL receiver, when it is in recovery (a mirror, a standby). */
  receiver?: WalReceiverObservation;
  /** Whether `synchronous_standby_names` is set on the instance (as a new session reads the configuration). */
  syncRepOn: boolean;
  /**
   * Whether the instance's checkpointer has applied its configuration: it is idle in its
   * main loop or pausing in a spread checkpoint, the two places it reloads the
   * configuration. Commits wait for a synchronous standby only once the checkpointer has
   * applied `synchronous_standby_names`; during an immediate checkpoint or one behind
   * schedule it does not, while new sessions already see the new value.
   */
  syncRepSettled?: boolean;
  /** Replay LSN when in recovery; current WAL LSN otherwise. */
  lsn?: string;
  /** `pg_postmaster_start_time()`, ISO-8601. */
  startedAt?: string;
  /**
   * When the instance last (re)initialized its shared memory, ISO-8601: the start of its
   * checkpointer process. Later than `startedAt` after a crash reset of the postmaster
   * (a backend crashed and every backend was restarted); a new value is a new reset.
   */
  initializedAt?: string;
  /** `wal_sender_timeout` in milliseconds (0 = disabled); the second opinion relies on it. */
  walSenderTimeoutMs?: number;
  /** The instance's system identifier (`pg_control_system()`), as a decimal string. */
  systemIdentifier?: string;
  /** True when the probe wrote and flushed its heartbeat row (acting primaries only). */
  wrote?: boolean;
  /**
   * Why the heartbeat was not written although the instance answered and is writable
   * (a lock held on the heartbeat row, a cancelled statement, missing privileges): the
   * instance is alive; this is not a disk failure.
   */
  writeError?: string;
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
  /**
   * For `disk`: `io` when PostgreSQL reported an I/O error (full disk, read-only file
   * system, a file it cannot write or open), `timeout` when the write did not finish in
   * time without waiting on a lock (a hung disk, or an overloaded instance).
   */
  diskError?: 'io' | 'timeout';
  attempts: number;
  durationMs: number;
}

export type ProbeResult = ProbeAnswer | ProbeFailure;
