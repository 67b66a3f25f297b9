/** The ActivateStandby step function (lambdas/workflows/activate-standby.ts): its steps, with the client endpoint the environment names. */
import { clientEndpointFromEnvironment } from '../adapters/aws/client-endpoint';
import { runActivateStandbyStepEvent } from '../service/activate-standby';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runActivateStandbyStepEvent, () => {
  const endpoint = clientEndpointFromEnvironment(process.env);
  return endpoint ? { endpoint } : {};
});
