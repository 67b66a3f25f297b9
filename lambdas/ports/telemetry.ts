/**
 * Logs and metrics. In AWS: Powertools for AWS Lambda (structured JSON logs, EMF metrics
 * in namespace ServerlessFTS); locally: a timeline printer.
 */

/** Metric names; CloudWatch alarms are defined on some of them (lib/alarms.ts). */
export type MetricName =
  | 'RoundDurationMs'
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
  | 'PromotionFailed';

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
