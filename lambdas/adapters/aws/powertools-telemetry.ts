/** Telemetry through Powertools for AWS Lambda: JSON logs and EMF metrics. */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { MetricName, Telemetry } from '../../ports/telemetry';

/** Builds the Lambda telemetry; service name and namespace come from POWERTOOLS_* variables. */
export function powertoolsTelemetry(clusterId: string): Telemetry & { logger: Logger; metrics: Metrics } {
  const logger = new Logger({ persistentKeys: { clusterId } });
  const metrics = new Metrics({ namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'ServerlessFTS', defaultDimensions: { ClusterId: clusterId } });
  return {
    logger,
    metrics,
    info: (message, fields) => logger.info(message, { ...fields }),
    warn: (message, fields) => logger.warn(message, { ...fields }),
    error: (message, fields) => logger.error(message, { ...fields }),
    metric: (name: MetricName, value: number, unit = 'Count') =>
      metrics.addMetric(name, unit === 'Milliseconds' ? MetricUnit.Milliseconds : MetricUnit.Count, value),
    // Steps without a metric would otherwise log an 'empty metrics' warning at every flush.
    flush: () => {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    },
  };
}
