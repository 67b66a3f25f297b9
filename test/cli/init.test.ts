/**
 * `ftsctl init`: the spec's schema, the rows it plans or takes (placement checked by the
 * planner), hosts discovered from EC2 (request shapes checked with aws-sdk-client-mock),
 * and the write against the test run's DynamoDB Local: version 1 with its history row,
 * an existing cluster refused unless --replace, nothing written on any refusal. Also the
 * prober invoked before the cluster is registered.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, DescribeInstanceStatusCommand, DescribePlacementGroupsCommand, EC2Client, type Instance, type InstanceStateName } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { formatInit, parseDiscoverTag, parseInitSpec, planInit, readInitSpec, registerCluster, type InitSpec } from '../../cli/init';
import { Ec2Compute } from '../../lambdas/adapters/aws/ec2-compute';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { createCatalogTables, type CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import { ValidationError } from '../../lambdas/core/errors';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import type { Telemetry } from '../../lambdas/ports/telemetry';
import { runProber, type ProberDeps } from '../../lambdas/service/prober';

const suffix = randomUUID().slice(0, 8);
const tables: CatalogTableNames = { segments: `init-segments-${suffix}`, history: `init-history-${suffix}`, clusters: `init-clusters-${suffix}` };
const catalog = new DynamoDbCatalog({ client: new DynamoDBClient({}), tables });

beforeAll(async () => {
  await createCatalogTables(new DynamoDBClient({}), tables);
});

const twoHosts = (): InitSpec =>
  parseInitSpec({
    hosts: [
      { hostname: 'sdw1', address: '10.0.1.11', instanceId: 'i-0000000000000001', availabilityZone: 'us-east-1a' },
      { hostname: 'sdw2', address: '10.0.2.12', instanceId: 'i-0000000000000002', availabilityZone: 'us-east-1b' },
    ],
    primariesPerHost: 2,
    mirroring: 'group',
    coordinator: { host: { hostname: 'cdw', address: '10.0.1.10', instanceId: 'i-0000000000000003', availabilityZone: 'us-east-1a' }, standbyHost: { hostname: 'scdw', address: '10.0.2.10', instanceId: 'i-0000000000000004', availabilityZone: 'us-east-1b' } },
    settings: { probeIntervalSeconds: 3 },
  });

describe('the spec', () => {
  test.each([
    ['an unknown key', { hosts: ['sdw1'], mirorring: 'none' }, /unknown key\(s\) mirorring/],
    ['an unknown host key', { hosts: [{ hostname: 'sdw1', zone: 'a' }] }, /hosts\.0: unknown key\(s\) zone/],
    ['a bad instance id', { hosts: [{ hostname: 'sdw1', instanceId: 'sdw1' }] }, /hosts\.0\.instanceId: must be an EC2 instance id/],
    ['a partition without its group', { hosts: [{ hostname: 'sdw1', partitionNumber: 2 }] }, /partitionNumber needs a placementGroup of strategy partition/],
    ['a partition of a spread group', { hosts: [{ hostname: 'sdw1', placementGroup: 'g', placementStrategy: 'spread', partitionNumber: 2 }] }, /partitionNumber needs a placementGroup of strategy partition/],
    ['partition 8', { hosts: [{ hostname: 'sdw1', placementGroup: 'g', partitionNumber: 8 }] }, /hosts\.0\.partitionNumber: must be 1 to 7/],
    ['a relative data directory', { hosts: ['sdw1'], dataDirectoryRoot: 'data' }, /dataDirectoryRoot: must be an absolute path/],
    ['port 70000', { hosts: ['sdw1'], basePort: 70000 }, /basePort: must be a port/],
    ['a bad cluster id', { clusterId: 'a b', hosts: ['sdw1'] }, /clusterId: must be 1 to 48 letters/],
    ['segments and a layout', { segments: [{ dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/d' }], primariesPerHost: 2 }, /segments lists every instance: leave out primariesPerHost/],
    ['a standby port without a standby', { hosts: ['sdw1'], coordinator: { host: 'cdw', standbyPort: 5433 } }, /standbyPort needs standbyHost/],
  ])('%s is refused, naming where', (_name, spec, message) => {
    expect(() => parseInitSpec(spec)).toThrow(message);
    expect(() => parseInitSpec(spec)).toThrow(ValidationError);
  });

  test('a file that cannot be read or is not JSON', () => {
    expect(() => readInitSpec('/nonexistent/cluster.json')).toThrow(/^cannot read --spec \/nonexistent\/cluster\.json: ENOENT/);
    expect(() => readInitSpec('cluster.json', () => '{"hosts": [')).toThrow(/^--spec cluster\.json is not valid JSON/);
    expect(readInitSpec('cluster.json', () => '{"hosts": ["sdw1", "sdw2"]}').hosts).toEqual(['sdw1', 'sdw2']);
  });

  test('--discover-tag takes key=value', () => {
    expect(parseDiscoverTag('fts:cluster-id=prod')).toEqual({ key: 'fts:cluster-id', value: 'prod' });
    expect(parseDiscoverTag('Name=a=b')).toEqual({ key: 'Name', value: 'a=b' });
    for (const bad of ['prod', '=prod', 'key=', ' = ']) expect(() => parseDiscoverTag(bad)).toThrow(/--discover-tag takes key=value/);
  });
});

describe('planned from the hosts', () => {
  test("gpinitsystem's layout: coordinator, primaries, mirrors, standby; placement from the hosts; settings validated", async () => {
    const plan = await planInit(twoHosts(), { clusterId: 'plan', aws: true });
    expect(plan.rows.map((r) => [r.dbid, r.content, r.role, r.hostname, r.port, r.datadir, r.mode])).toEqual([
      [1, -1, 'p', 'cdw', 5432, '/data/coordinator/gpseg-1', 's'],
      [2, 0, 'p', 'sdw1', 6000, '/data/primary/gpseg0', 's'],
      [3, 1, 'p', 'sdw1', 6001, '/data/primary/gpseg1', 's'],
      [4, 2, 'p', 'sdw2', 6000, '/data/primary/gpseg2', 's'],
      [5, 3, 'p', 'sdw2', 6001, '/data/primary/gpseg3', 's'],
      [6, 0, 'm', 'sdw2', 7000, '/data/mirror/gpseg0', 's'],
      [7, 1, 'm', 'sdw2', 7001, '/data/mirror/gpseg1', 's'],
      [8, 2, 'm', 'sdw1', 7000, '/data/mirror/gpseg2', 's'],
      [9, 3, 'm', 'sdw1', 7001, '/data/mirror/gpseg3', 's'],
      [10, -1, 'm', 'scdw', 5432, '/data/coordinator/gpseg-1', 's'],
    ]);
    expect(plan.rows.find((r) => r.dbid === 6)).toMatchObject({ address: '10.0.2.12', instanceId: 'i-0000000000000002', availabilityZone: 'us-east-1b' });
    expect(plan.warnings).toEqual([]);
    expect(plan.settings).toEqual({ ...DEFAULT_SETTINGS, probeIntervalSeconds: 3 });
  });

  test('a mirror in its primary\'s partition is refused; a shared zone is a warning; hosts without instance ids are a warning in AWS', async () => {
    const partitioned = parseInitSpec({
      hosts: [
        { hostname: 'sdw1', placementGroup: 'gp', placementStrategy: 'partition', partitionNumber: 1, availabilityZone: 'us-east-1a' },
        { hostname: 'sdw2', placementGroup: 'gp', placementStrategy: 'partition', partitionNumber: 1, availabilityZone: 'us-east-1a' },
      ],
      mirroring: 'group',
    });
    await expect(planInit(partitioned, { clusterId: 'p' })).rejects.toThrow(/mirror dbid 4 \(content 0\) is in partition 1 of placement group gp, the partition of its primary dbid 2/);
    const zoned = parseInitSpec({ hosts: [{ hostname: 'sdw1', availabilityZone: 'us-east-1a' }, { hostname: 'sdw2', availabilityZone: 'us-east-1a' }] });
    const plan = await planInit(zoned, { clusterId: 'z', aws: true });
    expect(plan.warnings).toEqual([
      expect.stringMatching(/mirror dbid 4 \(content 0\) is in availability zone us-east-1a, the zone of its primary dbid 2/),
      expect.stringMatching(/mirror dbid 5 \(content 1\) is in availability zone us-east-1a/),
      expect.stringMatching(/^4 instance\(s\) have no EC2 instance id \(dbid 2, 3, 4, 5\): host operations through SSM/),
    ]);
  });

  test("the planner's refusals and bad settings come through", async () => {
    await expect(planInit(parseInitSpec({ hosts: ['sdw1', 'sdw2'], primariesPerHost: 2, mirroring: 'spread' }), { clusterId: 'x' })).rejects.toThrow(/spread mirroring .* needs more than 2 hosts/);
    await expect(planInit(parseInitSpec({ hosts: ['sdw1'], mirroring: 'group' }), { clusterId: 'x' })).rejects.toThrow(/group mirroring needs at least 2 hosts/);
    await expect(planInit(parseInitSpec({ hosts: ['sdw1', 'sdw1'], mirroring: 'none' }), { clusterId: 'x' })).rejects.toThrow(/host sdw1 is listed 2 times/);
    await expect(planInit(parseInitSpec({ hosts: ['sdw1'], mirroring: 'none', settings: { probeTimeoutSeconds: 0 } }), { clusterId: 'x' })).rejects.toThrow(/probeTimeoutSeconds must be at least 0.5/);
    await expect(planInit(parseInitSpec({ mirroring: 'none' }), { clusterId: 'x' })).rejects.toThrow(/the spec needs hosts \(or --discover-tag\), or segments/);
  });
});

describe('every instance listed (an existing cluster)', () => {
  const seg = (dbid: number, content: number, role: 'p' | 'm', hostname: string, port: number, extra: Record<string, unknown> = {}) => ({ dbid, content, role, port, hostname, datadir: `/gpdata/${role}/gpseg${content}`, ...extra });

  test('defaults: preferred role, mode s for a pair and n alone, status u, address and placement from the hosts', async () => {
    const spec = parseInitSpec({
      hosts: [{ hostname: 'sdw1', address: '10.0.0.1', instanceId: 'i-00000000000000a1', availabilityZone: 'us-east-1a' }, 'sdw2'],
      segments: [seg(1, -1, 'p', 'sdw1', 5432), seg(2, 0, 'p', 'sdw1', 6000), seg(3, 0, 'm', 'sdw2', 7000, { address: '10.0.0.2', systemIdentifier: '7312345678901234567' }), seg(4, 1, 'p', 'sdw2', 6000, { preferredRole: 'm', status: 'u' })],
    });
    const plan = await planInit(spec, { clusterId: 'listed' });
    expect(plan.rows).toEqual([
      { dbid: 1, content: -1, role: 'p', preferredRole: 'p', mode: 'n', status: 'u', port: 5432, hostname: 'sdw1', address: '10.0.0.1', datadir: '/gpdata/p/gpseg-1', instanceId: 'i-00000000000000a1', availabilityZone: 'us-east-1a' },
      { dbid: 2, content: 0, role: 'p', preferredRole: 'p', mode: 's', status: 'u', port: 6000, hostname: 'sdw1', address: '10.0.0.1', datadir: '/gpdata/p/gpseg0', instanceId: 'i-00000000000000a1', availabilityZone: 'us-east-1a' },
      { dbid: 3, content: 0, role: 'm', preferredRole: 'm', mode: 's', status: 'u', port: 7000, hostname: 'sdw2', address: '10.0.0.2', datadir: '/gpdata/m/gpseg0', systemIdentifier: '7312345678901234567' },
      { dbid: 4, content: 1, role: 'p', preferredRole: 'm', mode: 'n', status: 'u', port: 6000, hostname: 'sdw2', address: 'sdw2', datadir: '/gpdata/p/gpseg1' },
    ]);
  });

  test.each([
    ['a mirror on its primary\'s host', [seg(2, 0, 'p', 'sdw1', 6000), seg(3, 0, 'm', 'sdw1', 7000)], /mirror dbid 3 \(content 0\) is on host sdw1, the host of its primary dbid 2/],
    ['one port twice on a host', [seg(2, 0, 'p', 'sdw1', 6000), seg(3, 1, 'p', 'sdw1', 6000)], /dbid 2 and dbid 3 both use port 6000 on host sdw1/],
    ['a dbid twice', [seg(2, 0, 'p', 'sdw1', 6000), seg(2, 1, 'p', 'sdw2', 6000)], /dbid 2 appears 2 times/],
    ['two primaries of a content', [seg(2, 0, 'p', 'sdw1', 6000), seg(3, 0, 'p', 'sdw2', 6000)], /content 0 has 2 acting primaries/],
    ['a content with no primary', [seg(2, 0, 'p', 'sdw1', 6000), seg(3, 1, 'm', 'sdw2', 7000)], /content 1 has no primary/],
    ['a gap in the contents', [seg(2, 0, 'p', 'sdw1', 6000), seg(3, 2, 'p', 'sdw2', 6000)], /contents must be numbered 0 to 1 without gaps .*: missing content 1/],
  ])('%s is refused', async (_name, segments, message) => {
    await expect(planInit(parseInitSpec({ segments }), { clusterId: 'bad' })).rejects.toThrow(message);
  });
});

describe('--discover-tag: hosts from EC2', () => {
  const ec2 = mockClient(EC2Client);
  beforeEach(() => ec2.reset());
  afterAll(() => ec2.restore());
  const compute = () => new Ec2Compute(new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } }));
  const instance = (n: number, hostname: string, partition: number, az: string, state: InstanceStateName = 'running'): Instance => ({
    InstanceId: `i-000000000000000${n}`,
    PrivateIpAddress: `10.0.0.${n}`,
    PrivateDnsName: `ip-10-0-0-${n}.ec2.internal`,
    Placement: { AvailabilityZone: az, GroupName: 'gp-part', PartitionNumber: partition },
    State: { Name: state },
    Tags: [{ Key: 'fts:cluster-id', Value: 'prod' }, { Key: 'fts:hostname', Value: hostname }],
  });
  const mockFleet = (instances: Instance[]) => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: instances }] });
    ec2.on(DescribePlacementGroupsCommand).resolves({ PlacementGroups: [{ GroupName: 'gp-part', Strategy: 'partition', PartitionCount: 3 }] });
    ec2.on(DescribeInstanceStatusCommand).resolves({ InstanceStatuses: [] });
  };

  test('asks EC2 for the tagged instances and their placement groups; rows carry instance, address, zone, group and partition; the coordinator hosts hold no segment', async () => {
    mockFleet([instance(1, 'cdw', 1, 'us-east-1a'), instance(2, 'scdw', 2, 'us-east-1b'), instance(3, 'sdw1', 1, 'us-east-1a'), instance(4, 'sdw2', 2, 'us-east-1b', 'stopped'), instance(5, 'sdw3', 3, 'us-east-1c')]);
    const spec = parseInitSpec({ primariesPerHost: 1, mirroring: 'group', coordinator: { host: 'cdw', standbyHost: 'scdw' } });
    const plan = await planInit(spec, { clusterId: 'prod', discover: { key: 'fts:cluster-id', value: 'prod' }, compute: compute(), aws: true });

    expect(ec2.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input)).toEqual([
      { Filters: [{ Name: 'tag:fts:cluster-id', Values: ['prod'] }, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }] },
    ]);
    expect(ec2.commandCalls(DescribePlacementGroupsCommand).map((c) => c.args[0].input)).toEqual([{ GroupNames: ['gp-part'] }]);
    expect(plan.rows.filter((r) => r.content >= 0).map((r) => r.hostname).sort()).toEqual(['sdw1', 'sdw1', 'sdw2', 'sdw2', 'sdw3', 'sdw3']);
    expect(plan.rows.find((r) => r.dbid === 1)).toMatchObject({ hostname: 'cdw', address: '10.0.0.1', instanceId: 'i-0000000000000001', availabilityZone: 'us-east-1a', placementGroup: 'gp-part', partitionNumber: 1 });
    const sdw3 = plan.rows.find((r) => r.hostname === 'sdw3' && r.role === 'p');
    expect(sdw3).toMatchObject({ address: '10.0.0.5', instanceId: 'i-0000000000000005', placementGroup: 'gp-part', partitionNumber: 3 });
    // Each mirror in another partition than its primary (the planner arranged the ring).
    for (const m of plan.rows.filter((r) => r.role === 'm' && r.content >= 0)) {
      expect(m.partitionNumber).not.toBe(plan.rows.find((r) => r.content === m.content && r.role === 'p')?.partitionNumber);
    }
    expect(plan.warnings).toEqual(['host sdw2 (i-0000000000000004) is stopped']);
    expect(formatInit({ ...plan, written: false })).toMatch(/us-east-1c gp-part\/3 i-0000000000000005[\s\S]*warning: host sdw2 \(i-0000000000000004\) is stopped\ndry run: nothing written$/);
  });

  test('nothing tagged, hosts in the spec too, an unknown coordinator host, rows on unknown hosts: refused', async () => {
    mockFleet([]);
    const discover = { key: 'fts:cluster-id', value: 'prod' };
    await expect(planInit(parseInitSpec({ mirroring: 'none' }), { clusterId: 'prod', discover, compute: compute() })).rejects.toThrow(/no EC2 instance \(pending, running, stopping or stopped\) carries the tag fts:cluster-id=prod/);
    await expect(planInit(parseInitSpec({ hosts: ['sdw1'] }), { clusterId: 'prod', discover, compute: compute() })).rejects.toThrow(/--discover-tag builds the host list from EC2: leave hosts out of the spec/);
    mockFleet([instance(3, 'sdw1', 1, 'us-east-1a'), instance(4, 'sdw2', 2, 'us-east-1b')]);
    await expect(planInit(parseInitSpec({ coordinator: { host: 'cdw' } }), { clusterId: 'prod', discover, compute: compute() })).rejects.toThrow(/the coordinator host cdw is not among the instances tagged fts:cluster-id=prod: sdw1, sdw2/);
    const segments = [{ dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw9', datadir: '/d/p0' }];
    await expect(planInit(parseInitSpec({ segments }), { clusterId: 'prod', discover, compute: compute() })).rejects.toThrow(/no instance tagged fts:cluster-id=prod has the hostname sdw9; found sdw1, sdw2/);
  });
});

describe('registering (DynamoDB Local)', () => {
  test('version 1 with its history row; an existing cluster refused with nothing written; --replace starts it anew', async () => {
    const clusterId = `reg-${suffix}`;
    const plan = await planInit(twoHosts(), { clusterId });
    const result = await registerCluster(catalog, plan, { now: () => new Date('2026-11-24T10:00:00.000Z') });
    expect(result).toMatchObject({ written: true });
    expect(result.replacedVersion).toBeUndefined();
    const snapshot = await catalog.load(clusterId);
    expect(snapshot).toMatchObject({ version: 1, status: 'up', segments: plan.rows });
    expect(await catalog.loadSettings(clusterId)).toEqual(plan.settings);
    expect(await catalog.history(clusterId)).toEqual([{ time: '2026-11-24T10:00:00.000Z', dbid: 1, description: `cluster ${clusterId} initialized with 10 segment instances (4 contents) at catalog version 1` }]);
    expect(formatInit(result)).toMatch(/registered at catalog version 1; the prober watches it from its next invocation$/);

    // A change moves it to version 2; init again is refused and changes nothing.
    await catalog.apply(clusterId, 1, { status: 'degraded', rows: [{ ...plan.rows[6], status: 'd', mode: 'n' }, { ...plan.rows[2], mode: 'n' }], history: [{ time: new Date().toISOString(), dbid: 7, description: 'mirror down' }, { time: new Date().toISOString(), dbid: 3, description: 'sync rep off' }] });
    const other = await planInit(parseInitSpec({ hosts: ['a1', 'a2'] }), { clusterId });
    await expect(registerCluster(catalog, other)).rejects.toThrow(new RegExp(`^cluster ${clusterId} is already registered \\(at catalog version 2, 10 instances, degraded\\); nothing was written. --replace replaces it`));
    expect((await catalog.load(clusterId)).version).toBe(2);
    expect(await catalog.history(clusterId)).toHaveLength(3);

    const replaced = await registerCluster(catalog, other, { replace: true });
    expect(replaced.replacedVersion).toBe(2);
    expect(formatInit(replaced)).toMatch(/\(replaced the cluster at version 2\)/);
    expect(await catalog.load(clusterId)).toMatchObject({ version: 1, segments: other.rows });
    expect(await catalog.history(clusterId)).toHaveLength(1);
  });

  test('--replace is refused while a workflow holds a content', async () => {
    const clusterId = `busy-${suffix}`;
    const plan = await planInit(twoHosts(), { clusterId });
    await registerCluster(catalog, plan);
    const since = new Date();
    await catalog.apply(clusterId, 1, { rows: [], history: [], setOperations: [{ content: 0, kind: 'recovery', execution: 'recover-1', since: since.toISOString(), expiresAt: new Date(since.getTime() + 600_000).toISOString() }] });
    await expect(registerCluster(catalog, plan, { replace: true })).rejects.toThrow(/has work in flight: recovery execution recover-1 on content 0; nothing was written/);
    expect((await catalog.load(clusterId)).version).toBe(2);
  });
});

test('the prober invoked before the cluster is registered logs one clear line and ends without error; after init it takes the lease', async () => {
  const clusterId = `unregistered-${suffix}`;
  const lines: { level: string; message: string }[] = [];
  const record = (level: string) => (message: string) => void lines.push({ level, message });
  const telemetry: Telemetry = { info: record('info'), warn: record('warn'), error: record('error'), metric: () => undefined, flush: () => undefined };
  const deps = { catalog, telemetry, clock: Date.now, sleep: async () => undefined } as unknown as ProberDeps;
  await expect(runProber(deps, { clusterId, owner: 'test', deadline: Date.now() + 60_000 })).resolves.toBe(0);
  expect(lines).toEqual([{ level: 'warn', message: `cluster ${clusterId} is not in the catalog: nothing to probe until it is registered (ftsctl init --spec <cluster.json>)` }]);

  await registerCluster(catalog, await planInit(parseInitSpec({ hosts: ['sdw1'], mirroring: 'none' }), { clusterId }));
  const lease = await catalog.acquireLease(clusterId, 'test', 10_000, Date.now());
  expect(lease).toMatchObject({ clusterId, owner: 'test', token: 1 });
});
