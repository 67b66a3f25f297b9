/**
 * The PromoteMirror step function (lambdas/workflows/promote-mirror.ts), which also
 * publishes its notifications to the SNS topic when FTS_NOTIFY_TOPIC_ARN is set.
 */
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { runPromoteStepEvent } from '../service/promotion';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runPromoteStepEvent, (env) => {
  if (!env.FTS_NOTIFY_TOPIC_ARN) return {};
  const sns = new SNSClient({});
  const topic = env.FTS_NOTIFY_TOPIC_ARN;
  return { notify: async (subject, message) => void (await sns.send(new PublishCommand({ TopicArn: topic, Subject: subject.slice(0, 100), Message: message }))) };
});
