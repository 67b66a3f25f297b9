/** The InitStandby step function (lambdas/workflows/init-standby.ts). */
import { runInitStandbyStepEvent } from '../service/init-standby';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runInitStandbyStepEvent);
