/** Notifications of the workflow step functions: SNS when FTS_NOTIFY_TOPIC_ARN is set. */
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import type { WorkflowDeps } from '../service/steps';
import type { HandlerEnvironment } from './environment';

/** The `notify` dependency for the topic the environment names (none without it). */
export function snsNotify(env: HandlerEnvironment): Pick<WorkflowDeps, 'notify'> {
  if (!env.FTS_NOTIFY_TOPIC_ARN) return {};
  const sns = new SNSClient({});
  const topic = env.FTS_NOTIFY_TOPIC_ARN;
  return { notify: async (subject, message) => void (await sns.send(new PublishCommand({ TopicArn: topic, Subject: subject.slice(0, 100), Message: message }))) };
}
