/**
 * A workflow as data: its input schema, its states (Task steps, Choice, Wait, Map,
 * Succeed, Fail) with Retry and Catch rules named by error class, its execution-name
 * rule and its limits. `lib/` builds the Step Functions state machine from a spec (one
 * generic construct), `lambdas/service/` runs its steps and validates its input from the
 * same spec, so a new workflow is a spec, a step table and its wiring.
 *
 * Every Task invokes the workflow's one Lambda with `{ "step", "input": <state document>,
 * "execution": <execution name> }` and writes the result at `$.<camelCase step>`, so the
 * document accumulates what every step saw and steps stay stateless and re-runnable.
 * A Catch puts `{ Error, Cause }` at `$.error`.
 */
import type { z } from 'zod';
import { CatalogConflictError, HostCommandError, NotWritableError, SegmentUnreachableError, ValidationError } from '../core/errors';

/** The workflows FTS deploys, by the name an operator uses (state machine and console). */
export const WORKFLOW_KINDS = ['PromoteMirror', 'RecoverSegments', 'Rebalance', 'ActivateStandby', 'InitStandby'] as const;
/** One of {@link WORKFLOW_KINDS}. */
export type WorkflowKind = (typeof WORKFLOW_KINDS)[number];

/** Any error class (its `name` is what Retry and Catch match). */
export type ErrorClass = abstract new (...args: never[]) => Error;
/** Step Functions' own error names a rule may use. */
export type StatesError = 'States.ALL' | 'States.TaskFailed' | 'States.Timeout';
/** An error a rule matches: a class of lambdas/core/errors.ts (matched by name) or a Step Functions error. */
export type ErrorRef = ErrorClass | StatesError;

/** A Retry rule of a Task. */
export interface RetryRule {
  errors: readonly ErrorRef[];
  intervalSeconds: number;
  maxAttempts: number;
  backoffRate: number;
}

/** A Catch rule of a Task: the error goes to `$.error` (or replaces the document: `resultPath: '$'`), then `next` runs. */
export interface CatchRule {
  errors: readonly ErrorRef[];
  next: string;
  /**
   * `$`: the error `{ Error, Cause }` replaces the state document. For a rule that ends
   * the execution on bad input: console input that is JSON but not an object (an array,
   * a string) cannot take `$.error`, and would end the run with a States error instead of
   * the step's clear cause.
   */
  resultPath?: '$';
}

/** A Task state: runs `step` of the workflow's step table. */
export interface TaskSpec {
  type: 'task';
  step: string;
  /** The next state; absent: the execution (or Map iteration) ends here. */
  next?: string;
  retry?: readonly RetryRule[];
  catch?: readonly CatchRule[];
  comment?: string;
}

/** A Choice state: the first rule whose path holds `equals` wins (a missing path never matches). */
export interface ChoiceSpec {
  type: 'choice';
  when: readonly { path: string; equals: boolean | string; next: string }[];
  otherwise: string;
}

/** A Wait state of `secondsPath` seconds (a wait-and-poll loop's pause). */
export interface WaitSpec {
  type: 'wait';
  secondsPath: string;
  next: string;
}

/**
 * A Map state: runs `states` (starting at `start`) once per item of `itemsPath`, at most
 * `maxConcurrencyPath` at once; each iteration's document is `itemSelector` (JSONPaths of
 * the outer document; `$$.Map.Item.Value` is the item). The list of iterations' final
 * documents lands at `resultPath`.
 */
export interface MapSpec {
  type: 'map';
  itemsPath: string;
  itemSelector: Readonly<Record<string, string>>;
  maxConcurrencyPath?: string;
  resultPath: string;
  start: string;
  states: Readonly<Record<string, StateSpec>>;
  next?: string;
  catch?: readonly CatchRule[];
}

/** A Succeed state. */
export interface SucceedSpec {
  type: 'succeed';
  comment?: string;
}

/** A Fail state with a stable error name; the cause is read from `causePath`. */
export interface FailSpec {
  type: 'fail';
  error: string;
  causePath?: string;
}

