/** The ActivateStandby step function (lambdas/workflows/activate-standby.ts): its steps, with the client endpoint and the notification topic the environment names. */
import { clientEndpointFromEnvironment } from '../adapters/aws/client-endpoint';
import { runActivateStandbyStepEvent } from '../service/activate-standby';
import { snsNotify } from './notify';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runActivateStandbyStepEvent, (env) => {
  const endpoint = clientEndpointFromEnvironment(process.env);
  return { ...snsNotify(env), ...(endpoint ? { endpoint } : {}) };
});
