/**
 * Faster detection of lost hosts: an EC2 state-change event, in the shape EventBridge
 * delivers it, fed to the service (in-memory fakes, a controlled clock) and to the Lambda
 * handler itself (catalog in DynamoDB Local, a probe of a port nobody listens on, Step
 * Functions mocked). A stopped host's primary is probed at once and its failover started
 * with the input and execution name the prober would use, so the prober's own start of
 * that failover is a no-op; nothing is written to the catalog; rows the function may not
 * act on (a mirror on the host) are left to the prober.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { createCatalogTables, type CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import { ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS, parseSettings, type Settings } from '../../lambdas/core/settings';
import { silentTelemetry, type MetricName, type Telemetry } from '../../lambdas/ports/telemetry';
import { executionNameFor, type StartedExecution, type Workflows } from '../../lambdas/ports/workflows';
import type { WorkflowInputs } from '../../lambdas/workflows';
import type { WorkflowKind } from '../../lambdas/workflows/spec';
import { EC2_STATE_CHANGE_DETAIL_TYPE, handleHostEvent, HOST_LOST_STATES, parseHostEvent, SECOND_OPINION_WAIT_MS, type HostEventDeps } from '../../lambdas/service/host-event';
import { runProber } from '../../lambdas/service/prober';
import { runPromoteStepEvent } from '../../lambdas/service/promotion';
import { localWorkflows } from '../../lib/local-definition';
import { FakeCatalog, FakeSegments } from '../support/fakes';

const CLUSTER = 'c1';
const SDW1 = 'i-0123456789abcdef1';
const SDW2 = 'i-0123456789abcdef2';
const CDW = 'i-0123456789abcdefc';
const SCDW = 'i-0123456789abcdefd';
const T0 = Date.parse('2026-11-23T10:00:00.000Z');

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number, instanceId: string): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`, datadir: `/data/${role}/gpseg${content}`, instanceId,
});
/** Group mirroring: sdw1 holds primary 2 (content 0) and mirror 5 (content 1); sdw2 primary 3 and mirror 4; the coordinator 1 and its standby 6. */
const rows = (): SegmentRow[] => [
  row(1, -1, 'p', 'cdw', 5432, CDW),
  row(6, -1, 'm', 'scdw', 5432, SCDW),
  row(2, 0, 'p', 'sdw1', 6000, SDW1),
  row(3, 1, 'p', 'sdw2', 6000, SDW2),
  row(4, 0, 'm', 'sdw2', 7000, SDW2),
  row(5, 1, 'm', 'sdw1', 7000, SDW1),
];

/** An EC2 state-change event exactly as EventBridge delivers it. */
const ec2Event = (instanceId: string, state: string, time = new Date(T0).toISOString()) => ({
  version: '0',
  id: '7bf73129-1428-4cd3-a780-95db273d1602',
  'detail-type': EC2_STATE_CHANGE_DETAIL_TYPE,
  source: 'aws.ec2',
  account: '111122223333',
  time: time.replace(/\.\d{3}Z$/, 'Z'),
  region: 'us-east-1',
  resources: [`arn:aws:ec2:us-east-1:111122223333:instance/${instanceId}`],
  detail: { 'instance-id': instanceId, state },
});

/** A clock that moves only when someone sleeps. */
class Clock {
  now = T0 + 2_000; // the event arrives 2 s after the state change
  readonly sleeps: number[] = [];
  readonly read = (): number => this.now;
  readonly sleep = async (ms: number): Promise<void> => {
    this.sleeps.push(ms);
    this.now += ms;
    await new Promise((r) => setImmediate(r));
  };
}

/** Workflows that record what was started, and report a repeated name as not started (Step Functions' ExecutionAlreadyExists). */
class RecordingWorkflows implements Workflows {
  readonly starts: { kind: WorkflowKind; input: unknown; executionName: string; started: boolean }[] = [];
  async start<K extends WorkflowKind>(kind: K, input: WorkflowInputs[K]): Promise<StartedExecution> {
    const executionName = executionNameFor(kind, input);
    const started = !this.starts.some((s) => s.executionName === executionName);
    this.starts.push({ kind, input, executionName, started });
    return { executionName, started };
  }
}

function recordingTelemetry(): Telemetry & { metrics: MetricName[] } {
  const metrics: MetricName[] = [];
  return { ...silentTelemetry, metrics, metric: (name) => void metrics.push(name) };
}

