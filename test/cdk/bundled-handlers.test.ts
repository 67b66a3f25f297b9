/**
 * What ships is what is tested: the FtsStack is synthesized WITH bundling (esbuild, as
 * `cdk synth` runs it), and the PromoteMirror function's bundled index.js from the cloud
 * assembly runs the synthesized PromoteMirror definition (LocalWorkflows) against a real
 * local cluster. Step Functions' Retry and Catch match on error names, so the bundle
 * must keep the domain errors' class names through minification (esbuild keepNames).
 */
import { readFileSync } from 'node:fs';
import { killInstance } from '../../lambdas/adapters/local/host';
import { LocalWorkflows, type LocalExecutionOutcome, type StepEvent as PromoteStepEvent } from '../../lambdas/adapters/local/local-workflows';
import type { WorkflowInputs } from '../../lambdas/workflows';
import type { ClusterSnapshot } from '../../lambdas/core/model';

type PromoteMirrorInput = WorkflowInputs['PromoteMirror'];
const PROMOTE_STATES = { invalidInput: 'InvalidInput', aborted: 'Aborted', promoted: 'Promoted' } as const;
import { interceptDynamoDb, localFunctionEnvironment, synthesizeBundledStack, type BundledStack, type DynamoDbInterceptor } from '../support/bundled-handlers';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(120_000);

// dbids of the default test layout: primary 2 and mirror 4 hold content 0, primary 3 and mirror 5 content 1.
const PRIMARY = 2;
const MIRROR = 4;
const CONTENT_1 = { content: 1, failedPrimaryDbid: 3, mirrorDbid: 5 };

type StepHandler = (event: PromoteStepEvent) => Promise<Record<string, unknown>>;
type Definition = ReturnType<BundledStack['promoteMirrorDefinition']>;

let bundled: BundledStack | undefined;
let cluster: TestCluster | undefined;
/** The bundled code's way to DynamoDB Local, to play a concurrent catalog writer. */
let dynamo: DynamoDbInterceptor | undefined;
let handler: StepHandler;
let bundleText: string;
let definition: Definition;
const savedEnv = { ...process.env };

