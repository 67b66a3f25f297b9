/**
 * Ports to segment instances (SQL, through `pg`) and to the hosts they run on
 * (processes and files: SSM Run Command on EC2, child processes locally).
 */
import type { SegmentRow } from '../core/model';
import type { ProbeResult } from '../core/probe';
import type { Settings } from '../core/settings';

/** Options of one probe. */
export interface ProbeOptions {
  /**
   * Also prove the instance can write: commit a heartbeat row with
   * `synchronous_commit = local` inside the probe timeout (acting primaries only; a
   * failure is kind `disk`). Default false (read-only probe, e.g. of rows marked down).
   */
  writeCheck?: boolean;
}

/**
 * Probes instances: one TCP connection per attempt, with retries. Every probe checks
 * the instance's identity (`fts.dbid`, `fts.content`, and the row's system identifier
 * when the catalog has one): a mismatch is a failure of kind `wrong-instance`.
 */
export interface SegmentProbe {
  /**
   * Probes one instance with the settings' timeout, retries and delay; `mirror` names the
   * walsender whose replication it reports. Never throws.
   */
  probe(segment: SegmentRow, settings: Settings, mirror?: SegmentRow, options?: ProbeOptions): Promise<ProbeResult>;
  /**
   * Probes many in parallel, at most `settings.probeParallelism` at once; `catalogRows`
   * (the whole snapshot) tells each primary's mirror.
   */
  probeAll(segments: readonly SegmentRow[], settings: Settings, catalogRows?: readonly SegmentRow[]): Promise<ProbeResult[]>;
}

/** What a mirror's WAL receiver reports (the mirror's second opinion on its primary). */
export interface WalReceiverStatus {
  /** True when the instance is a standby (in recovery). */
  inRecovery: boolean;
  /** WAL receiver state (`streaming`, `waiting`, ...) or `absent`. */
  state: string;
  /** Host and port the receiver is connected to, when streaming. */
  senderHost?: string;
  senderPort?: number;
  /** Epoch ms of the last message received from the sender, when known. */
  lastMessageAt?: number;
  /**
   * Seconds since the last message from the sender, measured by the mirror's own clock
   * (`now() - last_msg_receipt_time` on the mirror), so clock skew between the mirror's
   * host and the caller does not matter.
   */
  heardSecondsAgo?: number;
  replayLsn?: string;
  /** Last WAL position received and flushed by the receiver (`pg_last_wal_receive_lsn()`); a standby only. */
  receivedLsn?: string;
}

/**
 * SQL-level control of one instance. Every call is idempotent, and every call first
 * checks that the instance it reached is the row's (`fts.dbid`, `fts.content`, system
 * identifier when known): WrongInstanceError otherwise, with nothing done.
 */
export interface SegmentControl {
  /** Promotes a mirror (no-op if already a primary), waits until it leaves recovery, turns its sync rep off. */
  promote(segment: SegmentRow, timeoutMs: number): Promise<void>;
  /**
   * Sets `synchronous_standby_names` to the mirror's name (on) or empty (off) and reloads.
   * `guard` is asked right before the change is sent (the prober: is my lease still
   * live?); false throws NotLeaseHolderError with nothing changed, so a prober that was
   * paused mid-action does not change sync rep behind its successor.
   */
  setSyncRep(primary: SegmentRow, mirror: SegmentRow | undefined, on: boolean, guard?: () => boolean): Promise<void>;
  /** Creates the mirror's physical replication slot on the primary if missing. */
  ensureSlot(primary: SegmentRow, mirrorDbid: number): Promise<void>;
  /**
   * Drops the mirror's replication slot on the primary (a standby removed for good, so the
   * primary no longer keeps WAL for it); no error when there is none. A slot still in use
   * (its mirror streams) is not dropped: HostCommandError.
   */
  dropSlot(primary: SegmentRow, mirrorDbid: number): Promise<void>;
  /** The mirror's view of its WAL receiver. */
  walReceiver(segment: SegmentRow): Promise<WalReceiverStatus>;
  /** Runs CHECKPOINT within `timeoutMs` (before a planned stop, to shorten it). */
  checkpoint(segment: SegmentRow, timeoutMs: number): Promise<void>;
  /** Commits a row in the control table and returns; throws NotWritableError. */
  verifyWritable(segment: SegmentRow, timeoutMs: number): Promise<void>;
}

/** How to rebuild an instance as a mirror. */
export type RebuildMethod = 'rewind' | 'basebackup';

