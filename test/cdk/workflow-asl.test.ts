/**
 * The PromoteMirror definition CDK synthesizes, resolved into plain ASL: its shape
 * (states, Retry, Catch, JSONPath only), and its routing, executed by LocalWorkflows
 * (aws-local-stepfunctions) with a scripted step handler that records the steps.
 */
import { localWorkflows, synthesizePromoteMirrorDefinition } from '../../lib/local-definition';
import { LocalWorkflows, type LocalExecutionEvent, type StepEvent as PromoteStepEvent } from '../../lambdas/adapters/local/local-workflows';
import type { WorkflowInputs } from '../../lambdas/workflows';
import { PROMOTE_MIRROR_SPEC } from '../../lambdas/workflows/promote-mirror';
import { errorName, stateNames, TRANSIENT_STEP_ERRORS as TRANSIENT_ERROR_CLASSES } from '../../lambdas/workflows/spec';

type PromoteMirrorInput = WorkflowInputs['PromoteMirror'];
const PROMOTE_STATES = stateNames(PROMOTE_MIRROR_SPEC);
/** Task state -> its step, from the spec. */
const PROMOTE_TASK_STEPS = Object.fromEntries(Object.entries(PROMOTE_MIRROR_SPEC.states).flatMap(([n, st]) => (st.type === 'task' ? [[n, st.step]] : [])));
const TRANSIENT_STEP_ERRORS = TRANSIENT_ERROR_CLASSES.map(errorName);


// eslint-disable-next-line @typescript-eslint/no-require-imports
const aslValidator = require('asl-validator') as (d: unknown) => { isValid: boolean; errorsText: (s?: string) => string };

interface State {
  Type: string;
  Next?: string;
  Default?: string;
  Resource?: string;
  Parameters?: Record<string, unknown>;
  ResultPath?: string;
  Error?: string;
  CausePath?: string;
  Retry?: { ErrorEquals: string[]; IntervalSeconds?: number; MaxAttempts?: number; BackoffRate?: number }[];
  Catch?: { ErrorEquals: string[]; Next: string; ResultPath?: string }[];
  Choices?: unknown[];
}
const { definition, taskStates } = synthesizePromoteMirrorDefinition();
const asl = definition as { StartAt: string; States: Record<string, State> };
const states = asl.States;
const SERVICE_ERRORS = ['Lambda.ClientExecutionTimeoutException', 'Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException'];
const userRetries = (name: string) => (states[name].Retry ?? []).filter((r) => !r.ErrorEquals.some((e) => e.startsWith('Lambda.')));
const catches = (name: string) => (states[name].Catch ?? []).map((c) => [c.ErrorEquals, c.Next, c.ResultPath]);

