/**
 * CDK template tests of the FtsStack (bundling skipped, no credentials): the catalog
 * tables, the prober's function, schedule and least-privilege policy, the network
 * wiring, the alarms, and props validation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { FtsStack, ftsStackPropsFromContext, type FtsStackProps } from '../../lib/fts-stack';
import { CatalogTables } from '../../lib/catalog-tables';
import { Prober } from '../../lib/prober';
import { StepWorkflow } from '../../lib/step-workflow';
import { WORKFLOW_SPECS } from '../../lambdas/workflows';
import { EXAMPLE_FTS_CONTEXT } from '../../lib/local-definition';


const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fts/prod/pg-AbCdEf';
const baseProps: FtsStackProps = {
  clusterId: 'prod-1',
  vpcId: 'vpc-0123456789abcdef0',
  availabilityZones: ['us-east-1a', 'us-east-1b'],
  privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
  segmentSecurityGroupId: 'sg-0123456789abcdef0',
  pgSecretArn: SECRET_ARN,
  segmentPorts: { from: 5432, to: 7999 },
};

const newApp = (): App => new App({ context: { 'aws:cdk:bundling-stacks': [] } });
const build = (overrides: Partial<FtsStackProps> = {}) => {
  const stack = new FtsStack(newApp(), 'Fts-prod-1', { ...baseProps, ...overrides });
  return { stack, template: Template.fromStack(stack) };
};

const { stack, template } = build();
const id = (construct: { node: { defaultChild?: unknown } }): string => stack.getLogicalId(construct.node.defaultChild as never);
const proberFn = id(stack.prober.function);
const promoteFn = id(stack.promoteMirror.function);
const stateMachine = id(stack.promoteMirror.stateMachine);
const tableIds = stack.tables.tables.map((t) => id(t));
const proberRole = id(stack.prober.function.role as never);

/** Statements of the inline policies attached to a role. */
function statementsOf(roleLogicalId: string): { Action: string | string[]; Resource: unknown; Effect: string }[] {
  const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: Match.arrayWith([{ Ref: roleLogicalId }]) } });
  return Object.values(policies).flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: never[] } } }).Properties.PolicyDocument.Statement);
}
const actionsOf = (s: { Action: string | string[] }): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const resourcesOf = (s: { Resource: unknown }): unknown[] => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);

describe('catalog tables', () => {
  test('three on-demand tables with point-in-time recovery, AWS-managed encryption, retained', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 3);
    const tables = template.findResources('AWS::DynamoDB::Table');
    for (const table of Object.values(tables)) {
      expect(table).toMatchObject({
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
        Properties: {
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          SSESpecification: { SSEEnabled: true },
        },
      });
    }
  });

  test('keys follow lambdas/adapters/dynamodb/tables.ts', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'clusterId', KeyType: 'HASH' },
        { AttributeName: 'dbid', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: Match.arrayWith([{ AttributeName: 'dbid', AttributeType: 'N' }]),
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'clusterId', KeyType: 'HASH' },
        { AttributeName: 'seq', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: Match.arrayWith([{ AttributeName: 'seq', AttributeType: 'S' }]),
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', { KeySchema: [{ AttributeName: 'clusterId', KeyType: 'HASH' }] });
  });

  test('removal policy is a prop', () => {
    const { template: t } = build({ tableRemovalPolicy: RemovalPolicy.DESTROY });
    for (const table of Object.values(t.findResources('AWS::DynamoDB::Table'))) expect(table).toMatchObject({ DeletionPolicy: 'Delete' });
  });
});

