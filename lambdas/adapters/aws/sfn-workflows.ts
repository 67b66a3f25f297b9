/**
 * Workflows over AWS Step Functions. The execution name is derived from cluster,
 * content and catalog version (promotionExecutionName), so StartExecution is the
 * idempotency check: a name that already ran, or runs with a different input, fails
 * with ExecutionAlreadyExists, which means "already started", not an error.
 *
 * One AWS nuance: StartExecution with the name *and input* of a still-running Standard
 * execution succeeds and returns that execution; it is reported as started (true),
 * which is harmless since nothing new runs.
 */
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { promotionExecutionName, type PromoteMirrorInput, type StartedExecution, type Workflows } from '../../ports/workflows';

/** Starts PromoteMirror executions of one state machine. */
export class SfnWorkflows implements Workflows {
  /**
   * `promoteStateMachineArn` is the PromoteMirror state machine (FTS_PROMOTE_STATE_MACHINE_ARN);
   * `client` defaults to one with the SDK's standard retry, 5 attempts.
   */
  constructor(
    private readonly promoteStateMachineArn: string,
    private readonly client: SFNClient = new SFNClient({ maxAttempts: 5 }),
  ) {
    if (!/^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/.test(promoteStateMachineArn ?? '')) {
      throw new Error(`SfnWorkflows: promoteStateMachineArn must be a state machine ARN, got ${JSON.stringify(promoteStateMachineArn)}`);
    }
  }

  /** StartExecution named after cluster, content and catalog version; `started` is false when that name exists. */
  async startPromotion(input: PromoteMirrorInput): Promise<StartedExecution> {
    const executionName = promotionExecutionName(input);
    try {
      await this.client.send(
        new StartExecutionCommand({ stateMachineArn: this.promoteStateMachineArn, name: executionName, input: JSON.stringify(input) }),
      );
      return { executionName, started: true };
    } catch (e) {
      if (e instanceof ExecutionAlreadyExists || (e as Error)?.name === 'ExecutionAlreadyExists') return { executionName, started: false };
      throw e;
    }
  }
}
