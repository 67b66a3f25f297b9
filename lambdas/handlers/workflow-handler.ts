/**
 * What every workflow's step function is: the adapters built once per container from the
 * validated environment, the Powertools telemetry, and the workflow's step runner, which
 * each Task state invokes with `{"step", "input": <state document>, "execution"}`.
 */
import { powertoolsTelemetry, type InvocationContext } from '../adapters/aws/powertools-telemetry';
import type { WorkflowDeps } from '../service/steps';
import type { StepEventRunner } from '../service/workflows';
import { segmentDeps } from './deps';
import { handlerEnvironment, type HandlerEnvironment } from './environment';

/** A step function's Lambda handler (the Lambda context is optional: local mode and tests call it with the event only). */
export type StepHandler = (event: { step?: unknown; input?: unknown; execution?: unknown }, context?: InvocationContext) => Promise<Record<string, unknown>>;

/** The handler of a workflow whose steps `run` runs; `extra` adds dependencies (e.g. notifications) from the environment. */
export function workflowStepHandler(run: StepEventRunner, extra: (env: HandlerEnvironment) => Partial<WorkflowDeps> = () => ({})): StepHandler {
  const env = handlerEnvironment();
  const deps = { ...segmentDeps(env), ...extra(env) };
  const telemetry = powertoolsTelemetry(env.FTS_CLUSTER_ID);
  return async (event, context) => {
    // Every log line of the invocation carries the request id; the first one of a container also publishes ColdStart.
    telemetry.startInvocation(context);
    try {
      return await run({ ...deps, telemetry, now: () => new Date() }, event);
    } finally {
      telemetry.flush();
    }
  };
}
