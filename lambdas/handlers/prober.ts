/**
 * The prober Lambda. EventBridge Scheduler invokes it every minute with
 * `{"clusterId": ...}`; it takes the lease and runs probe rounds until the next
 * invocation is due (see lambdas/service/prober.ts).
 */
import { z } from 'zod';
import { SfnWorkflows } from '../adapters/aws/sfn-workflows';
import { powertoolsTelemetry } from '../adapters/aws/powertools-telemetry';
import { ValidationError } from '../core/errors';
import { MAX_WORST_CASE_PROBE_SECONDS } from '../core/settings';
import { runProber } from '../service/prober';
import { segmentDeps } from './deps';
import { handlerEnvironment, type LambdaContext } from './environment';

/** Kept back from the Lambda timeout to release the lease and flush metrics. */
const RELEASE_MARGIN_MS = 5_000;

const eventSchema = z.object({ clusterId: z.string().min(1) }).passthrough();

const env = handlerEnvironment();
const deps = segmentDeps(env);
const telemetry = powertoolsTelemetry(env.FTS_CLUSTER_ID);
if (!env.FTS_PROMOTE_STATE_MACHINE_ARN) throw new ValidationError('Lambda environment is incomplete: FTS_PROMOTE_STATE_MACHINE_ARN is required by the prober');
const workflows = new SfnWorkflows({
  PromoteMirror: env.FTS_PROMOTE_STATE_MACHINE_ARN,
  ...(env.FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN ? { ActivateStandby: env.FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN } : {}),
});

/** Runs one invocation's rounds; returns how many ran (0 when another prober held the lease). */
export async function handler(event: unknown, context: LambdaContext): Promise<{ rounds: number }> {
  // Every log line of the invocation carries the request id; the first one of a container also publishes ColdStart.
  telemetry.startInvocation(context);
  const parsed = eventSchema.safeParse(event);
  if (!parsed.success || parsed.data.clusterId !== env.FTS_CLUSTER_ID) {
    throw new ValidationError(`prober event must be {"clusterId": "${env.FTS_CLUSTER_ID}"}, got ${JSON.stringify(event)}`);
  }
  const start = Date.now();
  // The last round starts before the deadline and may take a worst-case probe to end.
  const lastRoundMs = MAX_WORST_CASE_PROBE_SECONDS * 1000 + RELEASE_MARGIN_MS;
  // One schedule period of probing, whatever the rate: the next invocation is due then (no gaps).
  const deadline = start + Math.min(env.FTS_SCHEDULE_PERIOD_SECONDS * 1000, context.getRemainingTimeInMillis() - lastRoundMs);
  const rounds = await runProber(
    { ...deps, workflows, telemetry, clock: Date.now, sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) },
    { clusterId: env.FTS_CLUSTER_ID, owner: context.awsRequestId, deadline },
  );
  telemetry.flush();
  return { rounds };
}
