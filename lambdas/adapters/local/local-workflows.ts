/**
 * Workflows in-process: runs the PromoteMirror definition that CDK synthesizes (see
 * lib/local-definition.ts) with aws-local-stepfunctions, every Task state bound to the
 * step handler. Retry, Catch, Choice and the state document behave as in Step Functions.
 *
 * How errors reach Retry/Catch: aws-local-stepfunctions matches `ErrorEquals` against
 * the thrown error's `name` and puts `{ Error: name, Cause: message }` at the catcher's
 * ResultPath. A Lambda's error reaches Step Functions as `Error` = its `errorType` (the
 * error's `name`) and `Cause` = the JSON `{"errorType", "errorMessage", "trace"}`; the
 * task handlers here throw an error of the same name whose message is that JSON, so a
 * step sees the same `$.error` in both places.
 *
 * Idempotent start as StartExecution gives it: a second start with the name of an
 * execution that runs or has finished starts nothing.
 *
 * Besides the prober's `startPromotion`, `startExecution` runs the workflow on any input
 * exactly as given, the way StartExecution (or the Step Functions console) does:
 * `ftsctl workflow run` uses it, and the workflow's first step is what validates it.
 */
import { StateMachine, type RunOptions, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { ValidationError } from '../../core/errors';
import { promotionExecutionName, type PromoteMirrorInput, type StartedExecution, type Workflows } from '../../ports/workflows';

/** The state machines FTS deploys (and local mode runs), by the name an operator uses. */
export const STATE_MACHINE_NAMES = ['PromoteMirror'] as const;
/** Name of a state machine of FTS. */
export type StateMachineName = (typeof STATE_MACHINE_NAMES)[number];

/** Checks a state machine name; ValidationError naming the known ones otherwise. */
export function stateMachineName(name: string): StateMachineName {
  if ((STATE_MACHINE_NAMES as readonly string[]).includes(name)) return name as StateMachineName;
  throw new ValidationError(`unknown state machine ${JSON.stringify(name)}; known: ${STATE_MACHINE_NAMES.join(', ')}`);
}

/**
 * Parses execution input as the console takes it: one JSON text. ValidationError when it
 * is not JSON. The value is not checked further: the workflow validates its input.
 */
export function parseExecutionInput(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ValidationError(`the execution input is not valid JSON: ${(e as Error).message}`);
  }
}

/** Step Functions' rule for execution names: 1 to 80 characters, no whitespace, brackets, wildcards, control or special characters. */
export const EXECUTION_NAME_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

/** The event a Task state passes to the step handler. */
export interface PromoteStepEvent {
  step: string;
  input: unknown;
}

/** Final status of a local execution. */
export type LocalExecutionStatus = 'SUCCEEDED' | 'FAILED' | 'ABORTED';

/** How a local execution ended. */
export interface LocalExecutionOutcome {
  status: LocalExecutionStatus;
  /** The execution's output (SUCCEEDED only). */
  output?: unknown;
  /** Error name (FAILED), e.g. `InvalidInput`, `PromotionFailed`, or an uncaught step error's name. */
  error?: string;
  /** Cause (FAILED). */
  cause?: string;
}

/** What `onExecution` hears: the start (RUNNING) and the end of every execution. */
export interface LocalExecutionEvent extends Partial<Omit<LocalExecutionOutcome, 'status'>> {
  name: string;
  status: 'RUNNING' | LocalExecutionStatus;
}

/** Options of {@link LocalWorkflows}. */
export interface LocalWorkflowsOptions {
  /** The PromoteMirror step handler (`lambdas/handlers/promote-mirror.ts` semantics). */
  promoteHandler: (event: PromoteStepEvent) => Promise<unknown>;
  /** Told when an execution starts and ends. Default: nothing. */
  onExecution?: (event: LocalExecutionEvent) => void;
  /**
   * Pause before every retry in milliseconds, instead of the definition's
   * IntervalSeconds/BackoffRate (tests use 0). Default: the definition's intervals.
   */
  retryIntervalMs?: number;
  /**
   * The definition to run. Default: `synthesizePromoteMirrorDefinition().definition`,
   * the one CDK deploys (loading it costs about a second, once per process).
   */
  definition?: object;
}

interface Execution {
  done: Promise<LocalExecutionOutcome>;
  outcome?: LocalExecutionOutcome;
  abort: () => void;
}

/** Runs PromoteMirror in-process; see the module comment. */
export class LocalWorkflows implements Workflows {
  private readonly machine: StateMachine;
  private readonly taskStates: string[];
  private readonly executions = new Map<string, Execution>();

  constructor(private readonly options: LocalWorkflowsOptions) {
    if (typeof options?.promoteHandler !== 'function') throw new Error('LocalWorkflows: promoteHandler must be a function');
    if (options.retryIntervalMs !== undefined && !(Number.isFinite(options.retryIntervalMs) && options.retryIntervalMs >= 0)) {
      throw new Error(`LocalWorkflows: retryIntervalMs must be a number >= 0, got ${options.retryIntervalMs}`);
    }
    const definition = (options.definition ?? loadDeployedDefinition()) as StateMachineDefinition;
    // Validates the definition (JSONPaths, ARNs, reachability) once, like CreateStateMachine.
    this.machine = new StateMachine(definition, { validationOptions: { checkPaths: true, checkArn: true } });
    this.taskStates = Object.entries(definition.States)
      .filter(([, state]) => state.Type === 'Task')
      .map(([name]) => name);
  }