async function setup(settings: Settings = DEFAULT_SETTINGS) {
  const catalog = new FakeCatalog();
  await catalog.initialize(CLUSTER, rows(), settings, new Date(T0 - 3_600_000).toISOString());
  const world = FakeSegments.fromRows(rows());
  const clock = new Clock();
  const workflows = new RecordingWorkflows();
  const telemetry = recordingTelemetry();
  const deps: HostEventDeps = { catalog, probe: world, workflows, telemetry, clock: clock.read, sleep: clock.sleep };
  return { catalog, world, clock, workflows, telemetry, deps };
}

describe('the event', () => {
  test('the EventBridge shape is read: instance, state, time of the change', () => {
    expect(parseHostEvent(ec2Event(SDW1, 'stopped'), 0)).toEqual({ instanceId: SDW1, state: 'stopped', at: T0 });
    // No time: when it was read.
    const { time: _time, ...untimed } = ec2Event(SDW1, 'terminated');
    expect(parseHostEvent(untimed, 42).at).toBe(42);
  });

  test.each<[string, unknown]>([
    ['another source', { ...ec2Event(SDW1, 'stopped'), source: 'aws.autoscaling' }],
    ['another detail type', { ...ec2Event(SDW1, 'stopped'), 'detail-type': 'EC2 Spot Instance Interruption Warning' }],
    ['no instance id', { ...ec2Event(SDW1, 'stopped'), detail: { state: 'stopped' } }],
    ['a malformed instance id', ec2Event('sdw1', 'stopped')],
    ['the prober schedule event', { clusterId: CLUSTER }],
  ])('%s is a ValidationError', (_, event) => {
    expect(() => parseHostEvent(event, 0)).toThrow(ValidationError);
  });

  test('the states the rule matches are the ones that lose a host', () => {
    expect([...HOST_LOST_STATES]).toEqual(['stopping', 'stopped', 'shutting-down', 'terminated']);
  });
});

