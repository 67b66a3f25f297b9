/** The ActivateStandby step function (lambdas/workflows/activate-standby.ts). */
import { runActivateStandbyStepEvent } from '../service/activate-standby';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runActivateStandbyStepEvent);
