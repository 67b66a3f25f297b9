/**
 * Workflows over AWS Step Functions. The execution name comes from the workflow's spec
 * (for PromoteMirror: cluster, content, catalog version and attempt), so StartExecution
 * is the idempotency check: a name that already ran, or runs with a different input,
 * fails with ExecutionAlreadyExists, which means "already started", not an error.
 *
 * One AWS nuance: StartExecution with the name *and input* of a still-running Standard
 * execution succeeds and returns that execution; it is reported as started (true),
 * which is harmless since nothing new runs.
 */
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { executionNameFor, type StartedExecution, type Workflows } from '../../ports/workflows';
import type { WorkflowInputs } from '../../workflows';
import { WORKFLOW_KINDS, type WorkflowKind } from '../../workflows/spec';

/** A Standard state machine's ARN. */
export const STATE_MACHINE_ARN_PATTERN = /^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/;

/** Starts executions of the state machines it knows, by workflow kind. */
export class SfnWorkflows implements Workflows {
  /**
   * `stateMachineArns` names the state machine of each kind this caller may start (the
   * prober: PromoteMirror only); `client` defaults to one with the SDK's standard retry, 5 attempts.
   */
  constructor(
    private readonly stateMachineArns: Partial<Record<WorkflowKind, string>>,
    private readonly client: SFNClient = new SFNClient({ maxAttempts: 5 }),
  ) {
    const entries = Object.entries(stateMachineArns ?? {});
    if (!entries.length) throw new Error('SfnWorkflows: stateMachineArns names no state machine');
    for (const [kind, arn] of entries) {
      if (!(WORKFLOW_KINDS as readonly string[]).includes(kind)) throw new Error(`SfnWorkflows: ${kind} is not a workflow; known: ${WORKFLOW_KINDS.join(', ')}`);
      if (!STATE_MACHINE_ARN_PATTERN.test(arn ?? '')) throw new Error(`SfnWorkflows: the ${kind} ARN must be a state machine ARN, got ${JSON.stringify(arn)}`);
    }
  }

  /** StartExecution under the spec's execution name; `started` is false when that name exists. */
  async start<K extends WorkflowKind>(kind: K, input: WorkflowInputs[K]): Promise<StartedExecution> {
    const stateMachineArn = this.stateMachineArns[kind];
    if (!stateMachineArn) throw new Error(`SfnWorkflows: no ${kind} state machine was given to this caller`);
    const executionName = executionNameFor(kind, input);
    try {
      await this.client.send(new StartExecutionCommand({ stateMachineArn, name: executionName, input: JSON.stringify(input) }));
      return { executionName, started: true };
    } catch (e) {
      if (e instanceof ExecutionAlreadyExists || (e as Error)?.name === 'ExecutionAlreadyExists') return { executionName, started: false };
      throw e;
    }
  }
}
