/**
 * `ftsctl --outputs/--stack`: the target read from cdk's outputs file (and the other
 * shapes of outputs it accepts), from CloudFormation DescribeStacks (request shapes
 * checked with aws-sdk-client-mock, no network), and that the stack outputs every key
 * the target needs.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CloudFormationClient, DescribeStacksCommand, type StackStatus } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import { pickStack, resolveAwsTarget, stateMachineArnFor, STACK_OUTPUTS, stateMachineOutput, targetFromOutputs, type AwsTarget } from '../../cli/aws-target';
import { ValidationError } from '../../lambdas/core/errors';
import { WORKFLOW_KINDS } from '../../lambdas/workflows/spec';
import { FtsStack } from '../../lib/fts-stack';

const arn = (kind: string, region = 'us-east-1') => `arn:aws:states:${region}:123456789012:stateMachine:${kind}StateMachine-AbC123`;
const outputsOf = (clusterId = 'prod', region = 'us-east-1'): Record<string, string> => ({
  SegmentsTable: `Fts-${clusterId}-CatalogSegments-1`,
  HistoryTable: `Fts-${clusterId}-CatalogHistory-1`,
  ClustersTable: `Fts-${clusterId}-CatalogClusters-1`,
  ...Object.fromEntries(WORKFLOW_KINDS.map((k) => [stateMachineOutput(k), arn(k, region)])),
  ProberFunctionName: 'Fts-prod-ProberFunction',
  ClusterId: clusterId,
});

const dir = mkdtempSync(join(tmpdir(), 'fts-target-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: unknown): string => {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
};

describe('--outputs: what cdk deploy --outputs-file writes', () => {
  test('one stack: tables, every state machine, the cluster, the region of its ARNs', async () => {
    const target = (await resolveAwsTarget({ outputs: file('one.json', { 'Fts-prod': outputsOf() }) })) as AwsTarget;
    expect(target).toMatchObject({
      stackName: 'Fts-prod',
      region: 'us-east-1',
      clusterId: 'prod',
      tables: { segments: 'Fts-prod-CatalogSegments-1', history: 'Fts-prod-CatalogHistory-1', clusters: 'Fts-prod-CatalogClusters-1' },
    });
    expect(target.source).toMatch(/^stack Fts-prod in .*one\.json$/);
    for (const kind of WORKFLOW_KINDS) expect(stateMachineArnFor(target, kind)).toBe(arn(kind));
    expect(target.profile).toBeUndefined();
  });

  test('several stacks: the FTS one alone is taken; two FTS stacks need --stack', async () => {
    const mixed = file('mixed.json', { Network: { VpcId: 'vpc-1' }, 'Fts-prod': outputsOf() });
    expect((await resolveAwsTarget({ outputs: mixed }))?.stackName).toBe('Fts-prod');
    const two = file('two.json', { 'Fts-prod': outputsOf(), 'Fts-dev': outputsOf('dev') });
    await expect(resolveAwsTarget({ outputs: two })).rejects.toThrow(/holds several Serverless FTS stacks \(Fts-prod, Fts-dev\): pick one with --stack/);
    expect((await resolveAwsTarget({ outputs: two, stack: 'Fts-dev' }))?.clusterId).toBe('dev');
    await expect(resolveAwsTarget({ outputs: two, stack: 'Fts-test' })).rejects.toThrow(/has no stack Fts-test; it has Fts-prod, Fts-dev/);
    await expect(resolveAwsTarget({ outputs: file('none.json', { Network: { VpcId: 'vpc-1' } }) })).rejects.toThrow(/holds no Serverless FTS stack \(none has a SegmentsTable output\); stacks in it: Network/);
  });

  test('also a flat map of one stack, and `aws cloudformation describe-stacks` output', async () => {
    expect((await resolveAwsTarget({ outputs: file('flat.json', outputsOf('flat')) }))?.clusterId).toBe('flat');
    const described = { Stacks: [{ StackName: 'Fts-cli', Outputs: Object.entries(outputsOf('cli')).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })) }] };
    expect(await resolveAwsTarget({ outputs: file('described.json', described) })).toMatchObject({ stackName: 'Fts-cli', clusterId: 'cli' });
  });

  test('a file that cannot be read, is not JSON, or is not an FTS stack: a clear ValidationError', async () => {
    await expect(resolveAwsTarget({ outputs: join(dir, 'missing.json') })).rejects.toThrow(/^cannot read --outputs .*missing\.json: ENOENT/);
    await expect(resolveAwsTarget({ outputs: file('bad.json', '{"Fts-prod": ') })).rejects.toThrow(/--outputs .*bad\.json is not valid JSON/);
    await expect(resolveAwsTarget({ outputs: file('list.json', [1]) })).rejects.toBeInstanceOf(ValidationError);
    const partial = { 'Fts-prod': { SegmentsTable: 'x-segments' } };
    await expect(resolveAwsTarget({ outputs: file('partial.json', partial) })).rejects.toThrow(/stack Fts-prod in .* lacks the output\(s\) HistoryTable, ClustersTable: is it a Serverless FTS stack/);
    const badArn = { 'Fts-prod': { ...outputsOf(), RebalanceStateMachineArn: 'arn:aws:lambda:us-east-1:123456789012:function:x' } };
    await expect(resolveAwsTarget({ outputs: file('badarn.json', badArn) })).rejects.toThrow(/output RebalanceStateMachineArn is not a state machine ARN/);
  });

  test('--region must be the region of the stack; --profile is kept for every client', async () => {
    const outputs = file('eu.json', { 'Fts-prod': outputsOf('prod', 'eu-west-1') });
    await expect(resolveAwsTarget({ outputs, region: 'us-east-1' })).rejects.toThrow(/--region us-east-1, but the stack of .* is in eu-west-1/);
    expect(await resolveAwsTarget({ outputs, region: 'eu-west-1', profile: 'ops' })).toMatchObject({ region: 'eu-west-1', profile: 'ops' });
  });

  test('a stack built before an output existed: no cluster id, and a clear error for a missing state machine', () => {
    const { ClusterId: _c, InitStandbyStateMachineArn: _i, ...old } = outputsOf();
    const target = targetFromOutputs(old, 'stack Fts-prod in old.json', { stackName: 'Fts-prod' });
    expect(target.clusterId).toBeUndefined();
    expect(() => stateMachineArnFor(target, 'InitStandby')).toThrow(/stack Fts-prod in old\.json has no output InitStandbyStateMachineArn .* give --state-machine-arn/);
    expect(stateMachineArnFor(target, 'InitStandby', arn('Mine'))).toBe(arn('Mine'));
    expect(stateMachineArnFor(undefined, 'InitStandby')).toBeUndefined();
  });

  test('pickStack names what it found', () => {
    expect(() => pickStack({}, 'empty.json')).toThrow(/--outputs empty\.json: no stack in it/);
  });
});

describe('--stack: CloudFormation DescribeStacks', () => {
  const cfn = mockClient(CloudFormationClient);
  beforeEach(() => cfn.reset());
  afterAll(() => cfn.restore());

  const described = (name: string, outputs: Record<string, string>, status: StackStatus = 'UPDATE_COMPLETE') => ({
    Stacks: [{ StackName: name, StackStatus: status, CreationTime: new Date(), Outputs: Object.entries(outputs).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })) }],
  });

  test('asks for the stack by name, in --region with --profile, and reads its outputs', async () => {
    cfn.on(DescribeStacksCommand).resolves(described('Fts-prod', outputsOf('prod', 'eu-west-1')));
    const configs: unknown[] = [];
    const target = await resolveAwsTarget(
      { stack: 'Fts-prod', region: 'eu-west-1', profile: 'ops' },
      {
        cloudFormation: (config) => {
          configs.push(config);
          return new CloudFormationClient({ ...config, profile: undefined, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
        },
      },
    );
    expect(configs).toEqual([{ region: 'eu-west-1', profile: 'ops', maxAttempts: 5 }]);
    expect(cfn.commandCalls(DescribeStacksCommand).map((c) => c.args[0].input)).toEqual([{ StackName: 'Fts-prod' }]);
    expect(target).toMatchObject({ source: 'stack Fts-prod (UPDATE_COMPLETE)', stackName: 'Fts-prod', region: 'eu-west-1', profile: 'ops', clusterId: 'prod' });
    expect(target?.stateMachineArns.PromoteMirror).toBe(arn('PromoteMirror', 'eu-west-1'));
  });

  test('without --region the SDK chain decides (AWS_REGION here), and the client is the default one', async () => {
    cfn.on(DescribeStacksCommand).resolves(described('Fts-prod', outputsOf()));
    const target = await resolveAwsTarget({ stack: 'Fts-prod' });
    expect(target?.region).toBe('us-east-1');
    expect(cfn.commandCalls(DescribeStacksCommand)).toHaveLength(1);
  });

  test('a stack that does not exist, or that is not an FTS stack: a clear error', async () => {
    const missing = Object.assign(new Error('Stack with id Fts-nope does not exist'), { name: 'ValidationError' });
    cfn.on(DescribeStacksCommand).rejects(missing);
    await expect(resolveAwsTarget({ stack: 'Fts-nope', region: 'us-east-1' })).rejects.toThrow(/^stack Fts-nope does not exist in region us-east-1/);
    cfn.reset();
    cfn.on(DescribeStacksCommand).resolves(described('Network', { VpcId: 'vpc-1' }, 'CREATE_COMPLETE'));
    await expect(resolveAwsTarget({ stack: 'Network', region: 'us-east-1' })).rejects.toThrow(/stack Network \(CREATE_COMPLETE\) lacks the output\(s\) SegmentsTable, HistoryTable, ClustersTable/);
    cfn.reset();
    cfn.on(DescribeStacksCommand).rejects(Object.assign(new Error('The security token included in the request is invalid.'), { name: 'UnrecognizedClientException' }));
    await expect(resolveAwsTarget({ stack: 'Fts-prod', region: 'us-east-1' })).rejects.toThrow(/^cannot read stack Fts-prod \(CloudFormation DescribeStacks\): The security token/);
  });
});

test('the stack outputs every key ftsctl reads, and the dashboard URL, security group and cluster id', () => {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new FtsStack(app, 'Fts-prod-1', {
    clusterId: 'prod-1',
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['us-east-1a', 'us-east-1b'],
    privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
    segmentSecurityGroupId: 'sg-0123456789abcdef0',
  });
  const template = Template.fromStack(stack);
  const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
  for (const key of [...Object.values(STACK_OUTPUTS), ...WORKFLOW_KINDS.map(stateMachineOutput)]) expect(Object.keys(outputs)).toContain(key);
  expect(outputs.ClusterId.Value).toBe('prod-1');
  const id = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as never);
  expect(outputs.ControlPlaneSecurityGroupId.Value).toEqual({ 'Fn::GetAtt': [id(stack.controlPlaneSecurityGroup), 'GroupId'] });
  const url = JSON.stringify(outputs.DashboardUrl.Value);
  expect(url).toContain('.console.aws.amazon.com/cloudwatch/home?region=');
  expect(url).toContain('#dashboards/dashboard/');
  expect(url).toContain(JSON.stringify({ Ref: id(stack.alarms.dashboard) }));
});