describe('synthesized definition', () => {
  test('is valid ASL, JSONPath only', () => {
    const result = aslValidator(structuredClone(definition));
    expect(result.errorsText('\n')).toBe('');
    expect(result.isValid).toBe(true);
    const text = JSON.stringify(definition);
    expect(text).not.toContain('QueryLanguage');
    expect(text).not.toContain('{%'); // JSONata expression syntax
    expect(text).not.toMatch(/Fn::|"Ref"/); // every intrinsic resolved
  });

  test('has every state, with the right types', () => {
    expect(asl.StartAt).toBe('ValidateInput');
    expect(Object.fromEntries(Object.entries(states).map(([n, s]) => [n, s.Type]))).toEqual({
      ValidateInput: 'Task',
      InvalidInput: 'Fail',
      ConfirmFailure: 'Task',
      AlreadyFlipped: 'Choice',
      FlipCatalog: 'Task',
      FenceOldPrimary: 'Task',
      PromoteMirror: 'Task',
      VerifyWritable: 'Task',
      ClearPending: 'Task',
      Notify: 'Task',
      Promoted: 'Succeed',
      RecordAbort: 'Task',
      Aborted: 'Succeed',
      RecordFailure: 'Task',
      PromotionFailed: 'Fail',
    });
    expect([...PROMOTE_STATES].sort()).toEqual(Object.keys(states).sort());
    expect(taskStates.sort()).toEqual(Object.keys(PROMOTE_TASK_STEPS).sort());
  });

  test('every Task invokes the one step function with {step, input.$: $, execution.$}  and keeps its result at $.<stepKey>', () => {
    const resultPaths: Record<string, string> = {
      ValidateInput: '$.validate',
      ConfirmFailure: '$.confirmFailure',
      FlipCatalog: '$.flipCatalog',
      FenceOldPrimary: '$.fenceOldPrimary',
      PromoteMirror: '$.promote',
      VerifyWritable: '$.verifyWritable',
      ClearPending: '$.clearPending',
      Notify: '$.notify',
      RecordAbort: '$.recordAbort',
      RecordFailure: '$.recordFailure',
    };
    const resources = new Set(taskStates.map((n) => states[n].Resource));
    expect(resources.size).toBe(1);
    expect([...resources][0]).toMatch(/^arn:aws:lambda:us-east-1:123456789012:function:PromoteMirrorFunction/);
    for (const [name, step] of Object.entries(PROMOTE_TASK_STEPS)) {
      expect(states[name].Parameters).toEqual({ step, 'input.$': '$', 'execution.$': '$$.Execution.Name' });
      expect(states[name].ResultPath).toBe(resultPaths[name]);
      // The Lambda service-exception retry CDK adds stays first.
      expect(states[name].Retry?.[0]).toMatchObject({ ErrorEquals: SERVICE_ERRORS });
    }
  });

  test('transitions', () => {
    expect(states.ValidateInput.Next).toBe('ConfirmFailure');
    // The old primary is fenced before the catalog names the mirror.
    expect(states.ConfirmFailure.Next).toBe('FenceOldPrimary');
    expect(states.FenceOldPrimary.Next).toBe('AlreadyFlipped');
    expect(states.AlreadyFlipped.Default).toBe('FlipCatalog');
    expect(JSON.stringify(states.AlreadyFlipped.Choices)).toContain('"Variable":"$.confirmFailure.alreadyFlipped","BooleanEquals":true');
    expect(JSON.stringify(states.AlreadyFlipped.Choices)).toContain('"Next":"PromoteMirror"');
    expect(states.FlipCatalog.Next).toBe('PromoteMirror');
    expect(states.PromoteMirror.Next).toBe('VerifyWritable');
    expect(states.VerifyWritable.Next).toBe('ClearPending');
    expect(states.ClearPending.Next).toBe('Notify');
    expect(states.Notify.Next).toBe('Promoted');
    expect(states.RecordAbort.Next).toBe('Aborted');
    expect(states.RecordFailure.Next).toBe('PromotionFailed');
    // Refused input may not be an object: the error replaces the document (no ResultPath) and the cause is read from it.
    expect(states.InvalidInput).toMatchObject({ Error: 'InvalidInput', CausePath: '$.Cause' });
    expect(states.PromotionFailed).toMatchObject({ Error: 'PromotionFailed', CausePath: '$.error.Cause' });
  });

  test('Retry error names', () => {
    expect(userRetries('FlipCatalog')).toEqual([{ ErrorEquals: ['CatalogConflictError'], IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 }]);
    expect(TRANSIENT_STEP_ERRORS).toEqual(['SegmentUnreachableError', 'HostCommandError', 'NotWritableError', 'CatalogConflictError']);
    for (const name of ['FenceOldPrimary', 'PromoteMirror', 'VerifyWritable', 'ClearPending']) {
      expect(userRetries(name)).toEqual([{ ErrorEquals: TRANSIENT_STEP_ERRORS, IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 }]);
    }
    for (const name of ['RecordAbort', 'RecordFailure']) expect(userRetries(name)).toEqual([{ ErrorEquals: ['CatalogConflictError'], IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 }]);
    for (const name of ['ValidateInput', 'ConfirmFailure', 'Notify']) expect(userRetries(name)).toEqual([]);
  });

  test('Catch error names', () => {
    expect(catches('ValidateInput')).toEqual([[['ValidationError'], 'InvalidInput', undefined]]);
    expect(catches('ConfirmFailure')).toEqual([
      [['PrimaryAliveError'], 'RecordAbort', '$.error'],
      [['ContentBusyError'], 'RecordAbort', '$.error'],
      [['MirrorNotPromotableError'], 'RecordFailure', '$.error'],
      [['States.ALL'], 'RecordFailure', '$.error'],
    ]);
    for (const name of ['FlipCatalog', 'FenceOldPrimary']) {
      expect(catches(name)).toEqual([
        [['ContentBusyError'], 'RecordAbort', '$.error'],
        [['States.ALL'], 'RecordFailure', '$.error'],
      ]);
    }
    for (const name of ['PromoteMirror', 'VerifyWritable', 'ClearPending']) {
      expect(catches(name)).toEqual([[['States.ALL'], 'RecordFailure', '$.error']]);
    }
    // The mirror is the writable primary by then: a failed notification never makes the promotion a failure.
    expect(catches('Notify')).toEqual([[['States.ALL'], 'Promoted', '$.error']]);
    expect(catches('RecordAbort')).toEqual([]);
    expect(catches('RecordFailure')).toEqual([]);
  });
});

