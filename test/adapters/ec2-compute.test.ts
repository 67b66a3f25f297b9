import { mockClient } from 'aws-sdk-client-mock';
import {
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  DescribePlacementGroupsCommand,
  EC2Client,
  type DescribeInstancesCommandInput,
  type Instance,
} from '@aws-sdk/client-ec2';
import { Ec2Compute } from '../../lambdas/adapters/aws/ec2-compute';

const ec2 = mockClient(EC2Client);

beforeEach(() => ec2.reset());

/** A client that never reaches AWS: the mock intercepts every send. */
const client = (): EC2Client => new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });

const sdw1: Instance = {
  InstanceId: 'i-0000000000000001',
  PrivateDnsName: 'ip-10-0-1-11.ec2.internal',
  PrivateIpAddress: '10.0.1.11',
  Placement: { AvailabilityZone: 'us-east-1a', GroupName: 'gp-partitions', PartitionNumber: 2 },
  State: { Name: 'running', Code: 16 },
  Tags: [
    { Key: 'fts:cluster', Value: 'prod' },
    { Key: 'fts:hostname', Value: 'sdw1' },
    { Key: 'Name', Value: 'segment host one' },
  ],
};
const sdw2: Instance = {
  InstanceId: 'i-0000000000000002',
  PrivateDnsName: 'ip-10-0-2-12.ec2.internal',
  PrivateIpAddress: '10.0.2.12',
  Placement: { AvailabilityZone: 'us-east-1b', GroupName: '' },
  State: { Name: 'stopped', Code: 80 },
  Tags: [{ Key: 'fts:cluster', Value: 'prod' }],
};
const sdw3: Instance = {
  InstanceId: 'i-0000000000000003',
  PrivateDnsName: 'ip-10-0-3-13.ec2.internal',
  PrivateIpAddress: '10.0.3.13',
  Placement: { AvailabilityZone: 'us-east-1c', GroupName: 'gp-spread' },
  State: { Name: 'running', Code: 16 },
  Tags: [{ Key: 'fts:hostname', Value: 'aaa-sdw3' }],
};

function mockGroupsAndStatuses(): void {
  ec2.on(DescribePlacementGroupsCommand).resolves({
    PlacementGroups: [
      { GroupName: 'gp-partitions', Strategy: 'partition', PartitionCount: 3 },
      { GroupName: 'gp-spread', Strategy: 'spread' },
    ],
  });
  ec2.on(DescribeInstanceStatusCommand).resolves({
    InstanceStatuses: [
      {
        InstanceId: sdw1.InstanceId,
        SystemStatus: { Status: 'ok' },
        InstanceStatus: { Status: 'impaired' },
      },
      // sdw2 (stopped) is not reported: its checks are unknown.
      {
        InstanceId: sdw3.InstanceId,
        SystemStatus: { Status: 'initializing' },
        InstanceStatus: { Status: 'initializing' },
      },
    ],
  });
}

