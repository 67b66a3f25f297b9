/**
 * The RecoverSegments step function: every Task state of the workflow invokes it with
 * `{"step", "input": <state document>, "execution": <execution name>}` (lambdas/workflows/recover-segments.ts).
 */
import { powertoolsTelemetry } from '../adapters/aws/powertools-telemetry';
import { runRecoverSegmentsStepEvent } from '../service/recover-segments';
import { segmentDeps } from './deps';
import { handlerEnvironment } from './environment';

const env = handlerEnvironment();
const deps = segmentDeps(env);
const telemetry = powertoolsTelemetry(env.FTS_CLUSTER_ID);

/** Runs the named step on the state document. */
export async function handler(event: { step?: unknown; input?: unknown; execution?: unknown }): Promise<Record<string, unknown>> {
  try {
    return await runRecoverSegmentsStepEvent({ ...deps, telemetry, now: () => new Date() }, event);
  } finally {
    telemetry.flush();
  }
}