/** What a fence found and did. */
export interface FenceReport {
  /** The instance was running when the fence began. */
  wasRunning: boolean;
  /** It had to be killed (SIGKILL) because a normal stop did not end it (e.g. frozen). */
  killed: boolean;
  /** The data directory did not exist (host replaced): nothing to fence there. */
  missing: boolean;
}

/** What a stop found, and what the stopped instance's control file says (`pg_controldata`). */
export interface StopReport {
  /** A live postmaster ran in the data directory when the stop began. */
  wasRunning: boolean;
  /**
   * `Latest checkpoint location` after the stop (e.g. `0/3000060`): after a fast stop, the
   * shutdown checkpoint, the last WAL record the instance wrote; a planned switchover
   * checks that the mirror received WAL past it. Absent when there is no control file.
   */
  latestCheckpointLsn?: string;
  /** `Database cluster state` after the stop: `shut down`, `shut down in recovery`, `in production` (after an immediate stop), ... */
  clusterState?: string;
}

/**
 * A host operation started in the background (a rebuild), polled until it ends;
 * JSON-serializable (it travels in the workflow's state document).
 */
export interface HostJob {
  /** Opaque to callers: what the adapter needs to find the job again (SSM command id and instance id; a local job directory). */
  id: string;
  dbid: number;
  /** ISO-8601 time it was started. */
  startedAt: string;
}

/** Where a background job stands. */
export interface HostJobStatus {
  state: 'running' | 'succeeded' | 'failed';
  /** The latest `PROGRESS` report of the copy tool, when it printed one. */
  progress?: { bytes: number; total: number; tool: string };
  exitCode?: number;
  /** pg_rewind cannot work (the `RECOVERY incremental-impossible reason=<r>` line): the reason token; a full recovery can. */
  incrementalImpossible?: string;
  /** The full copy refused to empty the target directory (exit 11: not a data directory of that content, nor empty). */
  wipeRefused?: boolean;
  /** Another rebuild of the same data directory still runs (exit 12): nothing was done; start again once it ends. */
  busy?: boolean;
  /**
   * The job ended without an exit status because its process vanished (killed, host
   * restarted, the command lost): starting it again may well work. A job that timed out
   * or was cancelled is not lost.
   */
  lost?: boolean;
  /** Failed: a short, clear account for the operator (the tail of stderr). */
  message?: string;
}

/** Process- and file-level control of instances on their host. */
export interface SegmentHost {
  /**
   * Fences an instance that must never again accept writes (an old primary after a
   * failover): first writes `standby.signal` and a `primary_conninfo` pointing at
   * `newPrimary` (when given), so that any restart (systemd, reboot, an operator) comes
   * up read-only, then stops it (immediate), killing it when a stop does not end it (a
   * frozen postmaster and its backends). Idempotent; succeeds on a stopped instance.
   */
  fence(segment: SegmentRow, newPrimary: SegmentRow | undefined): Promise<FenceReport>;
  /**
   * Starts the instance and waits until it accepts connections (or is a streaming standby).
   * `asPrimary` first removes `standby.signal`, so it comes up writable: only for undoing a
   * planned switchover before its catalog flip (the catalog still names it primary).
   */
  start(segment: SegmentRow, options?: { asPrimary?: boolean }): Promise<void>;
  /**
   * Stops it: `fast` (clean) or `immediate` (crash-like). No error if already stopped.
   * Reports whether it ran, and the checkpoint and state `pg_controldata` shows afterwards.
   */
  stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<StopReport>;
  /** Rebuilds `mirror` from `primary` (pg_rewind or pg_basebackup), writes its standby config, starts it; waits until done. */
  rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void>;
  /**
   * Starts the rebuild {@link rebuildAsMirror} does in the background, with progress
   * reports, and returns at once: first makes sure the mirror's slot exists on `primary`,
   * then starts the rebuild script. Poll it with {@link jobStatus}. A second rebuild of
   * the same data directory while one runs fails (its status says so) and changes nothing.
   */
  startRebuild(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<HostJob>;
  /** Where a job stands; a job whose process vanished without an exit code (killed, host restarted) is `failed`. */
  jobStatus(job: HostJob): Promise<HostJobStatus>;
  /** Stops the job's script and its children; no error when it is already over. */
  cancelJob(job: HostJob): Promise<void>;
  /** Writes `primary_conninfo`, `primary_slot_name` and `standby.signal` for the mirror. */
  writeMirrorConfig(mirror: SegmentRow, primary: SegmentRow): Promise<void>;
}
