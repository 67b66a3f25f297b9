/**
 * Ports to segment instances (SQL, through `pg`) and to the hosts they run on
 * (processes and files: SSM Run Command on EC2, child processes locally).
 */
import type { SegmentRow } from '../core/model';
import type { ProbeResult } from '../core/probe';
import type { Settings } from '../core/settings';

/** Probes instances: one TCP connection and one query each, with retries. */
export interface SegmentProbe {
  /**
   * Probes one instance with the settings' timeout, retries and delay; `mirror` names the
   * walsender whose replication it reports. Never throws.
   */
  probe(segment: SegmentRow, settings: Settings, mirror?: SegmentRow): Promise<ProbeResult>;
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
  replayLsn?: string;
}

/** SQL-level control of one instance. Every call is idempotent. */
export interface SegmentControl {
  /** Promotes a mirror (no-op if already a primary), waits until it leaves recovery, turns its sync rep off. */
  promote(segment: SegmentRow, timeoutMs: number): Promise<void>;
  /** Sets `synchronous_standby_names` to the mirror's name (on) or empty (off) and reloads. */
  setSyncRep(primary: SegmentRow, mirror: SegmentRow | undefined, on: boolean): Promise<void>;
  /** Creates the mirror's physical replication slot on the primary if missing. */
  ensureSlot(primary: SegmentRow, mirrorDbid: number): Promise<void>;
  /** The mirror's view of its WAL receiver. */
  walReceiver(segment: SegmentRow): Promise<WalReceiverStatus>;
  /** Commits a row in the control table and returns; throws NotWritableError. */
  verifyWritable(segment: SegmentRow, timeoutMs: number): Promise<void>;
}

/** How to rebuild an instance as a mirror. */
export type RebuildMethod = 'rewind' | 'basebackup';

/** Process- and file-level control of instances on their host. */
export interface SegmentHost {
  /** Starts the instance and waits until it accepts connections (or is a streaming standby). */
  start(segment: SegmentRow): Promise<void>;
  /** Stops it: `fast` (clean) or `immediate` (crash-like). No error if already stopped. */
  stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<void>;
  /** Rebuilds `mirror` from `primary` (pg_rewind or pg_basebackup), writes its standby config, starts it. */
  rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void>;
  /** Writes `primary_conninfo`, `primary_slot_name` and `standby.signal` for the mirror. */
  writeMirrorConfig(mirror: SegmentRow, primary: SegmentRow): Promise<void>;
}
