/** The Rebalance step function (lambdas/workflows/rebalance.ts). */
import { runRebalanceStepEvent } from '../service/rebalance';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runRebalanceStepEvent);
