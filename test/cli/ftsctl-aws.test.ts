/**
 * ftsctl against a deployed stack, as `--outputs <file>` names it: the catalog is the
 * test run's DynamoDB Local (the SDK's AWS_ENDPOINT_URL_DYNAMODB, as a user would point
 * it), so `init`, `state`, `history` and `settings` run end to end as child processes.
 * The calls with no local service (Step Functions, EC2, CloudFormation) run in-process
 * with aws-sdk-client-mock, their request shapes checked.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, DescribeInstanceStatusCommand, DescribePlacementGroupsCommand, EC2Client, type Instance } from '@aws-sdk/client-ec2';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { buildProgram } from '../../bin/ftsctl';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { freePort } from '../../lambdas/adapters/local/net';
import { createCatalogTables, type CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import { WORKFLOW_KINDS } from '../../lambdas/workflows/spec';

jest.setTimeout(120_000);

const suffix = randomUUID().slice(0, 8);
const clusterId = `aws-${suffix}`;
const tables: CatalogTableNames = { segments: `ftsctl-segments-${suffix}`, history: `ftsctl-history-${suffix}`, clusters: `ftsctl-clusters-${suffix}` };
const catalog = new DynamoDbCatalog({ client: new DynamoDBClient({}), tables });
const arn = (kind: string) => `arn:aws:states:us-east-1:123456789012:stateMachine:${kind}-${suffix}`;
const stackOutputs = {
  SegmentsTable: tables.segments,
  HistoryTable: tables.history,
  ClustersTable: tables.clusters,
  ...Object.fromEntries(WORKFLOW_KINDS.map((k) => [`${k}StateMachineArn`, arn(k)])),
  ClusterId: clusterId,
  ControlPlaneSecurityGroupId: 'sg-0123456789abcdef0',
  DashboardUrl: `https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/fts-${clusterId}`,
};

const dir = mkdtempSync(join(tmpdir(), 'fts-ftsctl-aws-'));
const outputs = join(dir, 'cdk-outputs.json');
const spec = join(dir, 'cluster.json');
const host = (n: number, az: string) => ({ hostname: `sdw${n}`, address: `10.0.${n}.1${n}`, instanceId: `i-000000000000000${n}`, availabilityZone: az });
writeFileSync(outputs, JSON.stringify({ Network: { VpcId: 'vpc-1' }, [`Fts-${clusterId}`]: stackOutputs }));
writeFileSync(spec, JSON.stringify({
  hosts: [host(1, 'us-east-1a'), host(2, 'us-east-1b')],
  mirroring: 'group',
  coordinator: { host: { hostname: 'cdw', address: '10.0.1.10', instanceId: 'i-0000000000000009', availabilityZone: 'us-east-1a' }, standbyHost: { hostname: 'scdw', address: '10.0.2.10', instanceId: 'i-0000000000000008', availabilityZone: 'us-east-1b' } },
}));

const env: NodeJS.ProcessEnv = { ...process.env, FTS_LOCAL_DIR: dir };
delete env.FTS_CLUSTER_ID;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** ftsctl as a user runs it (a child process through tsx). */
function ftsctl(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'ftsctl.ts'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** ftsctl in this process (so aws-sdk-client-mock sees its clients): what it printed and its exit code. */
async function inProcess(args: string[]): Promise<{ stdout: string; code: number | undefined }> {
  let stdout = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  process.exitCode = undefined;
  try {
    await buildProgram().parseAsync(['node', 'ftsctl', ...args]);
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  const code = process.exitCode === undefined ? undefined : Number(process.exitCode);
  process.exitCode = undefined;
  return { stdout, code };
}

beforeAll(async () => {
  await createCatalogTables(new DynamoDBClient({}), tables);
});
afterAll(async () => {
  await catalog.destroy(clusterId);
  rmSync(dir, { recursive: true, force: true });
});

describe('end to end through --outputs (child processes, DynamoDB Local)', () => {
  test('init registers the cluster the stack watches; init again is refused and changes nothing', async () => {
    const init = await ftsctl(['init', '--spec', spec, '--outputs', outputs]);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toMatch(new RegExp(`^Cluster ${clusterId}: 6 instances, 2 contents`));
    expect(init.stdout).toMatch(/registered at catalog version 1; the prober watches it from its next invocation/);
    expect(await catalog.load(clusterId)).toMatchObject({ version: 1, status: 'up' });

    const again = await ftsctl(['init', '--spec', spec, '--outputs', outputs]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(new RegExp(`^ftsctl: cluster ${clusterId} is already registered \\(at catalog version 1, 6 instances, up\\); nothing was written. --replace replaces it`));
    expect(again.stdout).toBe('');
    expect(await catalog.history(clusterId)).toHaveLength(1);
  });

  test('state and history read the stack\'s tables', async () => {
    const state = await ftsctl(['state', '--outputs', outputs]);
    expect(state.stderr).toBe('');
    expect(state.stdout).toMatch(new RegExp(`^Cluster ${clusterId}: UP   catalog version 1`));
    expect(state.stdout).toMatch(/10\.0\.1\.11:6000/);
    const history = await ftsctl(['history', '--outputs', outputs, '--json']);
    expect(JSON.parse(history.stdout)).toEqual([expect.objectContaining({ dbid: 1, description: expect.stringMatching(/initialized with 6 segment instances \(2 contents\) at catalog version 1/) })]);
  });

  test('settings: shown, changed (validated as a whole), a bad change refused with nothing written', async () => {
    const shown = await ftsctl(['settings', '--outputs', outputs]);
    expect(shown.stdout).toMatch(new RegExp(`^Settings of cluster ${clusterId}:`));
    expect(shown.stdout).toMatch(/probeIntervalSeconds\s+2\n/);

    const changed = await ftsctl(['settings', '--outputs', outputs, '--set', 'probeIntervalSeconds=3', '--set', 'autoActivateStandby=true']);
    expect(changed.stderr).toBe('');
    expect(changed.stdout).toMatch(/changed \(the prober applies them from its next round\)/);
    expect(changed.stdout).toMatch(/probeIntervalSeconds\s+2\s+3/);
    expect(changed.stdout).toMatch(/autoActivateStandby\s+false\s+true/);
    expect(await catalog.loadSettings(clusterId)).toEqual({ ...DEFAULT_SETTINGS, probeIntervalSeconds: 3, autoActivateStandby: true });

    const contradiction = await ftsctl(['settings', '--outputs', outputs, '--set', 'standbySynchronous=false']);
    expect(contradiction.code).toBe(2);
    expect(contradiction.stderr).toMatch(/^ftsctl: invalid settings: autoActivateStandby needs standbySynchronous/);
    const unknown = await ftsctl(['settings', '--outputs', outputs, '--set', 'probeInterval=3']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/--set: unknown setting probeInterval; known settings are probeIntervalSeconds, /);
    expect(await catalog.loadSettings(clusterId)).toEqual({ ...DEFAULT_SETTINGS, probeIntervalSeconds: 3, autoActivateStandby: true });
  });

  test('a cluster other than the stack\'s, or a local directory with a stack: refused before anything is read', async () => {
    const other = await ftsctl(['state', '--outputs', outputs, '--cluster', 'other']);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(new RegExp(`^ftsctl: the cluster ids disagree: --cluster names other, stack Fts-${clusterId} in .* names ${clusterId}`));
    const both = await ftsctl(['history', '--outputs', outputs, '--dir', dir]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--dir names a local cluster, --outputs and --stack a stack in AWS/);
  });
});

describe('in-process, with the AWS calls that have no local service mocked', () => {
  const sfn = mockClient(SFNClient);
  const ec2 = mockClient(EC2Client);
  const cfn = mockClient(CloudFormationClient);
  beforeAll(async () => {
    // This block stands alone: the cluster as init writes it (a second registration is refused).
    await catalog.destroy(clusterId);
    expect((await inProcess(['init', '--spec', spec, '--outputs', outputs])).stdout).toMatch(/registered at catalog version 1/);
  });
  beforeEach(() => {
    sfn.reset();
    ec2.reset();
    cfn.reset();
  });
  afterAll(() => {
    sfn.restore();
    ec2.restore();
    cfn.restore();
  });
  const succeeded = (output: unknown) => {
    sfn.on(StartExecutionCommand).callsFake((input: { stateMachineArn: string; name: string }) => ({ executionArn: `${input.stateMachineArn.replace(':stateMachine:', ':execution:')}:${input.name}` }));
    sfn.on(DescribeExecutionCommand).resolves({ status: 'SUCCEEDED', output: JSON.stringify(output) });
  };
  const started = () => sfn.commandCalls(StartExecutionCommand).map((c) => ({ ...c.args[0].input, input: JSON.parse(c.args[0].input.input as string) as Record<string, unknown> }));

  test('state with every flag', async () => {
    for (const [flags, pattern] of [
      [[], /Primary/],
      [['-e'], /All segments are running normally/],
      [['-m'], /Mirror/],
      [['-c'], /content\s+primary\s+dbid\s+mirror\s+dbid/],
      [['-f'], /Standby/],
    ] as [string[], RegExp][]) {
      const run = await inProcess(['state', '--outputs', outputs, ...flags]);
      expect(run.stdout).toMatch(new RegExp(`^Cluster ${clusterId}: UP`));
      expect(run.stdout).toMatch(pattern);
    }
    const json = JSON.parse((await inProcess(['state', '--outputs', outputs, '--json', '-f'])).stdout) as { version: number; segments: unknown[]; standbyReplication: unknown };
    expect(json).toMatchObject({ clusterId, version: 1, standbyReplication: null });
    expect(json.segments).toHaveLength(6);
  });

  test('activatestandby starts the stack\'s ActivateStandby with the catalog version, and follows it', async () => {
    succeeded({ finish: { message: 'dbid 6 is the coordinator' } });
    const run = await inProcess(['activatestandby', '--outputs', outputs, '-f']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^dbid 6 is the coordinator/);
    const [call] = started();
    expect(call).toMatchObject({ stateMachineArn: arn('ActivateStandby'), input: { clusterId, catalogVersion: 1, force: true, reason: 'ftsctl activatestandby -f' } });
    expect(call.name).toMatch(/\S+/);
    expect(sfn.commandCalls(DescribeExecutionCommand)[0].args[0].input).toEqual({ executionArn: `arn:aws:states:us-east-1:123456789012:execution:ActivateStandby-${suffix}:${call.name}` });
  });

  test('recoverseg picks RecoverSegments or, with -r, Rebalance from the outputs; --no-wait prints the execution', async () => {
    succeeded({ summarize: { done: [{ content: 0, dbid: 4 }], failed: [], skipped: [], warnings: [] } });
    const recover = await inProcess(['recoverseg', '--outputs', outputs, '-F']);
    expect(recover.code).toBe(0);
    expect(recover.stdout).toMatch(/content 0: dbid 4 recovered/);
    expect(started()).toEqual([expect.objectContaining({ stateMachineArn: arn('RecoverSegments'), input: expect.objectContaining({ clusterId, catalogVersion: 1, mode: 'full' }) })]);
    sfn.reset();
    succeeded({});
    const rebalance = await inProcess(['recoverseg', '--outputs', outputs, '-r', '--no-wait']);
    expect(rebalance.stdout).toMatch(new RegExp(`^Rebalance started: arn:aws:states:us-east-1:123456789012:execution:Rebalance-${suffix}:`));
    expect(sfn.commandCalls(DescribeExecutionCommand)).toHaveLength(0);
    const calls = started();
    expect(calls.map((c) => c.stateMachineArn)).toEqual([arn('Rebalance')]);
    expect(calls[0].input).toMatchObject({ clusterId, catalogVersion: 1 });
  });

  test('initstandby and workflow run use the stack\'s state machines; --state-machine-arn still wins', async () => {
    succeeded({});
    await inProcess(['initstandby', '--outputs', outputs, '-r', '--no-wait']);
    await inProcess(['workflow', 'run', 'PromoteMirror', '--outputs', outputs, '--input', JSON.stringify({ clusterId, content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 1 })]);
    const mine = 'arn:aws:states:us-east-1:123456789012:stateMachine:Mine';
    await inProcess(['workflow', 'run', 'PromoteMirror', '--outputs', outputs, '--state-machine-arn', mine, '--input', JSON.stringify({ clusterId, content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 1 })]);
    expect(started().map((c) => [c.stateMachineArn, c.input.clusterId])).toEqual([
      [arn('InitStandby'), clusterId],
      [arn('PromoteMirror'), clusterId],
      [mine, clusterId],
    ]);
    expect(started()[0].input).toMatchObject({ remove: true, catalogVersion: 1 });
  });

  test('probe reads the stack\'s catalog and probes every instance from here', async () => {
    // Another stack's cluster, on this machine at a port nothing listens on.
    const probeId = `probe-${suffix}`;
    const port = await freePort();
    const probeOutputs = join(dir, 'probe-outputs.json');
    writeFileSync(probeOutputs, JSON.stringify({ [`Fts-${probeId}`]: { ...stackOutputs, ClusterId: probeId } }));
    const probeSpec = join(dir, 'probe.json');
    writeFileSync(probeSpec, JSON.stringify({
      segments: [{ dbid: 2, content: 0, role: 'p', hostname: 'sdw1', address: '127.0.0.1', port, datadir: '/data/primary/gpseg0' }],
      settings: { probeRetries: 0, probeTimeoutSeconds: 1 },
    }));
    try {
      expect((await inProcess(['init', '--spec', probeSpec, '--outputs', probeOutputs])).stdout).toMatch(/registered at catalog version 1/);
      const run = await inProcess(['probe', '--outputs', probeOutputs, '--json']);
      expect(JSON.parse(run.stdout)).toEqual([expect.objectContaining({ ok: false, dbid: 2, kind: 'refused' })]);
    } finally {
      await catalog.destroy(probeId);
    }
  });

  test('--stack reads the outputs with DescribeStacks, then the catalog', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: `Fts-${clusterId}`, StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: Object.entries(stackOutputs).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })) }] });
    const run = await inProcess(['history', '--stack', `Fts-${clusterId}`, '--region', 'us-east-1']);
    expect(run.stdout).toMatch(/initialized with 6 segment instances/);
    expect(cfn.commandCalls(DescribeStacksCommand).map((c) => c.args[0].input)).toEqual([{ StackName: `Fts-${clusterId}` }]);
  });

  test('init --discover-tag --dry-run reads EC2 in the stack\'s region and writes nothing', async () => {
    const instance = (n: number, name: string, az: string): Instance => ({ InstanceId: `i-00000000000000${n}0`, PrivateIpAddress: `10.1.0.${n}`, Placement: { AvailabilityZone: az }, State: { Name: 'running' }, Tags: [{ Key: 'fts:hostname', Value: name }] });
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [instance(1, 'sdw1', 'us-east-1a'), instance(2, 'sdw2', 'us-east-1b'), instance(3, 'sdw3', 'us-east-1c')] }] });
    ec2.on(DescribeInstanceStatusCommand).resolves({ InstanceStatuses: [] });
    const discovered = join(dir, 'discovered.json');
    writeFileSync(discovered, JSON.stringify({ primariesPerHost: 2, mirroring: 'spread', settings: { probeIntervalSeconds: 1, mirrorDownGracePeriodSeconds: 2 } }));
    const run = await inProcess(['init', '--spec', discovered, '--outputs', outputs, '--discover-tag', `fts:cluster-id=${clusterId}`, '--dry-run', '--json']);
    const result = JSON.parse(run.stdout) as { written: boolean; segments: { hostname: string; instanceId: string; address: string }[]; settings: { probeIntervalSeconds: number } };
    expect(result).toMatchObject({ clusterId, written: false, settings: { probeIntervalSeconds: 1 } });
    expect(result.segments).toHaveLength(12);
    expect(result.segments.every((r) => /^i-0+\d0$/.test(r.instanceId) && r.address.startsWith('10.1.0.'))).toBe(true);
    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters?.[0]).toEqual({ Name: 'tag:fts:cluster-id', Values: [clusterId] });
    expect(ec2.commandCalls(DescribePlacementGroupsCommand)).toHaveLength(0);
    expect(await ec2.call(0).thisValue.config.region()).toBe('us-east-1');
    expect((await catalog.load(clusterId)).segments).toHaveLength(6); // unchanged
  });
});
