/**
 * The PromoteMirror step function: every Task state of the workflow invokes it with
 * `{"step", "input": <state document>, "execution": <execution name>}` (lambdas/workflows/promote-mirror.ts).
 */
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { powertoolsTelemetry } from '../adapters/aws/powertools-telemetry';
import { runPromoteStepEvent } from '../service/promotion';
import { segmentDeps } from './deps';
import { handlerEnvironment } from './environment';

const env = handlerEnvironment();
const deps = segmentDeps(env);
const telemetry = powertoolsTelemetry(env.FTS_CLUSTER_ID);
const sns = env.FTS_NOTIFY_TOPIC_ARN ? new SNSClient({}) : undefined;

async function notify(subject: string, message: string): Promise<void> {
  await sns?.send(new PublishCommand({ TopicArn: env.FTS_NOTIFY_TOPIC_ARN, Subject: subject.slice(0, 100), Message: message }));
}

/** Runs the named step on the state document. */
export async function handler(event: { step?: unknown; input?: unknown; execution?: unknown }): Promise<Record<string, unknown>> {
  try {
    return await runPromoteStepEvent({ ...deps, telemetry, now: () => new Date(), notify: sns ? notify : undefined }, event);
  } finally {
    telemetry.flush();
  }
}
