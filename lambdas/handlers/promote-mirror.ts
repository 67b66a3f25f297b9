/**
 * The PromoteMirror step function: every Task state of the workflow invokes it with
 * `{"step": ..., "input": <state document>}` (lib/promote-mirror-workflow.ts).
 */
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { powertoolsTelemetry } from '../adapters/aws/powertools-telemetry';
import { ValidationError } from '../core/errors';
import { runPromoteStep, type PromoteStep } from '../service/promotion';
import { segmentDeps } from './deps';
import { handlerEnvironment } from './environment';

const STEPS: readonly PromoteStep[] = ['validate', 'confirm-failure', 'flip-catalog', 'promote', 'verify-writable', 'clear-pending', 'notify', 'record-abort', 'record-failure'];

const env = handlerEnvironment();
const deps = segmentDeps(env);
const telemetry = powertoolsTelemetry(env.FTS_CLUSTER_ID);
const sns = env.FTS_NOTIFY_TOPIC_ARN ? new SNSClient({}) : undefined;

/** Runs the named step on the state document. */
export async function handler(event: { step?: unknown; input?: unknown }): Promise<Record<string, unknown>> {
  const step = event?.step;
  if (typeof step !== 'string' || !STEPS.includes(step as PromoteStep)) {
    throw new ValidationError(`unknown PromoteMirror step ${JSON.stringify(step)}; known steps are ${STEPS.join(', ')}`);
  }
  try {
    return await runPromoteStep(
      {
        ...deps,
        telemetry,
        now: () => new Date(),
        notify: sns
          ? async (subject, message) => {
              await sns.send(new PublishCommand({ TopicArn: env.FTS_NOTIFY_TOPIC_ARN, Subject: subject.slice(0, 100), Message: message }));
            }
          : undefined,
      },
      step as PromoteStep,
      event.input,
    );
  } finally {
    telemetry.flush();
  }
}
