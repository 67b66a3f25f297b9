/**
 * The Lambda handlers as AWS runs them: environment from the constructs, the catalog in
 * DynamoDB Local, a real PostgreSQL cluster, Step Functions faked with
 * aws-sdk-client-mock (no local equivalent of StartExecution) and its request checked.
 */
import { mockClient } from 'aws-sdk-client-mock';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { killInstance } from '../../lambdas/adapters/local/host';
import { DEFAULT_CATALOG_TABLE_NAMES } from '../../lambdas/adapters/dynamodb/tables';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';

jest.setTimeout(120_000);

const STATE_MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:PromoteMirror';
const sfn = mockClient(SFNClient);
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await testCluster('handlers');
  Object.assign(process.env, {
    FTS_CLUSTER_ID: cluster.clusterId,
    FTS_PROMOTE_STATE_MACHINE_ARN: STATE_MACHINE,
    FTS_PG_USER: 'postgres',
    FTS_SEGMENTS_TABLE: DEFAULT_CATALOG_TABLE_NAMES.segments,
    FTS_HISTORY_TABLE: DEFAULT_CATALOG_TABLE_NAMES.history,
    FTS_CLUSTERS_TABLE: DEFAULT_CATALOG_TABLE_NAMES.clusters,
    POWERTOOLS_SERVICE_NAME: 'fts-test',
    POWERTOOLS_METRICS_NAMESPACE: 'ServerlessFTS',
    // Tests are quiet: the handlers' structured logs and EMF metrics would go to stdout.
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
});
afterAll(async () => {
  await cluster?.destroy();
  sfn.restore();
});

/** A Lambda context with `remainingMs` left. */
const context = (remainingMs: number) => {
  const end = Date.now() + remainingMs;
  return { awsRequestId: `req-${Date.now()}`, getRemainingTimeInMillis: () => end - Date.now() };
};

test('prober handler: rejects an event for another cluster', async () => {
  const { handler } = await import('../../lambdas/handlers/prober');
  await expect(handler({ clusterId: 'other' }, context(60_000))).rejects.toThrow(/prober event must be \{"clusterId": "handlers-/);
});

test('prober handler: a killed primary starts PromoteMirror with an execution name from cluster, content and version', async () => {
  sfn.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: `${STATE_MACHINE}:x`, startDate: new Date() });
  const { handler } = await import('../../lambdas/handlers/prober');
  const version = (await cluster.catalog.load(cluster.clusterId)).version;
  await killInstance((await cluster.row(2)).datadir);
  // 55 s are kept for the last round and the release: this invocation probes for about 5 s.
  const result = await handler({ clusterId: cluster.clusterId }, context(60_000));
  expect(result.rounds).toBeGreaterThanOrEqual(3);
  const calls = sfn.commandCalls(StartExecutionCommand);
  expect(calls.length).toBeGreaterThanOrEqual(1);
  const request = calls[0].args[0].input;
  expect(request).toMatchObject({ stateMachineArn: STATE_MACHINE, name: `promote-${cluster.clusterId}-c0-v${version}-a1` });
  expect(JSON.parse(request.input!)).toEqual({
    clusterId: cluster.clusterId,
    content: 0,
    failedPrimaryDbid: 2,
    mirrorDbid: 4,
    catalogVersion: version,
    attempt: 1,
    failure: 'unreachable',
    reason: expect.stringMatching(/primary dbid 2 of content 0 failed/),
  });
  // The lease is released at the end: a next invocation takes it at once.
  expect(await cluster.catalog.acquireLease(cluster.clusterId, 'next', 1000, Date.now())).not.toBeNull();
});

test('promote-mirror handler: runs the steps against the real catalog and instances; unknown steps are refused', async () => {
  const { handler } = await import('../../lambdas/handlers/promote-mirror');
  const version = (await cluster.catalog.load(cluster.clusterId)).version;
  const input = { clusterId: cluster.clusterId, content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: version, reason: 'test' };
  await expect(handler({ step: 'drop-everything', input })).rejects.toThrow(/unknown PromoteMirror step "drop-everything"/);
  expect(await handler({ step: 'validate', input })).toEqual({ valid: true });
  expect(await handler({ step: 'confirm-failure', input })).toMatchObject({ alreadyFlipped: false });
  expect(await handler({ step: 'flip-catalog', input: { ...input, confirmFailure: {} } })).toMatchObject({ written: true });
  await handler({ step: 'promote', input });
  await handler({ step: 'verify-writable', input });
  expect(await handler({ step: 'clear-pending', input })).toMatchObject({ cleared: true });
  expect(await cluster.row(4)).toMatchObject({ role: 'p', status: 'u' });
});