/** A parameter of a native SDK task: a constant, or a JSONPath of the state document (`list` for an array). */
export type SdkParameter = string | number | boolean | { path: string; list?: boolean };

/**
 * A native AWS SDK task of Step Functions (no Lambda in between): `service:action` with
 * `parameters`; the response lands at `resultPath`. For a call that must not depend on a
 * function or a host answering, e.g. stopping the old coordinator's EC2 instance. The
 * local runner has no AWS: local mode routes around these states (a Choice before them).
 */
export interface SdkTaskSpec {
  type: 'sdk';
  service: 'ec2';
  action: 'stopInstances';
  parameters: Readonly<Record<string, SdkParameter>>;
  resultPath: string;
  next?: string;
  retry?: readonly RetryRule[];
  catch?: readonly CatchRule[];
  comment?: string;
}

/** Any state of a spec. */
export type StateSpec = TaskSpec | SdkTaskSpec | ChoiceSpec | WaitSpec | MapSpec | SucceedSpec | FailSpec;

/** A whole workflow. */
export interface WorkflowSpec<I = unknown> {
  kind: WorkflowKind;
  /** What it does, for the state machine's comment and docs. */
  description: string;
  /** File under lambdas/handlers/ (without `.ts`) whose `handler` runs the steps. */
  handler: string;
  /** Powertools service name of its function (the `service` metric dimension). */
  serviceName: string;
  /** The execution input, as StartExecution (or the console) sends it; defaults filled in. */
  input: z.ZodType<I>;
  /** Execution name for a start through the Workflows port: repeat starts of the same request are no-ops. */
  executionName(input: I): string;
  /** Seconds a whole execution may run (Step Functions then fails it; holds it took lapse then too). */
  executionTimeoutSeconds: number;
  /** Seconds a step's Lambda may run. */
  stepTimeoutSeconds: number;
  /**
   * Seconds one host operation (stop, start, mirror config through SSM) may take inside a
   * step before it is cancelled: well below `stepTimeoutSeconds`, so a hung host ends as an
   * error the step handles (a switchover undone), never as a Lambda killed half-way.
   */
  hostOperationSeconds: number;
  start: string;
  states: Readonly<Record<string, StateSpec>>;
}

/** Where a step's result lands: `$.` + camelCase of the step (`confirm-failure` -> `$.confirmFailure`). */
export const stepResultKey = (step: string): string => step.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The name Retry and Catch match for an error reference. */
export const errorName = (ref: ErrorRef): string => (typeof ref === 'string' ? ref : ref.name);

/** Every Task step of a spec, Map iterations included, in definition order. */
export function taskSteps(spec: Pick<WorkflowSpec, 'states'>): string[] {
  const steps: string[] = [];
  const walk = (states: Readonly<Record<string, StateSpec>>) => {
    for (const state of Object.values(states)) {
      if (state.type === 'task' && !steps.includes(state.step)) steps.push(state.step);
      if (state.type === 'map') walk(state.states);
    }
  };
  walk(spec.states);
  return steps;
}

/** Every state name of a spec, Map iterations included (names are unique in a state machine). */
export function stateNames(spec: Pick<WorkflowSpec, 'states'>): string[] {
  const names: string[] = [];
  const walk = (states: Readonly<Record<string, StateSpec>>) => {
    for (const [name, state] of Object.entries(states)) {
      names.push(name);
      if (state.type === 'map') walk(state.states);
    }
  };
  walk(spec.states);
  return names;
}

/** zod issues as `path: message` sentences. */
export const zodIssues = (error: z.ZodError): string[] => error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));

/** Parses workflow input with the spec's schema; ValidationError naming every problem. */
export function parseWorkflowInput<I>(spec: Pick<WorkflowSpec<I>, 'kind' | 'input'>, input: unknown): I {
  const result = spec.input.safeParse(input);
  if (!result.success) {
    const issues = zodIssues(result.error);
    throw new ValidationError(`invalid ${spec.kind} input: ${issues.join('; ')}`, issues);
  }
  return result.data;
}