describe('prober', () => {
  test('Node 24 on ARM, X-Ray, 120 s, 512 MB, JSON logs, in the VPC, no reserved concurrency, the env the handler reads', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      TracingConfig: { Mode: 'Active' },
      Architectures: ['arm64'],
      Timeout: 120,
      MemorySize: 512,
      LoggingConfig: Match.objectLike({ LogFormat: 'JSON' }),
      ReservedConcurrentExecutions: Match.absent(),
      VpcConfig: {
        SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
        SecurityGroupIds: [{ 'Fn::GetAtt': [id(stack.controlPlaneSecurityGroup), 'GroupId'] }],
      },
      Environment: {
        Variables: Match.objectLike({
          FTS_CLUSTER_ID: 'prod-1',
          FTS_PROMOTE_STATE_MACHINE_ARN: { Ref: stateMachine },
          FTS_PG_SECRET_ARN: SECRET_ARN,
          FTS_SEGMENTS_TABLE: { Ref: tableIds[0] },
          FTS_HISTORY_TABLE: { Ref: tableIds[1] },
          FTS_CLUSTERS_TABLE: { Ref: tableIds[2] },
          POWERTOOLS_SERVICE_NAME: 'fts-prober',
          POWERTOOLS_METRICS_NAMESPACE: 'ServerlessFTS',
          FTS_SCHEDULE_PERIOD_SECONDS: '60',
        }),
      },
    });
    expect(template.findResources('AWS::Lambda::Function')[proberFn]).toBeDefined();
  });

  test('a slower schedule: each invocation probes one whole period, the timeout covers it and the last round (no gaps)', () => {
    const s = new FtsStack(newApp(), 'S', baseProps);
    const vpc = ec2.Vpc.fromVpcAttributes(s, 'V', { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['us-east-1a'], privateSubnetIds: ['subnet-0123456789abcdef0'] });
    const tables = new CatalogTables(s, 'T');
    const prober = new Prober(s, 'Slow', { clusterId: 'x', tables, vpc, promoteStateMachine: s.promoteMirror.stateMachine, scheduleRate: Duration.minutes(5) });
    const fn = Template.fromStack(s).findResources('AWS::Lambda::Function')[s.getLogicalId(prober.function.node.defaultChild as never)] as {
      Properties: { Timeout: number; Environment: { Variables: Record<string, unknown> } };
    };
    expect(fn.Properties.Timeout).toBe(360);
    expect(fn.Properties.Environment.Variables.FTS_SCHEDULE_PERIOD_SECONDS).toBe('300');
    expect(() => new Prober(s, 'TooSlow', { clusterId: 'x', tables, vpc, promoteStateMachine: s.promoteMirror.stateMachine, scheduleRate: Duration.minutes(15) })).toThrow(
      /scheduleRate must be between 60 and 840 seconds/,
    );
  });

  test('host operations: SSM RunShellScript only on instances tagged with the cluster id', () => {
    for (const role of [proberRole, id(stack.promoteMirror.function.role as never)]) {
      const ssm = statementsOf(role).filter((st) => actionsOf(st).some((a) => a.startsWith('ssm:')));
      const send = ssm.filter((st) => actionsOf(st).includes('ssm:SendCommand'));
      expect(send).toHaveLength(2);
      const onInstances = send.find((st) => JSON.stringify(st.Resource).includes(':instance/'))! as { Condition?: unknown };
      expect(onInstances.Condition).toEqual({ StringEquals: { 'ssm:resourceTag/fts:cluster-id': 'prod-1' } });
      expect(JSON.stringify(send.find((st) => st !== onInstances)!.Resource)).toContain(':document/AWS-RunShellScript');
      const rest = ssm.filter((st) => !actionsOf(st).includes('ssm:SendCommand'));
      expect(rest.flatMap(actionsOf).sort()).toEqual(['ssm:CancelCommand', 'ssm:GetCommandInvocation']);
    }
  });

  test('an EventBridge Scheduler schedule invokes it every minute with the cluster id', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: Match.objectLike({
        Arn: { 'Fn::GetAtt': [proberFn, 'Arn'] },
        Input: JSON.stringify({ clusterId: 'prod-1' }),
      }),
    });
  });

  test('may start PromoteMirror and ActivateStandby (autoActivateStandby) and nothing else', () => {
    const statements = statementsOf(proberRole).filter((s) => actionsOf(s).some((a) => a.startsWith('states:')));
    expect(statements).toHaveLength(1);
    expect(actionsOf(statements[0])).toEqual(['states:StartExecution']);
    expect(resourcesOf(statements[0])).toEqual([{ Ref: stateMachine }, { Ref: id(stack.activateStandby.stateMachine) }]);
  });

  test('DynamoDB actions only on the three catalog tables', () => {
    const statements = statementsOf(proberRole).filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    expect(statements.length).toBeGreaterThan(0);
    const allowed = tableIds.map((t) => ({ 'Fn::GetAtt': [t, 'Arn'] }));
    const resources = statements.flatMap(resourcesOf).filter((r) => !(typeof r === 'object' && r !== null && 'Ref' in r && (r as { Ref: string }).Ref === 'AWS::NoValue'));
    for (const r of resources) expect(allowed).toContainEqual(r);
    for (const t of allowed) expect(resources).toContainEqual(t);
    // Only the item calls the DynamoDB adapter makes (TransactWriteItems is authorized per item): no Scan, BatchWriteItem, table administration.
    expect(statements.flatMap(actionsOf).sort()).toEqual(['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem']);
  });

  test('reads the PostgreSQL secret and only that secret', () => {
    const statements = statementsOf(proberRole).filter((s) => actionsOf(s).some((a) => a.startsWith('secretsmanager:')));
    expect(statements).toHaveLength(1);
    expect(actionsOf(statements[0])).toContain('secretsmanager:GetSecretValue');
    expect(resourcesOf(statements[0])).toEqual([SECRET_ARN]);
  });

  test("no '*' resource on DynamoDB, Step Functions or Secrets Manager actions in any role", () => {
    const policies = template.findResources('AWS::IAM::Policy');
    for (const policy of Object.values(policies)) {
      for (const s of (policy as { Properties: { PolicyDocument: { Statement: { Action: string | string[]; Resource: unknown }[] } } }).Properties.PolicyDocument.Statement) {
        if (actionsOf(s).some((a) => /^(dynamodb|states|secretsmanager):/.test(a))) expect(resourcesOf(s)).not.toContain('*');
      }
    }
  });

  test('the segments admit the FTS security group on the PostgreSQL ports', () => {
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: 'sg-0123456789abcdef0',
      IpProtocol: 'tcp',
      FromPort: 5432,
      ToPort: 7999,
      SourceSecurityGroupId: { 'Fn::GetAtt': [id(stack.controlPlaneSecurityGroup), 'GroupId'] },
    });
    const { template: t } = build({ manageSegmentIngress: false });
    t.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
  });
});

