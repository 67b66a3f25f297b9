/**
 * The AWS client endpoints against mocked EC2 and Route 53 clients: the requests each
 * move sends (and skips when there is nothing to move), how a move is confirmed, and
 * the environment a deployment configures them with.
 */
import { mockClient } from 'aws-sdk-client-mock';
import {
  AssignPrivateIpAddressesCommand,
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { ChangeResourceRecordSetsCommand, GetChangeCommand, ListResourceRecordSetsCommand, Route53Client } from '@aws-sdk/client-route-53';
import { ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import {
  clientEndpointFromEnvironment,
  ElasticIpEndpoint,
  EndpointMoveTimeoutError,
  Route53Endpoint,
  SecondaryIpEndpoint,
} from '../../lambdas/adapters/aws/client-endpoint';

const ec2 = mockClient(EC2Client);
const route53 = mockClient(Route53Client);

beforeEach(() => {
  ec2.reset();
  route53.reset();
});

const credentials = { accessKeyId: 'x', secretAccessKey: 'x' };
/** Clients that never reach AWS: the mocks intercept every send. */
const ec2Client = (): EC2Client => new EC2Client({ region: 'us-east-1', credentials });
const route53Client = (): Route53Client => new Route53Client({ region: 'us-east-1', credentials });
/** Confirmation checks fast enough for a test. */
const fast = { timeoutSeconds: 0.2, pollSeconds: 0.01 };

const standby: SegmentRow = {
  dbid: 2,
  content: -1,
  role: 'p',
  preferredRole: 'm',
  mode: 'n',
  status: 'u',
  port: 5432,
  hostname: 'scdw',
  address: '10.0.1.12',
  datadir: '/data/coordinator/gpseg-1',
  instanceId: 'i-0000000000000002',
};
const { instanceId: _, ...withoutInstance } = standby;

describe('SecondaryIpEndpoint', () => {
  const endpoint = (): SecondaryIpEndpoint => new SecondaryIpEndpoint({ address: '10.0.1.50', port: 5432, client: ec2Client(), ...fast });
  const instance = (held: boolean) => ({
    Reservations: [
      {
        Instances: [
          {
            InstanceId: standby.instanceId,
            NetworkInterfaces: [
              { NetworkInterfaceId: 'eni-replication', Attachment: { DeviceIndex: 1 }, PrivateIpAddresses: [{ PrivateIpAddress: '10.0.2.12' }] },
              {
                NetworkInterfaceId: 'eni-primary',
                Attachment: { DeviceIndex: 0 },
                PrivateIpAddresses: [{ PrivateIpAddress: '10.0.1.12', Primary: true }, ...(held ? [{ PrivateIpAddress: '10.0.1.50' }] : [])],
              },
            ],
          },
        ],
      },
    ],
  });

  test('assigns the address to the primary interface of the instance, with reassignment, and waits until EC2 shows it there', async () => {
    ec2.on(DescribeInstancesCommand).resolves(instance(false));
    ec2.on(AssignPrivateIpAddressesCommand).resolves({});
    ec2.on(DescribeNetworkInterfacesCommand)
      .resolvesOnce({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-old', PrivateIpAddress: '10.0.1.11' }] }) // remapping is asynchronous
      .resolves({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-primary', PrivateIpAddress: '10.0.1.12', Attachment: { InstanceId: standby.instanceId } }] });

    await endpoint().moveTo(standby);

    expect(ec2.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input)).toEqual([{ InstanceIds: ['i-0000000000000002'] }]);
    expect(ec2.commandCalls(AssignPrivateIpAddressesCommand).map((c) => c.args[0].input)).toEqual([
      { NetworkInterfaceId: 'eni-primary', PrivateIpAddresses: ['10.0.1.50'], AllowReassignment: true },
    ]);
    const describes = ec2.commandCalls(DescribeNetworkInterfacesCommand);
    expect(describes).toHaveLength(2);
    expect(describes[0].args[0].input).toEqual({ Filters: [{ Name: 'addresses.private-ip-address', Values: ['10.0.1.50'] }] });
  });

  test('does nothing when the interface holds the address already', async () => {
    ec2.on(DescribeInstancesCommand).resolves(instance(true));
    await endpoint().moveTo(standby);
    expect(ec2.commandCalls(AssignPrivateIpAddressesCommand)).toHaveLength(0);
  });

  test('fails clearly when EC2 does not show the address moved in time', async () => {
    ec2.on(DescribeInstancesCommand).resolves(instance(false));
    ec2.on(AssignPrivateIpAddressesCommand).resolves({});
    ec2.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-old' }] });
    await expect(endpoint().moveTo(standby)).rejects.toThrow(EndpointMoveTimeoutError);
    await expect(endpoint().moveTo(standby)).rejects.toThrow(/address 10\.0\.1\.50 on eni-primary \(i-0000000000000002\) did not show within 0\.2 s/);
  });

  test('a row without an instance id is refused before any call', async () => {
    await expect(endpoint().moveTo(withoutInstance)).rejects.toThrow(ValidationError);
    await expect(endpoint().moveTo(withoutInstance)).rejects.toThrow(/secondary-ip client endpoint moves to an EC2 instance, but dbid 2 \(scdw\) has no instanceId/);
    expect(ec2.calls()).toHaveLength(0);
  });

  test('describe names the instance whose interface holds the address', async () => {
    ec2.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-primary', PrivateIpAddress: '10.0.1.12', Attachment: { InstanceId: standby.instanceId } }] });
    expect(await endpoint().describe()).toEqual({ kind: 'secondary-ip', address: '10.0.1.50', port: 5432, target: { address: '10.0.1.12', port: 5432, instanceId: 'i-0000000000000002' } });
    ec2.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [] });
    expect(await endpoint().describe()).toEqual({ kind: 'secondary-ip', address: '10.0.1.50', port: 5432 });
  });

  test('refuses an address that is not IPv4', () => {
    expect(() => new SecondaryIpEndpoint({ address: 'cdw.internal' })).toThrow(/address must be a private IPv4 address/);
  });
});

describe('ElasticIpEndpoint', () => {
  const ALLOCATION = 'eipalloc-0123456789abcdef0';
  const endpoint = (): ElasticIpEndpoint => new ElasticIpEndpoint({ allocationId: ALLOCATION, client: ec2Client(), ...fast });
  const associated = (instanceId: string, privateIp: string) => ({ Addresses: [{ AllocationId: ALLOCATION, PublicIp: '203.0.113.7', InstanceId: instanceId, PrivateIpAddress: privateIp }] });

  test('associates the address with the instance, with reassociation, and waits until EC2 shows it there', async () => {
    ec2.on(DescribeAddressesCommand).resolvesOnce(associated('i-0000000000000001', '10.0.1.11')).resolves(associated('i-0000000000000002', '10.0.1.12'));
    ec2.on(AssociateAddressCommand).resolves({ AssociationId: 'eipassoc-1' });

    await endpoint().moveTo(standby);

    expect(ec2.commandCalls(DescribeAddressesCommand)[0].args[0].input).toEqual({ AllocationIds: [ALLOCATION] });
    expect(ec2.commandCalls(AssociateAddressCommand).map((c) => c.args[0].input)).toEqual([{ AllocationId: ALLOCATION, InstanceId: 'i-0000000000000002', AllowReassociation: true }]);
  });

  test('does nothing when the address is with the instance already', async () => {
    ec2.on(DescribeAddressesCommand).resolves(associated('i-0000000000000002', '10.0.1.12'));
    await endpoint().moveTo(standby);
    expect(ec2.commandCalls(AssociateAddressCommand)).toHaveLength(0);
  });

  test('a row without an instance id is refused before any call', async () => {
    await expect(endpoint().moveTo(withoutInstance)).rejects.toThrow(/elastic-ip client endpoint moves to an EC2 instance, but dbid 2 \(scdw\) has no instanceId/);
    expect(ec2.calls()).toHaveLength(0);
  });

  test('describe: the public address and the instance behind it', async () => {
    ec2.on(DescribeAddressesCommand).resolves(associated('i-0000000000000002', '10.0.1.12'));
    expect(await endpoint().describe()).toEqual({ kind: 'elastic-ip', address: '203.0.113.7', port: 5432, target: { address: '10.0.1.12', port: 5432, instanceId: 'i-0000000000000002' } });
  });

  test('an allocation that does not exist is a clear error', async () => {
    ec2.on(DescribeAddressesCommand).resolves({ Addresses: [] });
    await expect(endpoint().moveTo(standby)).rejects.toThrow(/Elastic IP eipalloc-0123456789abcdef0 does not exist/);
  });
});

describe('Route53Endpoint', () => {
  const endpoint = (options = {}): Route53Endpoint =>
    new Route53Endpoint({ hostedZoneId: '/hostedzone/Z0123456789ABC', recordName: 'coordinator.gp.example.internal', client: route53Client(), ...fast, ...options });

  test('UPSERTs the A record with a short TTL and waits for INSYNC', async () => {
    route53.on(ChangeResourceRecordSetsCommand).resolves({ ChangeInfo: { Id: '/change/C1', Status: 'PENDING', SubmittedAt: new Date() } });
    route53.on(GetChangeCommand)
      .resolvesOnce({ ChangeInfo: { Id: '/change/C1', Status: 'PENDING', SubmittedAt: new Date() } })
      .resolves({ ChangeInfo: { Id: '/change/C1', Status: 'INSYNC', SubmittedAt: new Date() } });

    await endpoint().moveTo(standby);

    expect(route53.commandCalls(ChangeResourceRecordSetsCommand).map((c) => c.args[0].input)).toEqual([
      {
        HostedZoneId: 'Z0123456789ABC',
        ChangeBatch: {
          Comment: 'FTS: the client endpoint follows the coordinator (dbid 2)',
          Changes: [{ Action: 'UPSERT', ResourceRecordSet: { Name: 'coordinator.gp.example.internal', Type: 'A', TTL: 5, ResourceRecords: [{ Value: '10.0.1.12' }] } }],
        },
      },
    ]);
    expect(route53.commandCalls(GetChangeCommand).map((c) => c.args[0].input)).toEqual([{ Id: '/change/C1' }, { Id: '/change/C1' }]);
  });

  test('the TTL is configurable; a change INSYNC at once needs no wait', async () => {
    route53.on(ChangeResourceRecordSetsCommand).resolves({ ChangeInfo: { Id: '/change/C2', Status: 'INSYNC', SubmittedAt: new Date() } });
    await endpoint({ ttlSeconds: 30 }).moveTo(standby);
    expect(route53.commandCalls(ChangeResourceRecordSetsCommand)[0].args[0].input.ChangeBatch?.Changes?.[0].ResourceRecordSet?.TTL).toBe(30);
    expect(route53.commandCalls(GetChangeCommand)).toHaveLength(0);
  });

  test('a change that stays PENDING fails clearly after the timeout', async () => {
    route53.on(ChangeResourceRecordSetsCommand).resolves({ ChangeInfo: { Id: '/change/C3', Status: 'PENDING', SubmittedAt: new Date() } });
    route53.on(GetChangeCommand).resolves({ ChangeInfo: { Id: '/change/C3', Status: 'PENDING', SubmittedAt: new Date() } });
    const error = await endpoint({ timeoutSeconds: 0.05 }).moveTo(standby).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EndpointMoveTimeoutError);
    expect((error as Error).message).toMatch(/Route 53 change \/change\/C3 \(coordinator\.gp\.example\.internal -> 10\.0\.1\.12\) was not INSYNC within 0\.05 s/);
  });

  test('an address that is not IPv4 is refused before any call', async () => {
    await expect(endpoint().moveTo({ ...standby, address: 'scdw.internal' })).rejects.toThrow(/A record, but dbid 2 has address "scdw.internal", not an IPv4 address/);
    expect(route53.calls()).toHaveLength(0);
  });

  test('describe reads the record (names compare without case and trailing dot)', async () => {
    route53.on(ListResourceRecordSetsCommand).resolves({
      ResourceRecordSets: [{ Name: 'coordinator.gp.example.internal.', Type: 'A', TTL: 5, ResourceRecords: [{ Value: '10.0.1.12' }] }],
      IsTruncated: false,
      MaxItems: 1,
    });
    expect(await endpoint().describe()).toEqual({ kind: 'route53', address: 'coordinator.gp.example.internal', port: 5432, target: { address: '10.0.1.12', port: 5432 } });
    expect(route53.commandCalls(ListResourceRecordSetsCommand)[0].args[0].input).toEqual({ HostedZoneId: 'Z0123456789ABC', StartRecordName: 'coordinator.gp.example.internal', StartRecordType: 'A', MaxItems: 1 });

    route53.on(ListResourceRecordSetsCommand).resolves({ ResourceRecordSets: [{ Name: 'other.gp.example.internal.', Type: 'A', ResourceRecords: [{ Value: '10.0.9.9' }] }], IsTruncated: false, MaxItems: 1 });
    expect(await endpoint().describe()).toEqual({ kind: 'route53', address: 'coordinator.gp.example.internal', port: 5432 });
  });
});

describe('clientEndpointFromEnvironment', () => {
  const clients = { ec2: ec2Client(), route53: route53Client() };

  test('none, or no kind at all: no endpoint', () => {
    expect(clientEndpointFromEnvironment({}, clients)).toBeUndefined();
    expect(clientEndpointFromEnvironment({ FTS_ENDPOINT_KIND: 'none' }, clients)).toBeUndefined();
    expect(clientEndpointFromEnvironment({ FTS_ENDPOINT_KIND: '' }, clients)).toBeUndefined();
  });

  test('each kind with its variables', () => {
    const secondary = clientEndpointFromEnvironment({ FTS_ENDPOINT_KIND: 'secondary-ip', FTS_ENDPOINT_ADDRESS: '10.0.1.50' }, clients);
    expect(secondary).toBeInstanceOf(SecondaryIpEndpoint);
    expect(secondary).toMatchObject({ address: '10.0.1.50', port: 5432 });
    const elastic = clientEndpointFromEnvironment({ FTS_ENDPOINT_KIND: 'elastic-ip', FTS_ENDPOINT_ALLOCATION_ID: 'eipalloc-0abc', FTS_ENDPOINT_PORT: '6432' }, clients);
    expect(elastic).toBeInstanceOf(ElasticIpEndpoint);
    expect(elastic).toMatchObject({ allocationId: 'eipalloc-0abc', port: 6432 });
    const dns = clientEndpointFromEnvironment(
      { FTS_ENDPOINT_KIND: 'route53', FTS_ENDPOINT_HOSTED_ZONE_ID: 'Z0123456789ABC', FTS_ENDPOINT_RECORD_NAME: 'cdw.gp.internal', FTS_ENDPOINT_TTL_SECONDS: '10' },
      clients,
    );
    expect(dns).toBeInstanceOf(Route53Endpoint);
    expect(dns).toMatchObject({ hostedZoneId: 'Z0123456789ABC', recordName: 'cdw.gp.internal', ttlSeconds: 10, port: 5432 });
  });

  test.each([
    [{ FTS_ENDPOINT_KIND: 'vip' }, /FTS_ENDPOINT_KIND must be one of secondary-ip, elastic-ip, route53, none, got "vip"/],
    [{ FTS_ENDPOINT_KIND: 'secondary-ip' }, /FTS_ENDPOINT_ADDRESS is required when FTS_ENDPOINT_KIND is secondary-ip/],
    [{ FTS_ENDPOINT_KIND: 'secondary-ip', FTS_ENDPOINT_ADDRESS: '10.0.1.500', FTS_ENDPOINT_PORT: '0' }, /FTS_ENDPOINT_ADDRESS must be an IPv4 address; FTS_ENDPOINT_PORT must be a port number/],
    [{ FTS_ENDPOINT_KIND: 'elastic-ip', FTS_ENDPOINT_ALLOCATION_ID: '203.0.113.7' }, /FTS_ENDPOINT_ALLOCATION_ID must be an allocation id like eipalloc-0123abcd/],
    [{ FTS_ENDPOINT_KIND: 'route53', FTS_ENDPOINT_RECORD_NAME: 'cdw' }, /FTS_ENDPOINT_HOSTED_ZONE_ID is required when FTS_ENDPOINT_KIND is route53/],
    [{ FTS_ENDPOINT_KIND: 'route53', FTS_ENDPOINT_HOSTED_ZONE_ID: 'Z1', FTS_ENDPOINT_RECORD_NAME: 'cdw', FTS_ENDPOINT_TTL_SECONDS: '5s' }, /FTS_ENDPOINT_TTL_SECONDS must be a whole number of seconds/],
  ])('%j: a ValidationError naming the variable', (env, message) => {
    expect(() => clientEndpointFromEnvironment(env, clients)).toThrow(ValidationError);
    expect(() => clientEndpointFromEnvironment(env, clients)).toThrow(message);
  });
});
