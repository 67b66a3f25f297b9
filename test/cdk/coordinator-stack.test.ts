/**
 * The coordinator's workflows in the FtsStack: the ActivateStandby function gets the
 * client endpoint's settings and the right to move it (nothing else does), its state
 * machine may stop an instance natively, and the endpoint is configured from context keys.
 */
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { FtsStack, ftsStackPropsFromContext, type FtsStackProps } from '../../lib/fts-stack';
import { EXAMPLE_FTS_CONTEXT } from '../../lib/local-definition';

const baseProps: FtsStackProps = {
  clusterId: 'prod-1',
  vpcId: 'vpc-0123456789abcdef0',
  availabilityZones: ['us-east-1a'],
  privateSubnetIds: ['subnet-0123456789abcdef0'],
  segmentSecurityGroupId: 'sg-0123456789abcdef0',
};

const build = (overrides: Partial<FtsStackProps> = {}) => {
  const stack = new FtsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Fts-prod-1', { ...baseProps, ...overrides });
  return { stack, template: Template.fromStack(stack) };
};

type Statement = { Action: string | string[]; Resource: unknown; Condition?: unknown };
/** The statements the function's own code may use: not the ENI management reserved to Lambda itself (no lambda:SourceFunctionArn). */
function statementsOf(template: Template, role: string): Statement[] {
  const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: Match.arrayWith([{ Ref: role }]) } });
  return Object.values(policies)
    .flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties.PolicyDocument.Statement)
    .filter((st) => JSON.stringify(st.Condition ?? {}) !== JSON.stringify({ Null: { 'lambda:SourceFunctionArn': 'true' } }));
}
const actions = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const envOf = (template: Template, stack: FtsStack, fn: { node: { defaultChild?: unknown } }): Record<string, unknown> =>
  (template.findResources('AWS::Lambda::Function')[stack.getLogicalId(fn.node.defaultChild as never)] as { Properties: { Environment: { Variables: Record<string, unknown> } } }).Properties.Environment.Variables;

test('a secondary-IP endpoint: only the ActivateStandby function gets its settings and may move it', () => {
  const { stack, template } = build({ clientEndpoint: { kind: 'secondary-ip', address: '10.0.1.50', subnetId: 'subnet-0123456789abcdef0' } });
  expect(envOf(template, stack, stack.activateStandby.function)).toMatchObject({ FTS_ENDPOINT_KIND: 'secondary-ip', FTS_ENDPOINT_ADDRESS: '10.0.1.50' });
  const role = (fn: { role?: unknown }) => stack.getLogicalId((fn.role as { node: { defaultChild: never } }).node.defaultChild);
  expect(statementsOf(template, role(stack.activateStandby.function)).flatMap(actions)).toContain('ec2:AssignPrivateIpAddresses');
  for (const other of [stack.prober.function, stack.promoteMirror.function, stack.recoverSegments.function, stack.rebalance.function, stack.initStandby.function]) {
    expect(statementsOf(template, role(other)).flatMap(actions)).not.toContain('ec2:AssignPrivateIpAddresses');
    expect(Object.keys(envOf(template, stack, other))).not.toContain('FTS_ENDPOINT_KIND');
  }
});

test('without an endpoint the function has no endpoint settings and no right to move addresses', () => {
  const { stack, template } = build();
  expect(Object.keys(envOf(template, stack, stack.activateStandby.function))).not.toContain('FTS_ENDPOINT_KIND');
  const role = stack.getLogicalId((stack.activateStandby.function.role as unknown as { node: { defaultChild: never } }).node.defaultChild);
  expect(statementsOf(template, role).flatMap(actions).filter((a) => /Assign|Associate|route53/.test(a))).toEqual([]);
});

test('the ActivateStandby state machine may stop EC2 instances natively (StopCoordinatorInstance)', () => {
  const { stack, template } = build();
  const role = stack.getLogicalId((stack.activateStandby.stateMachine.role as unknown as { node: { defaultChild: never } }).node.defaultChild);
  expect(statementsOf(template, role).flatMap(actions)).toContain('ec2:stopInstances');
  const definition = JSON.stringify(template.findResources('AWS::StepFunctions::StateMachine')[stack.getLogicalId(stack.activateStandby.stateMachine.node.defaultChild as never)]);
  expect(definition).toMatch(/aws-sdk:ec2:stopInstances/);
});

test('context keys configure the endpoint; a stray key or a bad kind is a clear error', () => {
  const context = (extra: Record<string, unknown>) => (key: string) => ({ ...EXAMPLE_FTS_CONTEXT, ...extra })[key];
  expect(ftsStackPropsFromContext(context({ endpointKind: 'route53', endpointHostedZoneId: 'Z0123456789ABCDEFGHIJ', endpointRecordName: 'coordinator.prod.internal', endpointTtlSeconds: '5' })).clientEndpoint).toEqual({
    kind: 'route53',
    hostedZoneId: 'Z0123456789ABCDEFGHIJ',
    recordName: 'coordinator.prod.internal',
    ttlSeconds: 5,
  });
  expect(() => ftsStackPropsFromContext(context({ endpointAddress: '10.0.1.50' }))).toThrow(/"endpointAddress" set without "endpointKind"/);
  expect(() => ftsStackPropsFromContext(context({ endpointKind: 'anycast' }))).toThrow(/"endpointKind" must be one of secondary-ip, elastic-ip, route53, none/);
  expect(() => ftsStackPropsFromContext(context({ endpointKind: 'secondary-ip' }))).toThrow(/address/);
});

test('segment TLS: every function gets FTS_PG_SSLMODE and the CA bundle; a verify mode without a bundle is refused; context keys', () => {
  const { stack, template } = build({ segmentTls: { sslMode: 'verify-full', caBundle: 'system' } });
  for (const fn of [stack.prober.function, stack.promoteMirror.function, stack.activateStandby.function, stack.initStandby.function]) {
    expect(envOf(template, stack, fn)).toMatchObject({ FTS_PG_SSLMODE: 'verify-full', FTS_PG_CA_BUNDLE: 'system' });
  }
  expect(() => build({ segmentTls: { sslMode: 'verify-ca' } })).toThrow(/verifies the segments' certificates: give segmentTls.caBundle/);
  expect(() => build({ segmentTls: { sslMode: 'tls' as never } })).toThrow(/sslMode must be one of disable, prefer, require, verify-ca, verify-full/);
  const context = (extra: Record<string, unknown>) => (key: string) => ({ ...EXAMPLE_FTS_CONTEXT, ...extra })[key];
  expect(ftsStackPropsFromContext(context({ pgSslMode: 'require' })).segmentTls).toEqual({ sslMode: 'require' });
  expect(() => ftsStackPropsFromContext(context({ pgCaBundle: 'system' }))).toThrow(/"pgCaBundle" set without "pgSslMode"/);
});

test('ActivateStandby publishes its notifications to the topic (and may publish nowhere else)', () => {
  const { stack, template } = build();
  expect(envOf(template, stack, stack.activateStandby.function)).toMatchObject({ FTS_NOTIFY_TOPIC_ARN: { Ref: stack.getLogicalId(stack.alarms.topic.node.defaultChild as never) } });
  const role = stack.getLogicalId((stack.activateStandby.function.role as unknown as { node: { defaultChild: never } }).node.defaultChild);
  const publish = statementsOf(template, role).filter((s) => actions(s).includes('sns:Publish'));
  expect(publish.map((s) => s.Resource)).toEqual([{ Ref: stack.getLogicalId(stack.alarms.topic.node.defaultChild as never) }]);
});
