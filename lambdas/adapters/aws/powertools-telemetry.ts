/** Telemetry through Powertools for AWS Lambda: JSON logs and EMF metrics. */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { MetricName, Telemetry } from '../../ports/telemetry';

/**
 * The Lambda context fields the logger puts on every line (`function_request_id` is the
 * request id). All optional: tests and local runs call handlers with less, or nothing.
 */
export interface InvocationContext {
  awsRequestId?: string;
  functionName?: string;
  functionVersion?: string;
  invokedFunctionArn?: string;
  memoryLimitInMB?: string;
}

/** Powertools telemetry of one Lambda container. */
export type PowertoolsTelemetry = Telemetry & {
  logger: Logger;
  metrics: Metrics;
  /**
   * Call first in every invocation: adds the Lambda context (request id, function name,
   * cold start) to every log line from now on, and publishes Powertools' `ColdStart`
   * metric once per container (dimensions ClusterId, service, function_name).
   */
  startInvocation(context?: InvocationContext): void;
};

/** Builds the Lambda telemetry; service name and namespace come from POWERTOOLS_* variables. */
export function powertoolsTelemetry(clusterId: string): PowertoolsTelemetry {
  const logger = new Logger({ persistentKeys: { clusterId } });
  const metrics = new Metrics({ namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'ServerlessFTS', defaultDimensions: { ClusterId: clusterId } });
  return {
    logger,
    metrics,
    startInvocation: (context) => {
      const functionName = context?.functionName ?? process.env.AWS_LAMBDA_FUNCTION_NAME;
      if (context) {
        logger.addContext({
          awsRequestId: context.awsRequestId ?? '',
          functionName: functionName ?? '',
          functionVersion: context.functionVersion ?? process.env.AWS_LAMBDA_FUNCTION_VERSION ?? '',
          invokedFunctionArn: context.invokedFunctionArn ?? '',
          memoryLimitInMB: context.memoryLimitInMB ?? process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '',
        } as Parameters<Logger['addContext']>[0]);
      }
      metrics.captureColdStartMetric(functionName);
    },
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