describe('Ec2Compute.discoverHosts', () => {
  it('filters by tag and live states, and maps every field', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [sdw1, sdw2] }, { Instances: [sdw3] }] });
    mockGroupsAndStatuses();

    const hosts = await new Ec2Compute(client()).discoverHosts('fts:cluster', 'prod');

    const describe = ec2.commandCalls(DescribeInstancesCommand);
    expect(describe).toHaveLength(1);
    expect(describe[0].args[0].input.Filters).toEqual([
      { Name: 'tag:fts:cluster', Values: ['prod'] },
      { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
    ]);
    const groups = ec2.commandCalls(DescribePlacementGroupsCommand);
    expect(groups).toHaveLength(1);
    expect(groups[0].args[0].input).toEqual({ GroupNames: ['gp-partitions', 'gp-spread'] });
    const statuses = ec2.commandCalls(DescribeInstanceStatusCommand);
    expect(statuses).toHaveLength(1);
    expect(statuses[0].args[0].input).toEqual({
      InstanceIds: ['i-0000000000000001', 'i-0000000000000002', 'i-0000000000000003'],
      IncludeAllInstances: true,
    });

    // Sorted by hostname: the tag wins, the private DNS name is the fallback.
    expect(hosts).toEqual([
      {
        instanceId: 'i-0000000000000003',
        hostname: 'aaa-sdw3',
        privateIp: '10.0.3.13',
        availabilityZone: 'us-east-1c',
        placementGroup: 'gp-spread',
        placementStrategy: 'spread',
        state: 'running',
        systemStatus: 'initializing',
        instanceStatus: 'initializing',
      },
      {
        instanceId: 'i-0000000000000002',
        hostname: 'ip-10-0-2-12.ec2.internal',
        privateIp: '10.0.2.12',
        availabilityZone: 'us-east-1b',
        state: 'stopped',
        systemStatus: 'unknown',
        instanceStatus: 'unknown',
      },
      {
        instanceId: 'i-0000000000000001',
        hostname: 'sdw1',
        privateIp: '10.0.1.11',
        availabilityZone: 'us-east-1a',
        placementGroup: 'gp-partitions',
        placementStrategy: 'partition',
        partitionNumber: 2,
        state: 'running',
        systemStatus: 'ok',
        instanceStatus: 'impaired',
      },
    ]);
  });

  it('follows DescribeInstances pages', async () => {
    // The paginator reuses one input object across pages: copy each request as it is sent.
    const requests: DescribeInstancesCommandInput[] = [];
    const pages = [
      { Reservations: [{ Instances: [sdw1] }], NextToken: 'page-2' },
      { Reservations: [{ Instances: [sdw2, sdw3] }] },
    ];
    ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
      requests.push(structuredClone(input));
      return pages[requests.length - 1];
    });
    mockGroupsAndStatuses();

    const hosts = await new Ec2Compute(client()).discoverHosts('fts:cluster', 'prod');

    expect(requests).toHaveLength(2);
    expect(requests[0].NextToken).toBeUndefined();
    expect(requests[1].NextToken).toBe('page-2');
    expect(requests[1].Filters).toEqual(requests[0].Filters);
    expect(hosts.map((h) => h.instanceId)).toEqual(['i-0000000000000003', 'i-0000000000000002', 'i-0000000000000001']);
  });

  it('uses a configured hostname tag', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [sdw1] }] });
    mockGroupsAndStatuses();

    const [host] = await new Ec2Compute(client(), { hostnameTag: 'Name' }).discoverHosts('fts:cluster', 'prod');

    expect(host.hostname).toBe('segment host one');
  });

  it('asks for no placement groups when no host is in one', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [sdw2] }] });
    ec2.on(DescribeInstanceStatusCommand).resolves({ InstanceStatuses: [] });

    const hosts = await new Ec2Compute(client()).discoverHosts('fts:cluster', 'prod');

    expect(ec2.commandCalls(DescribePlacementGroupsCommand)).toHaveLength(0);
    expect(hosts).toHaveLength(1);
    expect(hosts[0].placementGroup).toBeUndefined();
    expect(hosts[0].systemStatus).toBe('unknown');
  });

  it('returns no hosts, and makes no further calls, when none carries the tag', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });

    await expect(new Ec2Compute(client()).discoverHosts('fts:cluster', 'none')).resolves.toEqual([]);
    expect(ec2.commandCalls(DescribePlacementGroupsCommand)).toHaveLength(0);
    expect(ec2.commandCalls(DescribeInstanceStatusCommand)).toHaveLength(0);
  });

  it('asks for status checks in batches of 100 instance ids', async () => {
    const many: Instance[] = Array.from({ length: 150 }, (_, n) => ({
      InstanceId: `i-${String(n).padStart(17, '0')}`,
      PrivateDnsName: `ip-${n}.ec2.internal`,
      Placement: { AvailabilityZone: 'us-east-1a' },
      State: { Name: 'running' },
    }));
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: many }] });
    ec2.on(DescribeInstanceStatusCommand).resolves({ InstanceStatuses: [] });

    const hosts = await new Ec2Compute(client()).discoverHosts('fts:cluster', 'prod');

    const calls = ec2.commandCalls(DescribeInstanceStatusCommand);
    expect(calls.map((c) => c.args[0].input.InstanceIds?.length)).toEqual([100, 50]);
    expect(hosts).toHaveLength(150);
  });
});