describe('LocalWorkflows runs the synthesized definition', () => {
  const input: PromoteMirrorInput = { clusterId: 'c1', content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 7, reason: 'primary dbid 2 does not answer' };
  let version = 100;
  /** A fresh input (its own execution name). */
  const fresh = (): PromoteMirrorInput => ({ ...input, catalogVersion: version++ });

  const named = (name: string, message = name) => Object.assign(new Error(message), { name });

  /** A scripted step handler: records steps and their inputs, throws what `script` says. */
  function scripted(script: Partial<Record<string, (call: number, event: PromoteStepEvent) => unknown>> = {}) {
    const steps: string[] = [];
    const events: PromoteStepEvent[] = [];
    const calls = new Map<string, number>();
    const handler = async (event: PromoteStepEvent) => {
      steps.push(event.step);
      events.push(structuredClone(event));
      const call = (calls.get(event.step) ?? 0) + 1;
      calls.set(event.step, call);
      const scriptedStep = script[event.step];
      if (scriptedStep) return scriptedStep(call, event);
      if (event.step === 'confirm-failure') return { alreadyFlipped: false, version: 7 };
      return { done: event.step };
    };
    return { handler, steps, events };
  }

  const workflows = (handler: (e: PromoteStepEvent) => Promise<unknown>, onExecution?: (e: LocalExecutionEvent) => void) =>
    new LocalWorkflows({ workflows: { PromoteMirror: { handler, definition } }, onExecution, retryIntervalMs: 0 });

  test('happy path: every step in order, results accumulate, SUCCEEDED', async () => {
    const { handler, steps, events } = scripted();
    const seen: LocalExecutionEvent[] = [];
    const run = await workflows(handler, (e) => seen.push(e)).run('PromoteMirror', input);
    expect(run).toMatchObject({ status: 'SUCCEEDED', started: true, executionName: 'promote-c1-c0-v7-a1' });
    expect(steps).toEqual(['validate', 'confirm-failure', 'fence-old-primary', 'flip-catalog', 'promote', 'verify-writable', 'clear-pending', 'notify']);
    expect(events[0].input).toEqual(input); // the first step sees the input as sent
    expect(events[4].input).toMatchObject({ ...input, validate: { done: 'validate' }, confirmFailure: { alreadyFlipped: false }, fenceOldPrimary: { done: 'fence-old-primary' }, flipCatalog: { done: 'flip-catalog' } });
    expect(run.output).toMatchObject({ ...input, notify: { done: 'notify' }, clearPending: { done: 'clear-pending' } });
    expect(seen.map((e) => e.status)).toEqual(['RUNNING', 'SUCCEEDED']);
    expect(seen[0].name).toBe('promote-c1-c0-v7-a1');
  });

  test('an already flipped catalog skips FlipCatalog', async () => {
    const { handler, steps } = scripted({ 'confirm-failure': () => ({ alreadyFlipped: true, version: 8 }) });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(run.status).toBe('SUCCEEDED');
    expect(steps).toEqual(['validate', 'confirm-failure', 'fence-old-primary', 'promote', 'verify-writable', 'clear-pending', 'notify']);
  });

  test('PrimaryAliveError at ConfirmFailure: RecordAbort, then Aborted (SUCCEEDED with the abort output)', async () => {
    const { handler, steps, events } = scripted({
      'confirm-failure': () => {
        throw named('PrimaryAliveError', 'primary dbid 2 answers again; no failover');
      },
      'record-abort': () => ({ aborted: true, cause: 'PrimaryAliveError' }),
    });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(steps).toEqual(['validate', 'confirm-failure', 'record-abort']);
    expect(run.status).toBe('SUCCEEDED');
    expect(run.output).toMatchObject({ recordAbort: { aborted: true }, error: { Error: 'PrimaryAliveError' } });
    // $.error.Cause is what Lambda puts there: the error JSON.
    const error = (events[2].input as { error: { Cause: string } }).error;
    expect(JSON.parse(error.Cause)).toMatchObject({ errorType: 'PrimaryAliveError', errorMessage: 'primary dbid 2 answers again; no failover' });
  });

  test('HostCommandError once at PromoteMirror: retried, then SUCCEEDED', async () => {
    const { handler, steps } = scripted({
      promote: (call) => {
        if (call === 1) throw named('HostCommandError', 'pg_promote timed out');
        return { promotedAt: 'now' };
      },
    });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(run.status).toBe('SUCCEEDED');
    expect(steps).toEqual(['validate', 'confirm-failure', 'fence-old-primary', 'flip-catalog', 'promote', 'promote', 'verify-writable', 'clear-pending', 'notify']);
  });

  test('retries pause for the definition interval unless overridden', async () => {
    const { handler } = scripted({
      promote: (call) => {
        if (call === 1) throw named('SegmentUnreachableError');
        return {};
      },
    });
    const real = new LocalWorkflows({ workflows: { PromoteMirror: { handler, definition } } });
    const started = Date.now();
    expect((await real.run('PromoteMirror', fresh())).status).toBe('SUCCEEDED');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950); // IntervalSeconds 1
  });

  test('CatalogConflictError at FlipCatalog: 1 + 3 attempts, then RecordFailure and PromotionFailed', async () => {
    const { handler, steps, events } = scripted({
      'flip-catalog': () => {
        throw named('CatalogConflictError', 'catalog of cluster c1 is no longer at version 7');
      },
    });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(steps).toEqual(['validate', 'confirm-failure', 'fence-old-primary', 'flip-catalog', 'flip-catalog', 'flip-catalog', 'flip-catalog', 'record-failure']);
    expect(run).toMatchObject({ status: 'FAILED', error: 'PromotionFailed' });
    expect(JSON.parse(run.cause ?? '')).toMatchObject({ errorType: 'CatalogConflictError' });
    expect((events[7].input as { error: { Error: string } }).error.Error).toBe('CatalogConflictError');
  });

  test('MirrorNotPromotableError at ConfirmFailure goes to RecordFailure without retry', async () => {
    const { handler, steps } = scripted({
      'confirm-failure': () => {
        throw named('MirrorNotPromotableError', 'mirror dbid 4 is not in sync');
      },
    });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(steps).toEqual(['validate', 'confirm-failure', 'record-failure']);
    expect(run).toMatchObject({ status: 'FAILED', error: 'PromotionFailed' });
  });

  test('a Notify that fails (even the Lambda itself) still ends in Promoted: the promotion is done', async () => {
    const { handler, steps } = scripted({
      notify: () => {
        throw new TypeError('boom');
      },
    });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(steps.slice(-2)).toEqual(['clear-pending', 'notify']);
    expect(steps).not.toContain('record-failure');
    expect(run).toMatchObject({ status: 'SUCCEEDED' });
  });

  test('every Lambda task retries Lambda.TooManyRequestsException (a throttled step never ran)', () => {
    for (const name of taskStates) {
      expect(states[name].Retry).toContainEqual({ ErrorEquals: ['Lambda.TooManyRequestsException'], IntervalSeconds: 1, MaxAttempts: 6, BackoffRate: 2 });
    }
  });

  test('ValidationError at ValidateInput: FAILED with error InvalidInput and the cause', async () => {
    const { handler, steps } = scripted({
      validate: () => {
        throw named('ValidationError', 'invalid PromoteMirror input: content: expected number');
      },
    });
    const run = await workflows(handler).run('PromoteMirror', fresh());
    expect(steps).toEqual(['validate']);
    expect(run).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(JSON.parse(run.cause ?? '')).toMatchObject({ errorType: 'ValidationError', errorMessage: 'invalid PromoteMirror input: content: expected number' });
  });

  test('a retry of the same failure episode (next attempt) starts a new execution', async () => {
    const { handler } = scripted();
    const wf = workflows(handler);
    const same = fresh();
    const first = await wf.run('PromoteMirror', same);
    const retry = await wf.run('PromoteMirror', { ...same, attempt: 2 });
    expect(retry).toMatchObject({ started: true, status: 'SUCCEEDED' });
    expect(retry.executionName).toBe(first.executionName.replace(/-a1$/, '-a2'));
  });

  test('a second start with the same input starts nothing, while it runs and after it finished', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { handler, steps } = scripted({
      promote: async () => {
        await gate;
        return {};
      },
    });
    const wf = workflows(handler);
    const same = fresh();
    const first = await wf.start('PromoteMirror', same);
    expect(first.started).toBe(true);
    const whileRunning = await wf.start('PromoteMirror', { ...same, reason: 'started again' });
    expect(whileRunning).toEqual({ executionName: first.executionName, started: false });
    release();
    expect((await wf.wait(first.executionName)).status).toBe('SUCCEEDED');
    expect(await wf.start('PromoteMirror', same)).toEqual({ executionName: first.executionName, started: false });
    expect(steps.filter((s) => s === 'validate')).toHaveLength(1);
    await expect(wf.wait('promote-nobody')).rejects.toThrow(/no local execution/);
  });

  test('localWorkflows runs the synthesized definition (cached per process)', async () => {
    const { handler, steps } = scripted();
    const run = await localWorkflows({ PromoteMirror: handler }, { retryIntervalMs: 0 }).run('PromoteMirror', fresh());
    expect(run.status).toBe('SUCCEEDED');
    expect(steps).toHaveLength(8);
    expect(() => new LocalWorkflows({ workflows: { PromoteMirror: { handler: undefined as never, definition } } })).toThrow(/PromoteMirror handler must be a function/);
    expect(() => new LocalWorkflows({ workflows: undefined as never })).toThrow(/workflows must name/);
    await expect(localWorkflows({ PromoteMirror: handler }).startExecution('RecoverSegments', 'x', {})).rejects.toThrow(/RecoverSegments is not run here/);
  });

  test('abort stops a running execution', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { handler, steps } = scripted({ promote: () => gate.then(() => ({})) });
    const wf = workflows(handler);
    const { executionName } = await wf.start('PromoteMirror', fresh());
    while (!steps.includes('promote')) await new Promise((r) => setTimeout(r, 5));
    expect(wf.abort(executionName)).toBe(true);
    expect(await wf.wait(executionName)).toEqual({ status: 'ABORTED' });
    expect(wf.abort(executionName)).toBe(false);
    release(); // lets the task's timeout timer go
    await new Promise((r) => setTimeout(r, 20));
    expect(steps).not.toContain('verify-writable');
  });
});