describe('PromoteMirror workflow', () => {
  test('a Standard state machine in JSONPath that invokes the step function', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'STANDARD' });
    const sm = template.findResources('AWS::StepFunctions::StateMachine')[stateMachine] as { Properties: { DefinitionString: unknown } };
    const text = JSON.stringify(sm.Properties.DefinitionString);
    expect(text).not.toContain('QueryLanguage');
    expect(text).toContain(promoteFn);
  });

  test('the step function: Node 24, 90 s, in the VPC, table and secret env, notification topic', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Timeout: 90,
      VpcConfig: Match.objectLike({ SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'] }),
      Environment: {
        Variables: Match.objectLike({
          FTS_CLUSTER_ID: 'prod-1',
          FTS_PG_SECRET_ARN: SECRET_ARN,
          FTS_CLUSTERS_TABLE: { Ref: tableIds[2] },
          FTS_NOTIFY_TOPIC_ARN: { Ref: id(stack.alarms.topic as never) },
          POWERTOOLS_SERVICE_NAME: 'fts-promote-mirror',
        }),
      },
    });
    const role = id(stack.promoteMirror.function.role as never);
    const publish = statementsOf(role).filter((s) => actionsOf(s).includes('sns:Publish'));
    expect(publish.flatMap(resourcesOf)).toEqual([{ Ref: id(stack.alarms.topic as never) }]);
    // The step function starts nothing.
    expect(statementsOf(role).flatMap(actionsOf)).not.toContain('states:StartExecution');
  });

  test('the state machine may invoke only its step function', () => {
    const role = id(stack.promoteMirror.stateMachine.role as never);
    const invoke = statementsOf(role).filter((s) => actionsOf(s).includes('lambda:InvokeFunction'));
    expect(invoke).toHaveLength(1);
    for (const r of resourcesOf(invoke[0])) expect(JSON.stringify(r)).toContain(promoteFn);
  });
});