beforeAll(async () => {
  bundled = synthesizeBundledStack();
  definition = bundled.promoteMirrorDefinition();
  const bundlePath = bundled.bundlePath('promoteMirror');
  bundleText = readFileSync(bundlePath, 'utf8');
  cluster = await testCluster('bundled');
  dynamo = await interceptDynamoDb(process.env.AWS_ENDPOINT_URL_DYNAMODB!);
  // The bundle reads its environment when it is loaded; its DynamoDB requests go through `dynamo`.
  Object.assign(process.env, localFunctionEnvironment(bundled.environment('promoteMirror'), cluster.clusterId), { AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  handler = (require(bundlePath) as { handler: StepHandler }).handler;
  expect(typeof handler).toBe('function');
});

afterAll(async () => {
  await cluster?.destroy();
  await dynamo?.close();
  bundled?.remove();
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

/** Runs PromoteMirror with the bundled handler; returns its outcome, the steps called and the state it ended in. */
async function runBundled(
  input: PromoteMirrorInput,
  beforeStep: (event: PromoteStepEvent) => void = () => undefined,
): Promise<{ outcome: LocalExecutionOutcome; steps: string[]; endState: string }> {
  const steps: string[] = [];
  const workflows = new LocalWorkflows({
    retryIntervalMs: 0,
    workflows: {
      PromoteMirror: {
        definition: structuredClone(definition),
        handler: (event) => {
          steps.push(event.step);
          beforeStep(event);
          return handler(event);
        },
      },
    },
  });
  const outcome = await workflows.runExecution('PromoteMirror', `bundled-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, input);
  return { outcome, steps, endState: endState(outcome, steps) };
}

/**
 * The state an execution ended in: a Fail state's error (its name here), or for a
 * success the Succeed state that follows the Task of the last step called.
 */
function endState(outcome: LocalExecutionOutcome, steps: string[]): string {
  if (outcome.status !== 'SUCCEEDED') return outcome.error ?? outcome.status;
  const last = steps.at(-1);
  const task = Object.values(definition.States).find((s) => s.Type === 'Task' && (s.Parameters as { step?: string } | undefined)?.step === last);
  const next = task?.Next as string | undefined;
  return next && definition.States[next]?.Type === 'Succeed' ? next : `after ${last}`;
}

/** The input the prober sends (lambdas/service/prober.ts startPromotion), by default for content 0. */
const promotionInput = (snapshot: ClusterSnapshot, why: string, pair = { content: 0, failedPrimaryDbid: PRIMARY, mirrorDbid: MIRROR }): PromoteMirrorInput => ({
  clusterId: snapshot.clusterId,
  ...pair,
  catalogVersion: snapshot.version,
  reason: `primary dbid ${pair.failedPrimaryDbid} of content ${pair.content} failed (${why}); its mirror dbid ${pair.mirrorDbid} is in sync: promoting it`,
});

/** Kills an instance and waits until its mirror no longer streams from it (as it is by the time the prober decides). */
async function killPrimary(c: TestCluster, primaryDbid: number, mirrorDbid: number): Promise<void> {
  const mirror = await c.row(mirrorDbid);
  expect(await killInstance((await c.row(primaryDbid)).datadir)).toBe(true);
  await waitFor(`mirror dbid ${mirrorDbid} to stop streaming from the killed primary`, async () => ((await c.control.walReceiver(mirror)).state !== 'streaming' ? true : undefined), 30_000);
}

/** Error names the definition's Retry and Catch match on, besides Step Functions' and Lambda's own. */
const matchedErrorNames = (): string[] => {
  const names = Object.values(definition.States).flatMap((s) =>
    [...((s.Retry as { ErrorEquals: string[] }[] | undefined) ?? []), ...((s.Catch as { ErrorEquals: string[] }[] | undefined) ?? [])].flatMap((r) => r.ErrorEquals),
  );
  return [...new Set(names)].filter((n) => !n.startsWith('States.') && !n.startsWith('Lambda.')).sort();
};

test('the bundle keeps, as class names, every error name the state machine matches on', () => {
  const names = matchedErrorNames();
  expect(names).toEqual(expect.arrayContaining(['CatalogConflictError', 'PrimaryAliveError', 'ValidationError']));
  // esbuild --keep-names records each class's original name as a string; minified without it, the names are gone.
  expect(names.filter((n) => !bundleText.includes(`"${n}"`))).toEqual([]);
});

test('errors thrown by the bundled handler keep their class names', async () => {
  const snapshot = await cluster!.catalog.load(cluster!.clusterId);
  await expect(handler({ step: 'validate', input: { ...promotionInput(snapshot, 'test'), content: -1 } })).rejects.toMatchObject({ name: 'ValidationError' });
  // The primary is alive: confirm-failure refuses.
  await expect(handler({ step: 'confirm-failure', input: promotionInput(snapshot, 'test') })).rejects.toMatchObject({ name: 'PrimaryAliveError' });
});

test('invalid input ends in InvalidInput', async () => {
  const snapshot = await cluster!.catalog.load(cluster!.clusterId);
  const { outcome, endState: state } = await runBundled({ ...promotionInput(snapshot, 'test'), mirrorDbid: PRIMARY });
  expect({ status: outcome.status, state }).toEqual({ status: 'FAILED', state: PROMOTE_STATES.invalidInput });
  expect(outcome.cause).toMatch(/ValidationError/);
});

test('a live primary: PromoteMirror ends in Aborted and the catalog rows are unchanged', async () => {
  const before = await cluster!.catalog.load(cluster!.clusterId);
  const { outcome, steps, endState: state } = await runBundled(promotionInput(before, 'connection refused after 2 attempt(s)'));
  expect({ status: outcome.status, state, error: outcome.error }).toEqual({ status: 'SUCCEEDED', state: PROMOTE_STATES.aborted, error: undefined });
  expect((outcome.output as { recordAbort?: unknown }).recordAbort).toMatchObject({ aborted: true, cause: expect.stringMatching(/^PrimaryAliveError: /) });
  expect(steps).not.toContain('flip-catalog');
  expect(steps).not.toContain('promote');
  const after = await cluster!.catalog.load(cluster!.clusterId);
  expect(after.segments).toEqual(before.segments);
  expect(after.pendingPromotions).toEqual([]);
});

test('a killed primary: PromoteMirror ends in Promoted and the catalog names the mirror acting primary', async () => {
  const c = cluster!;
  await killPrimary(c, PRIMARY, MIRROR);
  const snapshot = await c.catalog.load(c.clusterId);
  const { outcome, steps, endState: state } = await runBundled(promotionInput(snapshot, 'connection refused after 2 attempt(s)'));
  expect({ status: outcome.status, state, error: outcome.error, cause: outcome.cause }).toEqual({
    status: 'SUCCEEDED',
    state: PROMOTE_STATES.promoted,
    error: undefined,
    cause: undefined,
  });
  expect(steps).toEqual(expect.arrayContaining(['flip-catalog', 'promote', 'verify-writable']));
  const after = await c.catalog.load(c.clusterId);
  expect(after.segments.find((r) => r.dbid === MIRROR)).toMatchObject({ role: 'p', status: 'u' });
  expect(after.segments.find((r) => r.dbid === PRIMARY)).toMatchObject({ role: 'm', status: 'd' });
  expect(after.pendingPromotions).toEqual([]);
  const probe = await c.probe.probe(await c.row(MIRROR), await c.catalog.loadSettings(c.clusterId));
  expect(probe).toMatchObject({ ok: true, inRecovery: false });
});

test('a catalog conflict at FlipCatalog is retried: another writer changes the catalog first, the promotion still ends in Promoted', async () => {
  const c = cluster!;
  const { failedPrimaryDbid, mirrorDbid } = CONTENT_1;
  await killPrimary(c, failedPrimaryDbid, mirrorDbid);
  const snapshot = await c.catalog.load(c.clusterId);
  const concurrentWrite = async () => {
    const now = await c.catalog.load(c.clusterId);
    await c.catalog.apply(c.clusterId, now.version, { rows: [], history: [{ time: new Date().toISOString(), dbid: failedPrimaryDbid, description: 'test: a concurrent catalog writer' }] });
  };
  let conflict: { ran: boolean; error?: unknown } | undefined;
  const { outcome, steps, endState: state } = await runBundled(promotionInput(snapshot, 'connection refused after 2 attempt(s)', CONTENT_1), (event) => {
    // The first FlipCatalog has read the catalog when its write arrives: the write then meets a newer version.
    if (event.step === 'flip-catalog' && !conflict) {
      const hook: { ran: boolean; error?: unknown } = { ran: false };
      conflict = hook;
      dynamo!.beforeNextTransaction(concurrentWrite).then(
        () => (hook.ran = true),
        (e: unknown) => (hook.error = e),
      );
    }
  });
  expect(conflict).toEqual({ ran: true });
  expect({ status: outcome.status, state, error: outcome.error, cause: outcome.cause }).toEqual({
    status: 'SUCCEEDED',
    state: PROMOTE_STATES.promoted,
    error: undefined,
    cause: undefined,
  });
  expect(steps.filter((s) => s === 'flip-catalog')).toHaveLength(2);
  expect(steps).not.toContain('record-failure');
  const after = await c.catalog.load(c.clusterId);
  expect(after.segments.find((r) => r.dbid === mirrorDbid)).toMatchObject({ role: 'p', status: 'u' });
  expect(after.segments.find((r) => r.dbid === failedPrimaryDbid)).toMatchObject({ role: 'm', status: 'd' });
  expect((await c.catalog.history(c.clusterId)).map((h) => h.description)).toContain('test: a concurrent catalog writer');
});
