/**
 * Logs and metrics. In AWS: Powertools for AWS Lambda (structured JSON logs, EMF metrics
 * in namespace ServerlessFTS); locally: a timeline printer.
 */

/** Metric names; CloudWatch alarms are defined on some of them (lib/alarms.ts). */
export type MetricName =
  | 'RoundDurationMs'
  /** One content's probe, decision and catalog write (its actions excluded). */
  | 'ContentRoundMs'
  | 'ProbesFailed'
  | 'Decisions'
  | 'FailoversStarted'
  | 'DoubleFault'
  | 'ContentUnavailable'
  | 'UnreachablePrimary'
  | 'ProbeMisconfigured'
  | 'CoordinatorUnreachable'
  | 'ProberRoundFailed'
  | 'PromotionSucceeded'
  | 'PromotionFailed'
  /** A PromoteMirror execution was aborted (the primary proved alive). */
  | 'PromotionAborted'
  /** An instance at a row's address is not the row's instance (identity mismatch). */
  | 'WrongInstance'
  /** A row marked down answered as a writable primary and was fenced. */
  | 'ZombieFenced'
  /** A fence could not be carried out yet (host unreachable): it is pending in the catalog. */
  | 'FencePending'
  /** A primary's postmaster reset itself after a backend crash. */
  | 'PrimaryReset'
  /** A primary keeps resetting (past the threshold): a failure. */
  | 'PrimaryResetLoop'
  /** A primary could not write and flush its heartbeat (full or read-only disk). */
  | 'DiskFailure'
  /** A primary refused the prober for lack of connection slots (alive). */
  | 'TooManyConnections'
  /** A primary's wal_sender_timeout is too long (or off) for the second opinion to be sound. */
  | 'ReplicationTimeoutMisconfigured'
  /** The coordinator's standby is marked down and does not stream (each round it lasts). */
  | 'StandbyDown'
  /** The standby lacks more WAL than `standbyLagAlarmBytes` (each round it lasts). */
  | 'StandbyLagging'
  /** Gauge: bytes of WAL the standby has not flushed (coordinator position minus its flush position), each round the coordinator answers. */
  | 'StandbyLagBytes'
  /** The prober started ActivateStandby itself (`autoActivateStandby`). */
  | 'StandbyActivationsStarted'
  /** ActivateStandby made the standby the coordinator. */
  | 'StandbyActivated'
  /** ActivateStandby refused (the coordinator answers, or its fence was not confirmed). */
  | 'ActivationRefused'
  /** ActivateStandby failed half-way (the catalog and the hold say where). */
  | 'ActivationFailed';

export interface Telemetry {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Adds to a metric (count or milliseconds). */
  metric(name: MetricName, value: number, unit?: 'Count' | 'Milliseconds'): void;
  /** Sends what was buffered (end of a round or a step). */
  flush(): void;
}

/** Telemetry that drops everything (one-off CLI calls). */
export const silentTelemetry: Telemetry = { info() {}, warn() {}, error() {}, metric() {}, flush() {} };
