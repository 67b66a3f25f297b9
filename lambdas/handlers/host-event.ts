/**
 * The EC2 host-event Lambda. An EventBridge rule invokes it with every "EC2 Instance
 * State-change Notification" of the account and region whose state is `stopping`,
 * `stopped`, `shutting-down` or `terminated` (the events carry no tags: the catalog rows'
 * `instanceId` tell which instances are the cluster's). It probes the acting primaries on
 * that instance at once and starts their failover the way the prober would, without the
 * prober's lease and without writing the catalog (lambdas/service/host-event.ts).
 */
import { SfnWorkflows } from '../adapters/aws/sfn-workflows';
import { powertoolsTelemetry, type InvocationContext } from '../adapters/aws/powertools-telemetry';
import { ValidationError } from '../core/errors';
import { handleHostEvent, parseHostEvent, type HostEventReport } from '../service/host-event';
import { segmentDeps } from './deps';
import { handlerEnvironment } from './environment';

const env = handlerEnvironment();
if (!env.FTS_PROMOTE_STATE_MACHINE_ARN) throw new ValidationError('Lambda environment is incomplete: FTS_PROMOTE_STATE_MACHINE_ARN is required by the host-event function');
// The catalog (read only: the role has no write) and the probe, built as the prober builds them.
const { catalog, probe } = segmentDeps(env);
const telemetry = powertoolsTelemetry(env.FTS_CLUSTER_ID);
const workflows = new SfnWorkflows({
  PromoteMirror: env.FTS_PROMOTE_STATE_MACHINE_ARN,
  ...(env.FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN ? { ActivateStandby: env.FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN } : {}),
});

/** Handles one EC2 state-change event; a malformed event is a ValidationError (an error of the function, alarmed). */
export async function handler(event: unknown, context?: InvocationContext): Promise<HostEventReport> {
  telemetry.startInvocation(context);
  try {
    const hostEvent = parseHostEvent(event, Date.now());
    return await handleHostEvent(
      { catalog, probe, workflows, telemetry, clock: Date.now, sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) },
      env.FTS_CLUSTER_ID,
      hostEvent,
    );
  } finally {
    telemetry.flush();
  }
}