describe('operator workflows (RecoverSegments, Rebalance)', () => {
  const operator = [
    ['RecoverSegments', stack.recoverSegments, 'fts-recover-segments'],
    ['Rebalance', stack.rebalance, 'fts-rebalance'],
  ] as const;

  test.each(operator)('%s: a Standard state machine with its own step function, invoked only by it, output and alarm', (kind, workflow, service) => {
    const fn = id(workflow.function);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Timeout: 300,
      // A host operation gets at most this much of the step's 300 s: a hung host is an error the step handles.
      Environment: { Variables: Match.objectLike({ FTS_CLUSTER_ID: 'prod-1', POWERTOOLS_SERVICE_NAME: service, FTS_HOST_OPERATION_SECONDS: '60' }) },
    });
    const role = id(workflow.stateMachine.role as never);
    const invoke = statementsOf(role).filter((st) => actionsOf(st).includes('lambda:InvokeFunction'));
    expect(invoke).toHaveLength(1);
    for (const r of resourcesOf(invoke[0])) expect(JSON.stringify(r)).toContain(fn);
    const machine = template.findResources('AWS::StepFunctions::StateMachine')[id(workflow.stateMachine)] as { Properties: { DefinitionString: unknown } };
    expect(JSON.stringify(machine.Properties.DefinitionString)).toContain('"Type\\":\\"Map\\"');
    template.hasOutput(`${kind}StateMachineArn`, { Value: { Ref: id(workflow.stateMachine) } });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ExecutionsFailed', Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: id(workflow.stateMachine) } }] });
    // Operators start these; the step functions start nothing.
    expect(statementsOf(id(workflow.function.role as never)).flatMap(actionsOf)).not.toContain('states:StartExecution');
  });

  test('the prober may start PromoteMirror and ActivateStandby only, not the operator workflows', () => {
    const starts = statementsOf(proberRole).filter((st) => actionsOf(st).includes('states:StartExecution'));
    expect(starts.flatMap(resourcesOf)).toEqual([{ Ref: stateMachine }, { Ref: id(stack.activateStandby.stateMachine) }]);
  });
});

describe('segment hosts (how the hosts run PostgreSQL)', () => {
  test('every function gets the OS user, the bin directory of the distribution and the service manager', () => {
    const { stack: s, template: t } = build({ segmentHosts: { osUser: 'postgres', pgDistro: 'debian', pgMajor: 16, serviceManager: 'systemd:postgresql@16-%i.service' } });
    for (const fn of [s.prober.function, s.promoteMirror.function, s.recoverSegments.function, s.rebalance.function]) {
      const resource = t.findResources('AWS::Lambda::Function')[s.getLogicalId(fn.node.defaultChild as never)] as { Properties: { Environment: { Variables: Record<string, unknown> } } };
      expect(resource.Properties.Environment.Variables).toMatchObject({ FTS_PG_OS_USER: 'postgres', FTS_PG_BIN: '/usr/lib/postgresql/16/bin', FTS_PG_SERVICE_MANAGER: 'systemd:postgresql@16-%i.service' });
    }
  });

  test('from context keys', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(ftsStackPropsFromContext(ctx({ ...EXAMPLE_FTS_CONTEXT, pgBin: '/usr/pgsql-15/bin', pgOsUser: 'gpadmin', pgServiceManager: 'pg_ctl' })).segmentHosts).toEqual({ pgBin: '/usr/pgsql-15/bin', osUser: 'gpadmin', serviceManager: 'pg_ctl' });
    expect(ftsStackPropsFromContext(ctx({ ...EXAMPLE_FTS_CONTEXT })).segmentHosts).toBeUndefined();
    expect(() => ftsStackPropsFromContext(ctx({ ...EXAMPLE_FTS_CONTEXT, pgDistro: 'debian', pgMajor: 'fifteen' }))).toThrow(/context "pgMajor" must be a PostgreSQL major version/);
  });

  test.each<[Partial<FtsStackProps>['segmentHosts'], RegExp]>([
    [{ osUser: 'root; rm -rf /' }, /segmentHosts.osUser must be a user name/],
    [{ pgBin: 'usr/bin' }, /segmentHosts.pgBin must be an absolute directory/],
    [{ pgBin: '/usr/bin', pgDistro: 'debian', pgMajor: 15 }, /pgBin and segmentHosts.pgDistro exclude each other/],
    [{ pgDistro: 'debian' }, /pgDistro and segmentHosts.pgMajor go together/],
    [{ pgDistro: 'gentoo' as never, pgMajor: 15 }, /pgDistro must be one of/],
    [{ serviceManager: 'upstart' }, /segmentHosts.serviceManager: /],
  ])('%j is rejected', (segmentHosts, message) => {
    expect(() => build({ segmentHosts })).toThrow(message);
  });
});