  /** Starts PromoteMirror unless an execution of that name runs or ran; does not wait for it. */
  async startPromotion(input: PromoteMirrorInput): Promise<StartedExecution> {
    return this.startExecution(promotionExecutionName(input), input);
  }

  /**
   * Starts an execution named `executionName` on `input` exactly as given (no check: the
   * workflow's first step validates it), unless an execution of that name runs or ran;
   * does not wait for it. Throws ValidationError for a name Step Functions would refuse.
   */
  async startExecution(executionName: string, input: unknown): Promise<StartedExecution> {
    if (!EXECUTION_NAME_PATTERN.test(executionName)) throw new ValidationError(`execution name ${JSON.stringify(executionName)} must be 1 to 80 letters, digits, - or _`);
    if (this.executions.has(executionName)) return { executionName, started: false };

    const handler = async (payload: unknown) => {
      try {
        const result = await this.options.promoteHandler(payload as PromoteStepEvent);
        return (result === undefined ? null : result) as never; // a Lambda that returns nothing returns null
      } catch (e) {
        throw asLambdaError(e);
      }
    };
    const runOptions: RunOptions = {
      overrides: {
        taskResourceLocalHandlers: Object.fromEntries(this.taskStates.map((name) => [name, handler])),
        ...(this.options.retryIntervalMs !== undefined
          ? { retryIntervalOverrides: Object.fromEntries(this.taskStates.map((name) => [name, this.options.retryIntervalMs as number])) }
          : {}),
      },
      context: { Execution: { Name: executionName, Input: input as never, StartTime: new Date().toISOString() } },
    };
    const run = this.machine.run(input as never, runOptions);
    const execution: Execution = {
      abort: run.abort,
      done: run.result.then(
        (output): LocalExecutionOutcome => ({ status: 'SUCCEEDED', output }),
        (e: unknown): LocalExecutionOutcome => failureOutcome(e),
      ),
    };
    this.executions.set(executionName, execution);
    this.notify({ name: executionName, status: 'RUNNING' });
    void execution.done.then((outcome) => {
      execution.outcome = outcome;
      this.notify({ name: executionName, ...outcome });
    });
    return { executionName, started: true };
  }

  /** Starts (or joins, when the name exists) an execution on `input` as given and waits for its outcome. */
  async runExecution(executionName: string, input: unknown): Promise<LocalExecutionOutcome & StartedExecution> {
    const started = await this.startExecution(executionName, input);
    return { ...(await this.wait(started.executionName)), ...started };
  }

  /** The outcome of an execution this instance started; resolves when it ends. */
  async wait(executionName: string): Promise<LocalExecutionOutcome> {
    const execution = this.executions.get(executionName);
    if (!execution) throw new Error(`no local execution named ${executionName}`);
    return execution.done;
  }

  /** Starts (or joins, when the name exists) a promotion and waits for its outcome. */
  async runPromotion(input: PromoteMirrorInput): Promise<LocalExecutionOutcome & StartedExecution> {
    const started = await this.startPromotion(input);
    return { ...(await this.wait(started.executionName)), ...started };
  }

  /** Aborts a running execution (StopExecution); false when it is unknown or already over. */
  abort(executionName: string): boolean {
    const execution = this.executions.get(executionName);
    if (!execution || execution.outcome) return false;
    execution.abort();
    return true;
  }

  /** Names and outcomes (undefined while running) of the executions started so far. */
  list(): { name: string; outcome?: LocalExecutionOutcome }[] {
    return [...this.executions].map(([name, e]) => ({ name, outcome: e.outcome }));
  }

  private notify(event: LocalExecutionEvent): void {
    try {
      this.options.onExecution?.(event);
    } catch {
      // A listener's failure must not change the execution.
    }
  }
}

/** Loaded on demand: it pulls in aws-cdk-lib, which local mode only needs here. */
function loadDeployedDefinition(): object {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { synthesizePromoteMirrorDefinition } = require('../../../lib/local-definition') as typeof import('../../../lib/local-definition');
  return synthesizePromoteMirrorDefinition().definition;
}

/** The error as the Lambda service reports it: same name, Cause the Lambda error JSON. */
function asLambdaError(e: unknown): Error {
  const original = e instanceof Error ? e : new Error(String(e));
  const name = original.name || 'Error';
  const cause = JSON.stringify({ errorType: name, errorMessage: original.message, trace: (original.stack ?? '').split('\n') });
  const error = new Error(cause);
  error.name = name;
  return error;
}

/** Maps aws-local-stepfunctions' rejections to an outcome. */
function failureOutcome(e: unknown): LocalExecutionOutcome {
  const err = e as Error & { cause?: unknown };
  if (err?.name === 'ExecutionAbortedError') return { status: 'ABORTED' };
  if (err?.name === 'ExecutionTimeoutError') return { status: 'FAILED', error: 'States.Timeout', cause: 'the execution timed out' };
  // ExecutionError wraps what ended the execution: a Fail state's error, or an uncaught step error.
  const inner = err?.name === 'ExecutionError' && err.cause instanceof Error ? err.cause : err;
  return { status: 'FAILED', error: inner?.name ?? 'Error', cause: inner?.message ?? String(e) };
}
