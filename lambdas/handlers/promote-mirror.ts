/**
 * The PromoteMirror step function (lambdas/workflows/promote-mirror.ts), which also
 * publishes its notifications to the SNS topic when FTS_NOTIFY_TOPIC_ARN is set.
 */
import { runPromoteStepEvent } from '../service/promotion';
import { snsNotify } from './notify';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runPromoteStepEvent, snsNotify);
