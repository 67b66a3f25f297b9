/**
 * lib/client-endpoint.ts: the FTS_ENDPOINT_* environment each kind produces (and that the
 * handlers' factory accepts), the least-privilege statements it grants, and props validation.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { clientEndpointEnvironment, configureClientEndpoint, type ClientEndpointProps } from '../../lib/client-endpoint';
import { clientEndpointFromEnvironment, ElasticIpEndpoint, Route53Endpoint, SecondaryIpEndpoint } from '../../lambdas/adapters/aws/client-endpoint';

/** The policy statements `props` grants a fresh role, and the environment it returns. */
function grant(props: ClientEndpointProps): { env: Record<string, string>; statements: unknown[] } {
  const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'us-east-1' } });
  const role = new iam.Role(stack, 'Fn', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  const env = configureClientEndpoint(role, props);
  const policies = Template.fromStack(stack).findResources('AWS::IAM::Policy');
  const statements = Object.values(policies).flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: unknown[] } } }).Properties.PolicyDocument.Statement);
  return { env, statements };
}
const arn = (resource: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:ec2:us-east-1:123456789012:${resource}`]] });

test('secondary-ip: the address and port; AssignPrivateIpAddresses on interfaces of the subnet, and the Describe calls', () => {
  const { env, statements } = grant({ kind: 'secondary-ip', address: '10.0.1.50', subnetId: 'subnet-0abc' });
  expect(env).toEqual({ FTS_ENDPOINT_KIND: 'secondary-ip', FTS_ENDPOINT_ADDRESS: '10.0.1.50', FTS_ENDPOINT_PORT: '5432' });
  expect(clientEndpointFromEnvironment(env)).toBeInstanceOf(SecondaryIpEndpoint);
  expect(statements).toEqual([
    {
      Action: 'ec2:AssignPrivateIpAddresses',
      Effect: 'Allow',
      Resource: arn('network-interface/*'),
      Condition: { StringEquals: { 'ec2:Subnet': arn('subnet/subnet-0abc') } },
    },
    { Action: ['ec2:DescribeInstances', 'ec2:DescribeNetworkInterfaces'], Effect: 'Allow', Resource: '*' },
  ]);
});

test('elastic-ip: AssociateAddress on that address, on tagged instances and on interfaces; DescribeAddresses', () => {
  const { env, statements } = grant({ kind: 'elastic-ip', allocationId: 'eipalloc-0abc', port: 6432, instanceTag: { key: 'fts:role', value: 'coordinator' } });
  expect(env).toEqual({ FTS_ENDPOINT_KIND: 'elastic-ip', FTS_ENDPOINT_ALLOCATION_ID: 'eipalloc-0abc', FTS_ENDPOINT_PORT: '6432' });
  expect(clientEndpointFromEnvironment(env)).toBeInstanceOf(ElasticIpEndpoint);
  expect(statements).toHaveLength(4);
  expect(statements[0]).toEqual({ Action: 'ec2:AssociateAddress', Effect: 'Allow', Resource: arn('elastic-ip/eipalloc-0abc') });
  expect(statements[1]).toEqual({ Action: 'ec2:AssociateAddress', Effect: 'Allow', Resource: arn('instance/*'), Condition: { StringEquals: { 'ec2:ResourceTag/fts:role': 'coordinator' } } });
  expect(statements[2]).toEqual({ Action: 'ec2:AssociateAddress', Effect: 'Allow', Resource: arn('network-interface/*') });
  expect(statements[3]).toEqual({ Action: 'ec2:DescribeAddresses', Effect: 'Allow', Resource: '*' });
});

test('route53: only UPSERT of that A record in that zone, ListResourceRecordSets on it, GetChange', () => {
  const { env, statements } = grant({ kind: 'route53', hostedZoneId: '/hostedzone/Z0123456789ABC', recordName: 'Coordinator.GP.example.internal.', ttlSeconds: 10 });
  expect(env).toEqual({
    FTS_ENDPOINT_KIND: 'route53',
    FTS_ENDPOINT_HOSTED_ZONE_ID: '/hostedzone/Z0123456789ABC',
    FTS_ENDPOINT_RECORD_NAME: 'Coordinator.GP.example.internal.',
    FTS_ENDPOINT_TTL_SECONDS: '10',
    FTS_ENDPOINT_PORT: '5432',
  });
  expect(clientEndpointFromEnvironment(env)).toBeInstanceOf(Route53Endpoint);
  const zone = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':route53:::hostedzone/Z0123456789ABC']] };
  expect(statements).toEqual([
    {
      Action: 'route53:ChangeResourceRecordSets',
      Effect: 'Allow',
      Resource: zone,
      Condition: {
        'ForAllValues:StringEquals': {
          'route53:ChangeResourceRecordSetsRecordTypes': ['A'],
          'route53:ChangeResourceRecordSetsActions': ['UPSERT'],
          'route53:ChangeResourceRecordSetsNormalizedRecordNames': ['coordinator.gp.example.internal'],
        },
      },
    },
    { Action: 'route53:ListResourceRecordSets', Effect: 'Allow', Resource: zone },
    { Action: 'route53:GetChange', Effect: 'Allow', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':route53:::change/*']] } },
  ]);
});

test('none: the kind only, and no permission', () => {
  const { env, statements } = grant({ kind: 'none' });
  expect(env).toEqual({ FTS_ENDPOINT_KIND: 'none' });
  expect(statements).toEqual([]);
  expect(clientEndpointFromEnvironment(env)).toBeUndefined();
});

test.each<[ClientEndpointProps, RegExp]>([
  [{ kind: 'vip' as never }, /ClientEndpoint: kind must be one of secondary-ip, elastic-ip, route53, none, got "vip"/],
  [{ kind: 'secondary-ip' }, /kind secondary-ip needs address/],
  [{ kind: 'secondary-ip', address: '10.0.1.256' }, /address must be an IPv4 address/],
  [{ kind: 'secondary-ip', address: '10.0.1.50', port: 70000 }, /port must be an integer from 1 to 65535, got 70000/],
  [{ kind: 'secondary-ip', address: '10.0.1.50', recordName: 'x' }, /recordName does not apply to kind secondary-ip/],
  [{ kind: 'elastic-ip' }, /kind elastic-ip needs allocationId/],
  [{ kind: 'elastic-ip', allocationId: 'eip-1' }, /allocationId must look like eipalloc-0123abcd/],
  [{ kind: 'route53', recordName: 'cdw.internal' }, /kind route53 needs hostedZoneId/],
  [{ kind: 'route53', hostedZoneId: 'Z1' }, /kind route53 needs recordName/],
  [{ kind: 'route53', hostedZoneId: 'Z1', recordName: 'cdw', ttlSeconds: 1.5 }, /ttlSeconds must be an integer from 0 to 172800/],
  [{ kind: 'none', address: '10.0.1.50' }, /address does not apply to kind none/],
])('%j: a clear error', (props, message) => {
  expect(() => clientEndpointEnvironment(props)).toThrow(message);
});