describe('a stopped host', () => {
  test("its primary is probed once and PromoteMirror started as the prober would, after the mirror's second opinion can count; nothing is written", async () => {
    const t = await setup();
    t.world.crashHost('sdw1');
    const before = await t.catalog.load(CLUSTER);
    const report = await handleHostEvent(t.deps, CLUSTER, parseHostEvent(ec2Event(SDW1, 'stopped'), t.clock.now));

    // Content 0: its primary is on the host. Content 1: only its mirror is (the prober marks it down, under its lease).
    expect(report.contents.map((c) => [c.content, c.outcome])).toEqual([
      [0, 'started'],
      [1, 'left-to-prober'],
    ]);
    expect(t.world.calls.filter((c) => c.startsWith('probe'))).toEqual(['probe 2']);
    expect(report.contents[0].probe).toMatchObject({ ok: false, kind: 'refused', attempts: 1 });
    // Started SECOND_OPINION_WAIT_MS after the state change (the event came 2 s after it).
    expect(t.clock.sleeps).toEqual([SECOND_OPINION_WAIT_MS - 2_000]);
    expect(t.workflows.starts).toEqual([
      {
        kind: 'PromoteMirror',
        executionName: `promote-${CLUSTER}-c0-v${before.version}-a1`,
        started: true,
        input: {
          clusterId: CLUSTER,
          catalogVersion: before.version,
          content: 0,
          failedPrimaryDbid: 2,
          mirrorDbid: 4,
          failure: 'unreachable',
          attempt: 1,
          reason: expect.stringMatching(new RegExp(`^EC2 instance ${SDW1} stopped: primary dbid 2 of content 0 failed`)),
        },
      },
    ]);
    expect(t.telemetry.metrics).toEqual(['FailoversStarted']);
    expect(t.catalog.writes).toBe(0);
    expect(await t.catalog.load(CLUSTER)).toEqual(before);
  });

  test('the prober deciding the same failure starts the same execution: a no-op, never a second failover', async () => {
    const t = await setup(parseSettings({ probeIntervalSeconds: 1 }));
    t.world.crashHost('sdw1');
    await handleHostEvent(t.deps, CLUSTER, parseHostEvent(ec2Event(SDW1, 'stopped'), t.clock.now));
    const rounds = await runProber(
      { catalog: t.catalog, probe: t.world, control: t.world, host: t.world, workflows: t.workflows, telemetry: silentTelemetry, clock: t.clock.read, sleep: t.clock.sleep },
      { clusterId: CLUSTER, owner: 'prober-1', deadline: t.clock.now + 1_500 },
    );
    expect(rounds).toBeGreaterThanOrEqual(1);
    const promotions = t.workflows.starts.filter((s) => s.kind === 'PromoteMirror');
    expect(promotions.map((s) => [s.executionName, s.started])).toEqual([
      [`promote-${CLUSTER}-c0-v1-a1`, true],
      [`promote-${CLUSTER}-c0-v1-a1`, false],
    ]);
  });

  test('the started PromoteMirror (the deployed definition, the real steps) fails the content over', async () => {
    const t = await setup();
    t.world.crashHost('sdw1');
    const workflows = localWorkflows(
      { PromoteMirror: (event) => runPromoteStepEvent({ catalog: t.catalog, probe: t.world, control: t.world, host: t.world, telemetry: silentTelemetry, now: () => new Date() }, event) },
      { retryIntervalMs: 0 },
    );
    const report = await handleHostEvent({ ...t.deps, workflows }, CLUSTER, parseHostEvent(ec2Event(SDW1, 'terminated'), t.clock.now));
    const execution = report.contents[0].execution!;
    expect(execution).toMatchObject({ workflow: 'PromoteMirror', started: true });
    expect(await workflows.wait(execution.executionName)).toMatchObject({ status: 'SUCCEEDED' });
    const segments = (await t.catalog.load(CLUSTER)).segments;
    expect(segments.find((r) => r.dbid === 4)).toMatchObject({ role: 'p', status: 'u' });
    expect(segments.find((r) => r.dbid === 2)).toMatchObject({ role: 'm', status: 'd' });
  });

  test('a failover the prober already started is not started again (its memory, stored with the lease, says so)', async () => {
    const t = await setup(parseSettings({ probeIntervalSeconds: 1 }));
    t.world.crashHost('sdw1');
    await runProber(
      { catalog: t.catalog, probe: t.world, control: t.world, host: t.world, workflows: t.workflows, telemetry: silentTelemetry, clock: t.clock.read, sleep: t.clock.sleep },
      { clusterId: CLUSTER, owner: 'prober-1', deadline: t.clock.now + 1_500 },
    );
    expect(t.workflows.starts).toHaveLength(1);
    const report = await handleHostEvent(t.deps, CLUSTER, parseHostEvent(ec2Event(SDW1, 'stopped', new Date(t.clock.now - 20_000).toISOString()), t.clock.now));
    expect(report.contents[0]).toMatchObject({ content: 0, outcome: 'decided', decisions: ['promotion-pending'] });
    expect(t.workflows.starts).toHaveLength(1);
  });

  test('a primary that still answers (the host is only stopping) is left to the prober', async () => {
    const t = await setup();
    const report = await handleHostEvent(t.deps, CLUSTER, parseHostEvent(ec2Event(SDW1, 'stopping'), t.clock.now));
    expect(report.contents[0]).toMatchObject({ content: 0, outcome: 'decided', probe: { ok: true } });
    expect(t.workflows.starts).toEqual([]);
    expect(t.clock.sleeps).toEqual([]);
  });

  test("the coordinator's host: ActivateStandby only with autoActivateStandby, as the prober", async () => {
    for (const autoActivateStandby of [false, true]) {
      const t = await setup(parseSettings({ autoActivateStandby }));
      t.world.crashHost('cdw');
      const report = await handleHostEvent(t.deps, CLUSTER, parseHostEvent(ec2Event(CDW, 'terminated'), t.clock.now));
      if (!autoActivateStandby) {
        expect(report.contents[0]).toMatchObject({ content: -1, outcome: 'decided', decisions: ['coordinator-unreachable'] });
        expect(t.workflows.starts).toEqual([]);
      } else {
        expect(report.contents[0]).toMatchObject({ content: -1, outcome: 'started' });
        expect(t.workflows.starts).toEqual([
          expect.objectContaining({ kind: 'ActivateStandby', started: true, input: expect.objectContaining({ clusterId: CLUSTER, standbyDbid: 6, automatic: true, attempt: 1, catalogVersion: 1 }) }),
        ]);
        expect(t.telemetry.metrics).toEqual(['StandbyActivationsStarted']);
      }
    }
  });
});

