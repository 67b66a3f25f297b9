/**
 * ActivateStandby's synthesized ASL, run by LocalWorkflows with the real step code on the
 * in-memory fakes: the order of what it does, its retries, a failure after the catalog
 * flip that the next run finishes, and the native StopInstances task (its request shape;
 * there is no EC2 locally).
 */
import { HostCommandError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import { LocalWorkflows, type StepEvent } from '../../lambdas/adapters/local/local-workflows';
import type { ClientEndpoint } from '../../lambdas/ports/endpoint';
import { silentTelemetry } from '../../lambdas/ports/telemetry';
import { runActivateStandbyStepEvent } from '../../lambdas/service/activate-standby';
import type { WorkflowDeps } from '../../lambdas/service/steps';
import { synthesizeDefinition } from '../../lib/local-definition';
import { FakeCatalog, FakeSegments } from '../support/fakes';

const CLUSTER = 'c1';
const NOW = new Date('2026-11-24T10:00:00.000Z');

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number, over: Partial<SegmentRow> = {}): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`, datadir: `/data/${content === -1 ? 'coordinator' : role}/gpseg${content}`, ...over,
});

/** A fake endpoint that follows moveTo, and can fail a number of times first. */
class FakeEndpoint implements ClientEndpoint {
  target?: SegmentRow;
  failures = 0;
  async describe() {
    return { kind: 'fake', address: this.target?.address ?? 'endpoint.internal', port: this.target?.port ?? 5432, ...(this.target ? { target: { address: this.target.address, port: this.target.port } } : {}) };
  }
  async moveTo(coordinator: SegmentRow) {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new HostCommandError('the endpoint API did not answer');
    }
    this.target = coordinator;
  }
}

async function setup(options: { instanceIds?: boolean } = {}) {
  const catalog = new FakeCatalog();
  const ids = options.instanceIds ? { instanceId: 'i-0123456789abcdef0' } : {};
  await catalog.initialize(CLUSTER, [row(1, -1, 'p', 'cdw', 5432, ids), row(6, -1, 'm', 'scdw', 5432), row(2, 0, 'p', 'sdw1', 6000, { mode: 'n' })], DEFAULT_SETTINGS, NOW.toISOString());
  const world = FakeSegments.fromRows((await catalog.load(CLUSTER)).segments);
  const endpoint = new FakeEndpoint();
  const deps: WorkflowDeps = { catalog, probe: world, control: world, host: world, telemetry: silentTelemetry, now: () => new Date(), endpoint };
  const steps: string[] = [];
  const sdkCalls: unknown[] = [];
  /** Steps that throw before they run, by name: how many times each still does. */
  const failNext: Record<string, Error[]> = {};
  const workflows = new LocalWorkflows({
    workflows: {
      ActivateStandby: {
        definition: synthesizeDefinition('ActivateStandby').definition,
        handler: async (event: StepEvent) => {
          steps.push(event.step);
          const error = failNext[event.step]?.shift();
          if (error) throw error;
          return runActivateStandbyStepEvent(deps, event);
        },
        sdkTasks: {
          StopCoordinatorInstance: async (parameters) => {
            sdkCalls.push(parameters);
            return { StoppingInstances: [{ InstanceId: 'i-0123456789abcdef0', CurrentState: { Name: 'stopping' } }] };
          },
        },
      },
    },
    retryIntervalMs: 0,
  });
  let runs = 0;
  const run = (input: Record<string, unknown> = {}) => workflows.runExecution('ActivateStandby', `activate-${++runs}`, { clusterId: CLUSTER, ...input });
  const runRaw = (input: unknown) => workflows.runExecution('ActivateStandby', `activate-${++runs}`, input);
  const coordinatorRows = async () => (await catalog.load(CLUSTER)).segments.filter((r) => r.content === -1);
  return { catalog, world, endpoint, steps, sdkCalls, failNext, run, runRaw, coordinatorRows };
}

test('a dead coordinator: confirmed down, fenced, the catalog flipped, the standby promoted, the endpoint moved, a write checked through it', async () => {
  const t = await setup();
  t.world.kill(1);
  const outcome = await t.run();
  expect(outcome.status).toBe('SUCCEEDED');
  expect(t.steps).toEqual(['validate', 'confirm-down', 'fence-coordinator', 'activate', 'move-endpoint', 'verify-write', 'finish']);
  expect(await t.coordinatorRows()).toEqual([expect.objectContaining({ dbid: 6, role: 'p', preferredRole: 'p', status: 'u', mode: 'n' })]);
  // Fenced before the promotion; the write check reached the new coordinator through the endpoint.
  const calls = t.world.calls.filter((c) => /^(fence|promote|verifyWritable) /.test(c));
  expect(calls.slice(0, 2)).toEqual(['fence 1', 'promote 6']);
  expect(t.world.instance(1)).toMatchObject({ running: false, fenced: true });
  expect(t.world.instance(6)).toMatchObject({ inRecovery: false });
  expect(t.endpoint.target?.dbid).toBe(6);
  expect((await t.catalog.load(CLUSTER)).pendingOperations).toEqual([]);
  expect(t.sdkCalls).toEqual([]);
});

test('a step that fails once is retried, and the activation ends as usual', async () => {
  const t = await setup();
  t.world.kill(1);
  t.failNext.activate = [new HostCommandError('the host did not answer')];
  t.endpoint.failures = 1;
  const outcome = await t.run();
  expect(outcome.status).toBe('SUCCEEDED');
  expect(t.steps.filter((s) => s === 'activate')).toHaveLength(2);
  expect(t.steps.filter((s) => s === 'move-endpoint')).toHaveLength(2);
  expect(t.endpoint.target?.dbid).toBe(6);
});

test('a failure after the flip leaves the plan in a lapsed hold; the next run finishes the activation', async () => {
  const t = await setup();
  t.world.kill(1);
  t.endpoint.failures = 10; // past the retries
  const failed = await t.run();
  expect(failed).toMatchObject({ status: 'FAILED', error: 'ActivationFailed' });
  expect(await t.coordinatorRows()).toEqual([expect.objectContaining({ dbid: 6, role: 'p' })]);
  const lapsed = (await t.catalog.load(CLUSTER)).pendingOperations;
  expect(lapsed).toHaveLength(1);
  expect(Date.parse(lapsed[0].expiresAt)).toBeLessThanOrEqual(Date.now());
  t.endpoint.failures = 0;
  const again = await t.run();
  expect(again.status).toBe('SUCCEEDED');
  expect(t.endpoint.target?.dbid).toBe(6);
  expect((await t.catalog.load(CLUSTER)).pendingOperations).toEqual([]);
});

test('stopInstance: after the fence, the native StopInstances task stops the old coordinator instance with Force', async () => {
  const t = await setup({ instanceIds: true });
  t.world.kill(1);
  const outcome = await t.run({ stopInstance: true });
  expect(outcome.status).toBe('SUCCEEDED');
  expect(t.sdkCalls).toEqual([{ InstanceIds: ['i-0123456789abcdef0'], Force: true }]);
});

test('stopInstance without an instance id in the catalog is InvalidInput, nothing changed', async () => {
  const t = await setup();
  const before = await t.catalog.load(CLUSTER);
  const outcome = await t.run({ stopInstance: true });
  expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInput', cause: expect.stringMatching(/stopInstance needs the EC2 instance of coordinator dbid 1/) });
  expect((await t.catalog.load(CLUSTER)).version).toBe(before.version);
});

test('a coordinator its standby still hears from is alive: refused, the hold released, nothing else changed', async () => {
  const t = await setup();
  t.world.isolateHost('cdw'); // FTS cannot reach it; the standby still streams from it
  const before = await t.coordinatorRows();
  const outcome = await t.run();
  expect(outcome).toMatchObject({ status: 'FAILED', error: 'ActivationRefused' });
  expect(outcome.cause).toMatch(/still streams from the coordinator/);
  expect(await t.coordinatorRows()).toEqual(before);
  expect((await t.catalog.load(CLUSTER)).pendingOperations).toEqual([]);
  expect(t.world.calls.some((c) => c.startsWith('fence'))).toBe(false);
});

test('a fence that cannot be confirmed stops the activation; forced, it goes on', async () => {
  const t = await setup();
  t.world.crashHost('cdw'); // the coordinator is down and so is its host's agent
  const refused = await t.run();
  expect(refused).toMatchObject({ status: 'FAILED', error: 'ActivationRefused' });
  expect(refused.cause).toMatch(/could not be confirmed/);
  expect((await t.coordinatorRows()).map((r) => `${r.dbid}${r.role}`).sort()).toEqual(['1p', '6m']);
  const forced = await t.run({ force: true });
  expect(forced.status).toBe('SUCCEEDED');
  expect(await t.coordinatorRows()).toEqual([expect.objectContaining({ dbid: 6, role: 'p' })]);
});

test.each([
  ['an array', ['c1']],
  ['a string', 'activate'],
  ['an unknown cluster', { clusterId: 'no-such-cluster' }],
])('console input that is %s: InvalidInput with a cause, nothing changed', async (_what, input) => {
  const t = await setup();
  const before = await t.catalog.load(CLUSTER);
  const outcome = await t.runRaw(input);
  expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
  expect(outcome.cause).toMatch(/invalid ActivateStandby input|cluster no-such-cluster/);
  expect((await t.catalog.load(CLUSTER)).version).toBe(before.version);
});