describe('alarms', () => {
  const alarmOn = (metricName: string, service: string) =>
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'ServerlessFTS',
      MetricName: metricName,
      Dimensions: Match.arrayWith([
        { Name: 'ClusterId', Value: 'prod-1' },
        { Name: 'service', Value: service },
      ]),
      Statistic: 'Sum',
      Period: 60,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: id(stack.alarms.topic as never) }],
    });

  test.each([
    'DoubleFault',
    'ContentUnavailable',
    'ProbeMisconfigured',
    'ProberRoundFailed',
    'CoordinatorUnreachable',
    'WrongInstance',
    'ZombieFenced',
    'FencePending',
    'PrimaryReset',
    'PrimaryResetLoop',
    'DiskFailure',
    'TooManyConnections',
    'ReplicationTimeoutMisconfigured',
  ])('%s (prober) alarms on Sum >= 1 per minute', (m) => alarmOn(m, 'fts-prober'));
  test.each(['UnreachablePrimary', 'PromotionAborted', 'PromotionFailed', 'FencePending'])('%s (PromoteMirror) alarms on Sum >= 1 per minute', (m) => alarmOn(m, 'fts-promote-mirror'));

  test('failed PromoteMirror executions and a silent prober alarm', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsFailed',
      Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: stateMachine } }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'RoundDurationMs',
      Statistic: 'SampleCount',
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
      EvaluationPeriods: 3,
    });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.resourceCountIs('AWS::SNS::Topic', 1);
  });
});

describe('props validation', () => {
  test.each<[string, Partial<FtsStackProps>, RegExp]>([
    ['empty clusterId', { clusterId: '' }, /clusterId/],
    ['clusterId with a space', { clusterId: 'prod 1' }, /clusterId/],
    ['bad vpcId', { vpcId: 'vpc-nope' }, /vpcId/],
    ['no subnets', { privateSubnetIds: [] }, /privateSubnetIds/],
    ['subnets not a multiple of the zones', { privateSubnetIds: ['subnet-0123456789abcdef0'] }, /multiple of availabilityZones/],
    ['bad security group', { segmentSecurityGroupId: 'sg-' }, /segmentSecurityGroupId/],
    ['partial secret ARN', { pgSecretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fts' }, /pgSecretArn/],
    ['reversed ports', { segmentPorts: { from: 8000, to: 6000 } }, /segmentPorts/],
  ])('%s is rejected', (_, overrides, message) => {
    expect(() => build(overrides)).toThrow(message);
  });

  test('constructs validate their own props', () => {
    const s = new FtsStack(newApp(), 'S', baseProps);
    const vpc = ec2.Vpc.fromVpcAttributes(s, 'V', { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['us-east-1a'], privateSubnetIds: ['subnet-0123456789abcdef0'] });
    const tables = new CatalogTables(s, 'T');
    expect(() => new Prober(s, 'P1', { clusterId: '', tables, vpc, promoteStateMachine: s.promoteMirror.stateMachine })).toThrow(/Prober: clusterId/);
    expect(
      () => new Prober(s, 'P2', { clusterId: 'x', tables, vpc, promoteStateMachine: s.promoteMirror.stateMachine, timeout: Duration.seconds(30) }),
    ).toThrow(/timeout \(30 s\) must be at least the scheduleRate plus 60 s/);
    expect(() => new StepWorkflow(s, 'W', { spec: WORKFLOW_SPECS.PromoteMirror, clusterId: 'x', tables, vpc, memorySize: 64 })).toThrow(/PromoteMirrorWorkflow: memorySize/);
    const broken = { ...WORKFLOW_SPECS.RecoverSegments, states: { ...WORKFLOW_SPECS.RecoverSegments.states, Summarize: { type: 'task' as const, step: 'summarize', next: 'Nowhere' } } };
    expect(() => new StepWorkflow(s, 'W2', { spec: broken, clusterId: 'x', tables, vpc })).toThrow(/Summarize goes to Nowhere, not a state of the same level/);
  });

  test('context: missing keys are named, lists come as arrays or comma-separated strings', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => ftsStackPropsFromContext(ctx({}))).toThrow(/context "clusterId" is missing: pass -c clusterId=/);
    const props = ftsStackPropsFromContext(ctx({ ...EXAMPLE_FTS_CONTEXT, availabilityZones: 'us-east-1a, us-east-1b', segmentPorts: '6000-7999' }));
    expect(props.availabilityZones).toEqual(['us-east-1a', 'us-east-1b']);
    expect(props.segmentPorts).toEqual({ from: 6000, to: 7999 });
    expect(() => ftsStackPropsFromContext(ctx({ ...EXAMPLE_FTS_CONTEXT, segmentPorts: '6000' }))).toThrow(/segmentPorts/);
  });

  test('the example context of cdk.json is valid, so `cdk synth` works as checked out', () => {
    const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8')) as { app: string; context: Record<string, unknown> };
    expect(cdkJson.app).toBe('npx tsx bin/app.ts');
    const props = ftsStackPropsFromContext((key) => cdkJson.context[key]);
    expect(() => new FtsStack(newApp(), 'Fts-example', props)).not.toThrow();
  });
});