/** Checks a workflow name; ValidationError naming the known ones otherwise. */
export function workflowKind(name: string): WorkflowKind {
  if ((WORKFLOW_KINDS as readonly string[]).includes(name)) return name as WorkflowKind;
  throw new ValidationError(`unknown state machine ${JSON.stringify(name)}; known: ${WORKFLOW_KINDS.join(', ')}`);
}

/** Step Functions' rule for execution names: 1 to 80 characters, no whitespace, brackets, wildcards, control or special characters. */
export const EXECUTION_NAME_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

/**
 * `<prefix>-<clusterId>-<tail>` within Step Functions' 80 characters (the cluster id is
 * cut first), every other character replaced by `-`.
 */
export function executionNameOf(prefix: string, clusterId: string, tail: string): string {
  const room = 80 - prefix.length - 2 - tail.length;
  return `${prefix}-${clusterId.slice(0, Math.max(room, 1))}-${tail}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 80);
}

/**
 * Checks that a spec is well-formed: its start and every `next` name a state of the same
 * level, names are unique across levels, and every Task step has a handler in `steps`
 * (when given). Throws Error (a spec bug, not user input).
 */
export function checkSpec(spec: WorkflowSpec, steps?: readonly string[]): void {
  const problems: string[] = [];
  const walk = (states: Readonly<Record<string, StateSpec>>, start: string, where: string) => {
    const known = (name: string | undefined, from: string) => {
      if (name !== undefined && !(name in states)) problems.push(`${where}${from} goes to ${name}, not a state of the same level`);
    };
    known(start, 'start');
    for (const [name, s] of Object.entries(states)) {
      if (s.type === 'task' || s.type === 'sdk') {
        known(s.next, name);
        for (const c of s.catch ?? []) known(c.next, name);
      } else if (s.type === 'choice') {
        for (const w of s.when) known(w.next, name);
        known(s.otherwise, name);
      } else if (s.type === 'wait') known(s.next, name);
      else if (s.type === 'map') {
        known(s.next, name);
        for (const c of s.catch ?? []) known(c.next, name);
        walk(s.states, s.start, `${where}${name}/`);
      }
    }
  };
  walk(spec.states, spec.start, '');
  const names = stateNames(spec);
  const duplicates = names.filter((n, i) => names.indexOf(n) !== i);
  if (duplicates.length) problems.push(`state names used twice: ${[...new Set(duplicates)].join(', ')}`);
  if (steps) for (const step of taskSteps(spec)) if (!steps.includes(step)) problems.push(`step ${step} has no handler`);
  if (!(spec.hostOperationSeconds >= 30 && spec.hostOperationSeconds * 2 < spec.stepTimeoutSeconds)) {
    problems.push(`hostOperationSeconds (${spec.hostOperationSeconds}) must be at least 30 and less than half of stepTimeoutSeconds (${spec.stepTimeoutSeconds})`);
  }
  if (problems.length) throw new Error(`workflow spec ${spec.kind} is broken: ${problems.join('; ')}`);
}

/** Errors of steps that touch a segment, a host or the catalog and are worth a quick retry. */
export const TRANSIENT_STEP_ERRORS = [SegmentUnreachableError, HostCommandError, NotWritableError, CatalogConflictError] as const;
/** Retry of a step that touches segments, hosts or the catalog. */
export const TRANSIENT_RETRY: RetryRule = { errors: TRANSIENT_STEP_ERRORS, intervalSeconds: 1, backoffRate: 2, maxAttempts: 3 };
/** Retry of a step that only writes the catalog (a history row): a concurrent writer is worth another try. */
export const CONFLICT_RETRY: RetryRule = { errors: [CatalogConflictError], intervalSeconds: 1, backoffRate: 2, maxAttempts: 3 };

/** The rule that ends an execution on input the first step refused: the error replaces the document (it may not be an object). */
export const invalidInputCatch = (errors: readonly ErrorRef[]): CatchRule => ({ errors, next: 'InvalidInput', resultPath: '$' });

/** The Fail state {@link invalidInputCatch} goes to: the cause is the step's message. */
export const INVALID_INPUT_STATE: FailSpec = { type: 'fail', error: 'InvalidInput', causePath: '$.Cause' };