describe('events that are not the cluster', () => {
  test.each([
    ['an instance no row names', ec2Event('i-0fffffffffffffff0', 'terminated'), /no row of cluster c1 names instance i-0fffffffffffffff0/],
    ['a state that is no loss', ec2Event(SDW1, 'running'), /state running is not a loss of the host/],
  ])('%s is ignored without a probe', async (_, event, why) => {
    const t = await setup();
    const report = await handleHostEvent(t.deps, CLUSTER, parseHostEvent(event, t.clock.now));
    expect(report.ignored).toMatch(why);
    expect(report.contents).toEqual([]);
    expect(t.world.calls).toEqual([]);
    expect(t.workflows.starts).toEqual([]);
  });

  test('a cluster not in the catalog (deployed before ftsctl init) is ignored', async () => {
    const t = await setup();
    const report = await handleHostEvent(t.deps, 'unknown', parseHostEvent(ec2Event(SDW1, 'stopped'), t.clock.now));
    expect(report.ignored).toMatch(/cluster unknown is not in the catalog/);
  });
});

describe('the Lambda handler, fed the event', () => {
  const suffix = randomUUID().slice(0, 8);
  const tables: CatalogTableNames = { segments: `he-segments-${suffix}`, history: `he-history-${suffix}`, clusters: `he-clusters-${suffix}` };
  const STATE_MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:PromoteMirror';
  const sfn = mockClient(SFNClient);
  const savedEnv = { ...process.env };
  const clusterId = `he-${suffix}`;

  beforeAll(async () => {
    await createCatalogTables(new DynamoDBClient({}), tables);
    // Nothing listens on these ports: the primary's probe is refused at once.
    const local = (r: SegmentRow): SegmentRow => ({ ...r, address: '127.0.0.1', port: 1 + r.dbid, hostname: r.hostname });
    await new DynamoDbCatalog({ client: new DynamoDBClient({}), tables }).initialize(clusterId, rows().map(local), parseSettings({ probeTimeoutSeconds: 1 }), new Date().toISOString());
    Object.assign(process.env, {
      FTS_CLUSTER_ID: clusterId,
      FTS_PROMOTE_STATE_MACHINE_ARN: STATE_MACHINE,
      FTS_PG_USER: 'postgres',
      FTS_SEGMENTS_TABLE: tables.segments,
      FTS_HISTORY_TABLE: tables.history,
      FTS_CLUSTERS_TABLE: tables.clusters,
      POWERTOOLS_SERVICE_NAME: 'fts-host-event',
      POWERTOOLS_METRICS_NAMESPACE: 'ServerlessFTS',
      POWERTOOLS_LOG_LEVEL: 'SILENT',
      POWERTOOLS_METRICS_DISABLED: 'true',
    });
  });
  afterAll(() => {
    sfn.restore();
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
  });

  test('a stopped host: PromoteMirror started through Step Functions with the execution name the prober uses', async () => {
    sfn.reset();
    sfn.on(StartExecutionCommand).resolves({ executionArn: `${STATE_MACHINE}:x`, startDate: new Date() });
    const { handler } = await import('../../lambdas/handlers/host-event');
    // The state change happened a while ago: no wait for the second opinion.
    const time = new Date(Date.now() - 60_000).toISOString();
    const report = await handler(ec2Event(SDW1, 'stopped', time), { awsRequestId: 'req-1', functionName: 'fts-host-event' });
    expect(report.contents.map((c) => [c.content, c.outcome])).toEqual([
      [0, 'started'],
      [1, 'left-to-prober'],
    ]);
    const calls = sfn.commandCalls(StartExecutionCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0].args[0].input).toMatchObject({ stateMachineArn: STATE_MACHINE, name: `promote-${clusterId}-c0-v1-a1` });
    expect(JSON.parse(calls[0].args[0].input.input!)).toMatchObject({ clusterId, content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 1, attempt: 1, failure: 'unreachable' });
  });

  test('an instance of the account that is not the cluster: ignored; a malformed event: an error', async () => {
    sfn.reset();
    const { handler } = await import('../../lambdas/handlers/host-event');
    expect((await handler(ec2Event('i-0fffffffffffffff0', 'stopped'))).ignored).toMatch(/no row/);
    await expect(handler({ clusterId })).rejects.toThrow(ValidationError);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
  });
});
