/**
 * Workflows in-process: runs the definitions CDK synthesizes (lib/local-definition.ts,
 * given by the caller) with aws-local-stepfunctions, every Task state bound to the
 * workflow's step handler. Retry, Catch, Choice, Wait, Map and the state document behave
 * as in Step Functions.
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
 * Besides `start` (the port), `startExecution` runs a workflow on any input exactly as
 * given, the way StartExecution (or the Step Functions console) does: `ftsctl workflow
 * run` uses it, and the workflow's first step is what validates it.
 */
import { StateMachine, type RunOptions, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { ValidationError } from '../../core/errors';
import { executionNameFor, type StartedExecution, type Workflows } from '../../ports/workflows';
import type { WorkflowInputs } from '../../workflows';
import { EXECUTION_NAME_PATTERN, WORKFLOW_KINDS, type WorkflowKind } from '../../workflows/spec';

export { EXECUTION_NAME_PATTERN };

/**
 * Parses execution input as the console takes it: one JSON text. ValidationError when it
 * is not JSON. The value is not checked further: the workflow validates its input.
 */
export function parseExecutionInput(text: string): unknown {
  let input: unknown;
  try {
    input = JSON.parse(text) as unknown;
  } catch (e) {
    throw new ValidationError(`the execution input is not valid JSON: ${(e as Error).message}`);
  }
  // A null document has no `$` for the states to read: the execution would end in States.Runtime before any step saw it.
  if (input === null) throw new ValidationError('the execution input is null: every workflow takes a JSON object (e.g. {"clusterId": "prod"})');
  return input;
}

/** The event a Task state passes to the step handler. */
export interface StepEvent {
  step: string;
  input: unknown;
  /** The execution's name (`$$.Execution.Name`). */
  execution?: string;
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
  kind: WorkflowKind;
  name: string;
  status: 'RUNNING' | LocalExecutionStatus;
}

/** One workflow as local mode runs it: the synthesized definition and the handler of its steps. */
export interface LocalWorkflow {
  /** The ASL object (lib/local-definition.ts synthesizes it from the deployed stack). */
  definition: object;
  /** The step handler (`lambdas/handlers/<workflow>.ts` semantics). */
  handler: (event: StepEvent) => Promise<unknown>;
  /**
   * Native AWS SDK tasks (`arn:aws:states:::aws-sdk:...`), by state name: what stands in
   * for the AWS call (tests check the request). A state without one fails with
   * `LocalSdkUnavailable`: there is no AWS here.
   */
  sdkTasks?: Readonly<Record<string, (parameters: unknown) => Promise<unknown>>>;
}

/** Options of {@link LocalWorkflows}. */
export interface LocalWorkflowsOptions {
  /** The workflows this instance runs, by kind. */
  workflows: Partial<Record<WorkflowKind, LocalWorkflow>>;
  /** Told when an execution starts and ends. Default: nothing. */
  onExecution?: (event: LocalExecutionEvent) => void;
  /**
   * Pause before every retry in milliseconds, instead of the definition's
   * IntervalSeconds/BackoffRate (tests use 0). Default: the definition's intervals.
   */
  retryIntervalMs?: number;
  /** Length of every Wait state in milliseconds, instead of its seconds (tests). Default: the definition's. */
  waitMs?: number;
}

interface Execution {
  kind: WorkflowKind;
  done: Promise<LocalExecutionOutcome>;
  outcome?: LocalExecutionOutcome;
  abort: () => void;
}

interface Loaded {
  machine: StateMachine;
  /** Task states that invoke the step function. */
  taskStates: string[];
  /** Task states that call an AWS API natively. */
  sdkStates: string[];
  sdkTasks: NonNullable<LocalWorkflow['sdkTasks']>;
  waitStates: string[];
  handler: LocalWorkflow['handler'];
}

/** Names of the states of a type (and, for Task states, whose Resource passes `resource`), Map iterations included. */
function statesOfType(definition: StateMachineDefinition, type: string, resource: (arn: string) => boolean = () => true): string[] {
  const names: string[] = [];
  const walk = (states: Record<string, unknown>) => {
    for (const [name, state] of Object.entries(states)) {
      const s = state as { Type: string; Resource?: string; ItemProcessor?: { States: Record<string, unknown> }; Iterator?: { States: Record<string, unknown> } };
      if (s.Type === type && resource(s.Resource ?? '')) names.push(name);
      const inner = s.ItemProcessor ?? s.Iterator;
      if (inner) walk(inner.States);
    }
  };
  walk(definition.States as Record<string, unknown>);
  return names;
}

/** Runs workflows in-process; see the module comment. */
export class LocalWorkflows implements Workflows {
  private readonly loaded = new Map<WorkflowKind, Loaded>();
  private readonly executions = new Map<string, Execution>();

  constructor(private readonly options: LocalWorkflowsOptions) {
    if (!options?.workflows || typeof options.workflows !== 'object') throw new Error('LocalWorkflows: workflows must name the workflows to run, by kind');
    for (const opt of ['retryIntervalMs', 'waitMs'] as const) {
      const v = options[opt];
      if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new Error(`LocalWorkflows: ${opt} must be a number >= 0, got ${v}`);
    }
    for (const [kind, workflow] of Object.entries(options.workflows)) {
      if (!(WORKFLOW_KINDS as readonly string[]).includes(kind)) throw new Error(`LocalWorkflows: ${kind} is not a workflow; known: ${WORKFLOW_KINDS.join(', ')}`);
      if (typeof workflow?.handler !== 'function') throw new Error(`LocalWorkflows: the ${kind} handler must be a function`);
      const definition = workflow.definition as StateMachineDefinition;
      // Validates the definition (JSONPaths, ARNs, reachability) once, like CreateStateMachine.
      const machine = new StateMachine(definition, { validationOptions: { checkPaths: true, checkArn: true } });
      const sdk = (arn: string) => arn.includes(':states:::aws-sdk:');
      this.loaded.set(kind as WorkflowKind, {
        machine,
        taskStates: statesOfType(definition, 'Task', (arn) => !sdk(arn)),
        sdkStates: statesOfType(definition, 'Task', sdk),
        sdkTasks: workflow.sdkTasks ?? {},
        waitStates: statesOfType(definition, 'Wait'),
        handler: workflow.handler,
      });
    }
  }

  /** Starts a workflow under the execution name its spec derives from the input, unless that name runs or ran; does not wait for it. */
  async start<K extends WorkflowKind>(kind: K, input: WorkflowInputs[K]): Promise<StartedExecution> {
    return this.startExecution(kind, executionNameFor(kind, input), input);
  }

  /**
   * Starts an execution named `executionName` on `input` exactly as given (no check: the
   * workflow's first step validates it), unless an execution of that name runs or ran;
   * does not wait for it. Throws ValidationError for a name Step Functions would refuse.
   */
  async startExecution(kind: WorkflowKind, executionName: string, input: unknown): Promise<StartedExecution> {
    if (!EXECUTION_NAME_PATTERN.test(executionName)) throw new ValidationError(`execution name ${JSON.stringify(executionName)} must be 1 to 80 letters, digits, - or _`);
    const workflow = this.loaded.get(kind);
    if (!workflow) throw new ValidationError(`${kind} is not run here; known: ${[...this.loaded.keys()].join(', ')}`);
    if (this.executions.has(executionName)) return { executionName, started: false };

    const handler = async (payload: unknown) => {
      try {
        const result = await workflow.handler(payload as StepEvent);
        return (result === undefined ? null : result) as never; // a Lambda that returns nothing returns null
      } catch (e) {
        throw asLambdaError(e);
      }
    };
    const sdkHandler = (name: string) => async (parameters: unknown) => {
      const call = workflow.sdkTasks[name];
      if (!call) throw Object.assign(new Error(`state ${name} calls AWS natively, and local mode has no AWS`), { name: 'LocalSdkUnavailable' });
      return (await call(parameters)) as never;
    };
    const { retryIntervalMs, waitMs } = this.options;
    const allTasks = [...workflow.taskStates, ...workflow.sdkStates];
    const runOptions: RunOptions = {
      overrides: {
        taskResourceLocalHandlers: Object.fromEntries([...workflow.taskStates.map((name) => [name, handler]), ...workflow.sdkStates.map((name) => [name, sdkHandler(name)])]),
        ...(retryIntervalMs !== undefined ? { retryIntervalOverrides: Object.fromEntries(allTasks.map((name) => [name, retryIntervalMs])) } : {}),
        ...(waitMs !== undefined ? { waitTimeOverrides: Object.fromEntries(workflow.waitStates.map((name) => [name, waitMs])) } : {}),
      },
      context: { Execution: { Name: executionName, Input: input as never, StartTime: new Date().toISOString() } },
    };
    const run = workflow.machine.run(input as never, runOptions);
    const execution: Execution = {
      kind,
      abort: run.abort,
      done: run.result.then(
        (output): LocalExecutionOutcome => ({ status: 'SUCCEEDED', output }),
        (e: unknown): LocalExecutionOutcome => failureOutcome(e),
      ),
    };
    this.executions.set(executionName, execution);
    this.notify({ kind, name: executionName, status: 'RUNNING' });
    void execution.done.then((outcome) => {
      execution.outcome = outcome;
      this.notify({ kind, name: executionName, ...outcome });
    });
    return { executionName, started: true };
  }

  /** Starts (or joins, when the name exists) an execution on `input` as given and waits for its outcome. */
  async runExecution(kind: WorkflowKind, executionName: string, input: unknown): Promise<LocalExecutionOutcome & StartedExecution> {
    const started = await this.startExecution(kind, executionName, input);
    return { ...(await this.wait(started.executionName)), ...started };
  }

  /** Starts (or joins) a workflow under its spec's execution name and waits for its outcome. */
  async run<K extends WorkflowKind>(kind: K, input: WorkflowInputs[K]): Promise<LocalExecutionOutcome & StartedExecution> {
    const started = await this.start(kind, input);
    return { ...(await this.wait(started.executionName)), ...started };
  }

  /** The outcome of an execution this instance started; resolves when it ends. */
  async wait(executionName: string): Promise<LocalExecutionOutcome> {
    const execution = this.executions.get(executionName);
    if (!execution) throw new Error(`no local execution named ${executionName}`);
    return execution.done;
  }

  /** Aborts a running execution (StopExecution); false when it is unknown or already over. */
  abort(executionName: string): boolean {
    const execution = this.executions.get(executionName);
    if (!execution || execution.outcome) return false;
    execution.abort();
    return true;
  }

  /** Names, kinds and outcomes (undefined while running) of the executions started so far. */
  list(): { name: string; kind: WorkflowKind; outcome?: LocalExecutionOutcome }[] {
    return [...this.executions].map(([name, e]) => ({ name, kind: e.kind, outcome: e.outcome }));
  }

  private notify(event: LocalExecutionEvent): void {
    try {
      this.options.onExecution?.(event);
    } catch {
      // A listener's failure must not change the execution.
    }
  }
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
