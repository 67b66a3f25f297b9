/**
 * Least privilege and stack hardening, checked on the synthesized template (bundling
 * skipped, no credentials): the IAM statements of every role, the state machines' log
 * groups and retries, notifications that can fail without failing a success, alarms for
 * every failure the code and the state machines report (with OK actions), Node.js 24 and
 * X-Ray on every function, Powertools' Lambda context and cold start, placeholder values
 * that cannot be deployed, every prop a user needs reachable from context, deletion
 * protection, tags, and the EC2 state-change rule.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { buildApp } from '../../bin/app';
import { ACTIVATE_STANDBY_ALARM_METRICS, ALARM_METRICS_BY_SERVICE, INFORMATIONAL_METRICS } from '../../lib/alarms';
import { CATALOG_READ_ACTIONS, CATALOG_WRITE_ACTIONS } from '../../lib/catalog-tables';
import { EXAMPLE_CONTEXT_PARAMETER, FTS_CONTEXT_KEYS, FtsStack, ftsStackPropsFromContext, type FtsStackProps } from '../../lib/fts-stack';
import { HOST_EVENT_SERVICE_NAME } from '../../lib/host-events';
import { EXAMPLE_FTS_CONTEXT, localWorkflows, synthesizeDefinition } from '../../lib/local-definition';
import { PROBER_SERVICE_NAME } from '../../lib/prober';
import { STATE_MACHINE_LOG_GROUP_PREFIX } from '../../lib/step-workflow';
import { powertoolsTelemetry } from '../../lambdas/adapters/aws/powertools-telemetry';
import type { StepEvent } from '../../lambdas/adapters/local/local-workflows';
import type { SegmentRow } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import { silentTelemetry } from '../../lambdas/ports/telemetry';
import { runActivateStandbyStepEvent } from '../../lambdas/service/activate-standby';
import { runPromoteStepEvent } from '../../lambdas/service/promotion';
import type { WorkflowDeps } from '../../lambdas/service/steps';
import { WORKFLOW_SPECS } from '../../lambdas/workflows';
import { WORKFLOW_KINDS } from '../../lambdas/workflows/spec';
import { FakeCatalog, FakeSegments } from '../support/fakes';

const REPO = path.join(__dirname, '..', '..');
/** Real-looking values: no placeholder of the example context. */
const realProps: FtsStackProps = {
  clusterId: 'prod-1',
  vpcId: 'vpc-0a1b2c3d4e5f67890',
  availabilityZones: ['us-east-1a', 'us-east-1b'],
  privateSubnetIds: ['subnet-0aaa1111bbbb2222c', 'subnet-0ddd3333eeee4444f'],
  segmentSecurityGroupId: 'sg-0123abcd4567ef890',
  pgSecretArn: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:fts/prod/pg-AbCdEf',
};
const newApp = (): App => new App({ context: { 'aws:cdk:bundling-stacks': [] } });
const build = (overrides: Partial<FtsStackProps> = {}) => {
  const stack = new FtsStack(newApp(), 'Fts-prod-1', { ...realProps, ...overrides });
  return { stack, template: Template.fromStack(stack) };
};
const { stack, template } = build({ notificationEmails: ['ops@example.com'] });
const id = (construct: { node: { defaultChild?: unknown } }): string => stack.getLogicalId(construct.node.defaultChild as never);

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, unknown>> };
const actionsOf = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const resourcesOf = (s: Statement): unknown[] => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);
function statementsOf(t: Template, role: string): Statement[] {
  const policies = t.findResources('AWS::IAM::Policy', { Properties: { Roles: Match.arrayWith([{ Ref: role }]) } });
  return Object.values(policies).flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties.PolicyDocument.Statement);
}
const allStatements = (t: Template): Statement[] =>
  Object.values(t.findResources('AWS::IAM::Policy')).flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties.PolicyDocument.Statement);
const roleOf = (fn: { role?: unknown }): string => stack.getLogicalId((fn.role as { node: { defaultChild: never } }).node.defaultChild);
/** Lambda's own management of a VPC function's network interfaces: never usable by the function's code. */
const LAMBDA_ONLY = { Null: { 'lambda:SourceFunctionArn': 'true' } };

const workflows = () => [stack.promoteMirror, stack.recoverSegments, stack.rebalance, stack.activateStandby, stack.initStandby];
const functions = () => [stack.prober.function, stack.hostEvents!.function, ...workflows().map((w) => w.function)];

describe('least privilege', () => {
  test('DynamoDB: only the item calls the adapter makes, on the three tables; the host-event function reads only', () => {
    const tables = stack.tables.tables.map((t) => ({ 'Fn::GetAtt': [id(t), 'Arn'] }));
    for (const fn of functions()) {
      const dynamo = statementsOf(template, roleOf(fn)).filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
      const expected = fn === stack.hostEvents!.function ? [...CATALOG_READ_ACTIONS] : [...CATALOG_READ_ACTIONS, ...CATALOG_WRITE_ACTIONS];
      expect(dynamo.flatMap(actionsOf).sort()).toEqual([...expected].sort());
      for (const s of dynamo) expect(resourcesOf(s).sort()).toEqual([...tables].sort());
    }
    expect([...CATALOG_READ_ACTIONS, ...CATALOG_WRITE_ACTIONS].sort()).toEqual(['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem']);
  });

  test("SSM: SendCommand of the project's document (AWS-RunShellScript) on instances tagged with the cluster id only; the host-event function has none", () => {
    for (const s of allStatements(template).filter((st) => actionsOf(st).includes('ssm:SendCommand'))) {
      const resources = JSON.stringify(s.Resource);
      if (resources.includes(':instance/')) expect(s.Condition).toEqual({ StringEquals: { 'ssm:resourceTag/fts:cluster-id': 'prod-1' } });
      else expect(resources).toMatch(/:document\/AWS-RunShellScript"/);
    }
    expect(statementsOf(template, roleOf(stack.hostEvents!.function)).flatMap(actionsOf).filter((a) => a.startsWith('ssm:'))).toEqual([]);
  });

  test('EC2 mutations: every statement that stops an instance or moves an address is limited by a condition (tag, VPC), none is open to function code', () => {
    const mutating = /^ec2:(stop|start|terminate|reboot|associate|disassociate|assign|unassign|create|delete|modify)/i;
    for (const t of [template, build({ clientEndpoint: { kind: 'secondary-ip', address: '10.0.1.50' } }).template, build({ clientEndpoint: { kind: 'elastic-ip', allocationId: 'eipalloc-0abc1234' } }).template]) {
      for (const s of allStatements(t)) {
        if (!actionsOf(s).some((a) => mutating.test(a))) continue;
        const onAddress = resourcesOf(s).every((r) => JSON.stringify(r).includes(':elastic-ip/'));
        if (!onAddress) expect(s.Condition).toBeDefined();
      }
    }
  });

  test("ActivateStandby's StopCoordinatorInstance: ec2:stopInstances only on instances tagged fts:cluster-id=<clusterId>", () => {
    const stops = statementsOf(template, roleOf(stack.activateStandby.stateMachine)).filter((s) => actionsOf(s).includes('ec2:stopInstances'));
    expect(stops).toHaveLength(1);
    expect(stops[0].Condition).toEqual({ StringEquals: { 'ec2:ResourceTag/fts:cluster-id': 'prod-1' } });
  });

  test("address moves: an Elastic IP only to the cluster's tagged instances, a secondary IP only to tagged interfaces of the cluster's VPC", () => {
    const eip = build({ clientEndpoint: { kind: 'elastic-ip', allocationId: 'eipalloc-0abc1234' } });
    const eipStatements = statementsOf(eip.template, eip.stack.getLogicalId((eip.stack.activateStandby.function.role as unknown as { node: { defaultChild: never } }).node.defaultChild));
    const onInstances = eipStatements.find((s) => actionsOf(s).includes('ec2:AssociateAddress') && JSON.stringify(s.Resource).includes(':instance/'));
    expect(onInstances?.Condition).toEqual({ StringEquals: { 'ec2:ResourceTag/fts:cluster-id': 'prod-1' } });
    const sip = build({ clientEndpoint: { kind: 'secondary-ip', address: '10.0.1.50' } });
    const sipStatements = statementsOf(sip.template, sip.stack.getLogicalId((sip.stack.activateStandby.function.role as unknown as { node: { defaultChild: never } }).node.defaultChild));
    const assign = sipStatements.filter((s) => actionsOf(s).includes('ec2:AssignPrivateIpAddresses') && JSON.stringify(s.Condition) !== JSON.stringify(LAMBDA_ONLY));
    expect(assign).toHaveLength(1);
    expect(assign[0].Condition).toEqual({
      StringEquals: { 'ec2:Vpc': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':vpc/vpc-0a1b2c3d4e5f67890']] }, 'ec2:ResourceTag/fts:cluster-id': 'prod-1' },
    });
  });

  test("no AWS managed policy: each function's role writes its own log group only, and Lambda alone manages its network interfaces", () => {
    for (const role of Object.values(template.findResources('AWS::IAM::Role'))) expect((role as { Properties: { ManagedPolicyArns?: unknown } }).Properties.ManagedPolicyArns).toBeUndefined();
    for (const fn of functions()) {
      const statements = statementsOf(template, roleOf(fn));
      const logs = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('logs:')));
      expect(logs.flatMap(actionsOf).sort()).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents']);
      const logGroup = (fn.node.scope as unknown as { node: { tryFindChild(id: string): unknown } }).node.tryFindChild(`${fn.node.id}Logs`) as { node: { defaultChild: never } };
      expect(JSON.stringify(logs[0].Resource)).toContain(stack.getLogicalId(logGroup.node.defaultChild));
      const eni = statements.filter((s) => actionsOf(s).includes('ec2:CreateNetworkInterface'));
      expect(eni).toHaveLength(1);
      expect(eni[0].Condition).toEqual(LAMBDA_ONLY);
    }
  });
});

describe('state machines', () => {
  test(`execution logs go to log groups under ${STATE_MACHINE_LOG_GROUP_PREFIX}, unique per stack instance`, () => {
    for (const w of workflows()) {
      const machine = template.findResources('AWS::StepFunctions::StateMachine')[id(w.stateMachine)] as { Properties: { LoggingConfiguration: { Level: string; Destinations: { CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [string, string] } } }[] } } };
      expect(machine.Properties.LoggingConfiguration.Level).toBe('ALL');
      const logGroupId = machine.Properties.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
      const name = (template.findResources('AWS::Logs::LogGroup')[logGroupId] as { Properties: { LogGroupName: { 'Fn::Join': [string, unknown[]] } } }).Properties.LogGroupName;
      expect(name['Fn::Join'][1][0]).toBe(`${STATE_MACHINE_LOG_GROUP_PREFIX}fts-prod-1-${w.spec.kind}-`);
      expect(JSON.stringify(name)).toContain('AWS::StackId');
    }
  });

  test.each([...WORKFLOW_KINDS])('%s: every Lambda task retries Lambda.TooManyRequestsException', (kind) => {
    const tasks: Record<string, { Type: string; Resource?: string; Retry?: { ErrorEquals: string[] }[] }> = {};
    const collect = (states: Record<string, { Type: string; ItemProcessor?: { States: Record<string, never> } }>) => {
      for (const [name, s] of Object.entries(states)) {
        if (s.Type === 'Task') tasks[name] = s as never;
        if (s.ItemProcessor) collect(s.ItemProcessor.States);
      }
    };
    collect((synthesizeDefinition(kind).definition as { States: never }).States);
    const lambdaTasks = Object.entries(tasks).filter(([, s]) => s.Resource?.includes(':lambda:'));
    expect(lambdaTasks.length).toBeGreaterThan(0);
    for (const [, s] of lambdaTasks) expect(s.Retry?.some((r) => r.ErrorEquals.includes('Lambda.TooManyRequestsException'))).toBe(true);
  });
});

describe('a failed notification never turns a success into a failure', () => {
  const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number): SegmentRow => ({
    dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`, datadir: `/data/${role}/gpseg${content}`,
  });
  const failingNotify = async (): Promise<void> => {
    throw Object.assign(new Error('SNS is unreachable'), { name: 'InternalErrorException' });
  };

  async function world(rows: SegmentRow[]) {
    const catalog = new FakeCatalog();
    await catalog.initialize('c1', rows, DEFAULT_SETTINGS, new Date().toISOString());
    const segments = FakeSegments.fromRows(rows);
    const deps: WorkflowDeps = { catalog, probe: segments, control: segments, host: segments, telemetry: silentTelemetry, now: () => new Date(), notify: failingNotify };
    return { catalog, segments, deps };
  }

  test('PromoteMirror: the step reports it, and the execution ends in Promoted', async () => {
    const t = await world([row(2, 0, 'p', 'sdw1', 6000), row(4, 0, 'm', 'sdw2', 7000)]);
    t.segments.kill(2);
    const steps: string[] = [];
    const run = await localWorkflows(
      {
        PromoteMirror: (event: StepEvent) => {
          steps.push(event.step);
          return runPromoteStepEvent(t.deps, event);
        },
      },
      { retryIntervalMs: 0 },
    ).run('PromoteMirror', { clusterId: 'c1', content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 1, attempt: 1, failure: 'unreachable', reason: 'test' });
    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { notify: { notified: false, cause: 'InternalErrorException: SNS is unreachable' } } });
    expect(steps.slice(-2)).toEqual(['clear-pending', 'notify']);
    expect((await t.catalog.load('c1')).segments.find((r) => r.dbid === 4)).toMatchObject({ role: 'p', status: 'u' });
  });

  test('ActivateStandby: the finish step reports it, and the execution ends in Activated', async () => {
    const t = await world([row(1, -1, 'p', 'cdw', 5432), row(6, -1, 'm', 'scdw', 5432), { ...row(2, 0, 'p', 'sdw1', 6000), mode: 'n' }]);
    t.segments.kill(1);
    const steps: string[] = [];
    const run = await localWorkflows(
      {
        ActivateStandby: (event: StepEvent) => {
          steps.push(event.step);
          return runActivateStandbyStepEvent(t.deps, event);
        },
      },
      { retryIntervalMs: 0 },
    ).runExecution('ActivateStandby', 'activate-1', { clusterId: 'c1' });
    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { finish: { activated: true, notified: false } } });
    expect(steps.filter((s) => s === 'finish')).toEqual(['finish']);
    expect(steps).not.toContain('record-failure');
  });
});

describe('alarms', () => {
  const topic = { Ref: id(stack.alarms.topic as never) };

  test('every alarm notifies the topic when it fires and when it is OK again', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as { Properties: { AlarmActions: unknown[]; OKActions?: unknown[] } }[];
    expect(alarms.length).toBe(Object.keys(stack.alarms.alarms).length);
    for (const alarm of alarms) {
      expect(alarm.Properties.AlarmActions).toEqual([topic]);
      expect(alarm.Properties.OKActions).toEqual([topic]);
    }
  });

  test.each([...WORKFLOW_KINDS])('%s: failed, timed-out and aborted executions alarm', (kind) => {
    const machine = stack[({ PromoteMirror: 'promoteMirror', RecoverSegments: 'recoverSegments', Rebalance: 'rebalance', ActivateStandby: 'activateStandby', InitStandby: 'initStandby' } as const)[kind]].stateMachine;
    for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted']) {
      expect(stack.alarms.alarms[`${kind}${metric}`]).toBeDefined();
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/States',
        MetricName: metric,
        Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: id(machine) } }],
        Statistic: 'Sum',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    }
  });

  /** Every `telemetry.metric('Name', ...)` in the handlers' code, with the service that emits it. */
  function emittedMetrics(): { service: string; metric: string; file: string }[] {
    const emitters: Record<string, string> = {
      'lambdas/service/prober.ts': PROBER_SERVICE_NAME,
      'lambdas/service/promotion.ts': WORKFLOW_SPECS.PromoteMirror.serviceName,
      'lambdas/service/activate-standby.ts': WORKFLOW_SPECS.ActivateStandby.serviceName,
      'lambdas/service/host-event.ts': HOST_EVENT_SERVICE_NAME,
    };
    const found: { service: string; metric: string; file: string }[] = [];
    const walk = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
    for (const file of walk(path.join(REPO, 'lambdas'))) {
      const rel = path.relative(REPO, file).split(path.sep).join('/');
      if (rel.startsWith('lambdas/adapters/local/')) continue; // local mode's timeline printer, not CloudWatch
      const text = fs.readFileSync(file, 'utf8');
      const names = [...text.matchAll(/\.metric\('([A-Za-z]+)'/g)].map((m) => m[1]);
      // The prober's alarm-only decisions emit through a table: `'decision-kind': 'MetricName'`.
      const table = /const ALARM_METRICS[^=]*=\s*\{([^}]*)\}/.exec(text);
      if (table) names.push(...[...table[1].matchAll(/:\s*'([A-Za-z]+)'/g)].map((m) => m[1]));
      if (!names.length) continue;
      const service = emitters[rel];
      if (!service) throw new Error(`${rel} emits metrics (${names.join(', ')}) but its service is unknown to this test: add it`);
      for (const metric of new Set(names)) found.push({ service, metric, file: rel });
    }
    return found;
  }

  test('every metric the code emits is alarmed for its emitter, or is informational (a count, a timing, a success)', () => {
    const emitted = emittedMetrics();
    expect(emitted.length).toBeGreaterThan(20);
    const alarmedMetrics = Object.values(template.findResources('AWS::CloudWatch::Alarm')).flatMap((a) => {
      const p = (a as { Properties: { Namespace?: string; MetricName?: string; Dimensions?: { Name: string; Value: unknown }[] } }).Properties;
      const service = p.Dimensions?.find((d) => d.Name === 'service')?.Value;
      return p.Namespace === 'ServerlessFTS' ? [`${String(service)}/${p.MetricName}`] : [];
    });
    for (const { service, metric, file } of emitted) {
      if ((INFORMATIONAL_METRICS as readonly string[]).includes(metric)) continue;
      expect({ file, metric, alarmed: alarmedMetrics.includes(`${service}/${metric}`) }).toEqual({ file, metric, alarmed: true });
      expect(ALARM_METRICS_BY_SERVICE[service]).toContain(metric);
    }
    // The ones the issue names: CoordinatorUnreachable, and ActivateStandby's, which had none.
    expect(alarmedMetrics).toContain(`${PROBER_SERVICE_NAME}/CoordinatorUnreachable`);
    for (const m of ACTIVATE_STANDBY_ALARM_METRICS) expect(alarmedMetrics).toContain(`fts-activate-standby/${m}`);
  });

  test('the host-event function: its errors, and EventBridge failing to deliver to it', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/Lambda', MetricName: 'Errors', Dimensions: [{ Name: 'FunctionName', Value: { Ref: id(stack.hostEvents!.function) } }] });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/Events', MetricName: 'FailedInvocations', Dimensions: [{ Name: 'RuleName', Value: { Ref: id(stack.hostEvents!.rule) } }] });
  });
});

describe('functions', () => {
  test('Node.js 24 on ARM with X-Ray active tracing, every one', () => {
    const fns = Object.values(template.findResources('AWS::Lambda::Function')) as { Properties: { Runtime: string; Architectures: string[]; TracingConfig?: unknown } }[];
    expect(fns).toHaveLength(7);
    for (const fn of fns) expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], TracingConfig: { Mode: 'Active' } });
    for (const fn of functions()) expect(statementsOf(template, roleOf(fn)).flatMap(actionsOf)).toEqual(expect.arrayContaining(['xray:PutTraceSegments', 'xray:PutTelemetryRecords']));
  });

  test('Powertools: every log line carries the Lambda context (request id) once an invocation starts, and ColdStart is published once per container', () => {
    const saved = { ...process.env };
    const lines: string[] = [];
    const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      // What Lambda sets for an on-demand container (a provisioned or SnapStart one has no cold start in Powertools' sense).
      Object.assign(process.env, { POWERTOOLS_SERVICE_NAME: 'fts-test', POWERTOOLS_METRICS_NAMESPACE: 'ServerlessFTS', POWERTOOLS_LOG_LEVEL: 'INFO', AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand' });
      delete process.env.POWERTOOLS_METRICS_DISABLED;
      delete process.env.POWERTOOLS_DEV;
      const telemetry = powertoolsTelemetry('c1');
      telemetry.startInvocation({ awsRequestId: 'req-1', functionName: 'fts-prober-fn' });
      telemetry.info('first');
      telemetry.startInvocation({ awsRequestId: 'req-2', functionName: 'fts-prober-fn' });
      telemetry.info('second');
    } finally {
      write.mockRestore();
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
    const json = lines.flatMap((l) => l.split('\n')).filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const logs = json.filter((j) => j.message === 'first' || j.message === 'second');
    expect(logs).toEqual([
      expect.objectContaining({ message: 'first', function_request_id: 'req-1', function_name: 'fts-prober-fn', cold_start: true, clusterId: 'c1' }),
      expect.objectContaining({ message: 'second', function_request_id: 'req-2', cold_start: false }),
    ]);
    const coldStarts = json.filter((j) => 'ColdStart' in j);
    expect(coldStarts).toHaveLength(1);
    expect(coldStarts[0]).toMatchObject({ ColdStart: 1, ClusterId: 'c1', service: 'fts-test', function_name: 'fts-prober-fn' });
  });
});

describe('no placeholder deployed silently', () => {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(REPO, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };

  test("cdk.json's context is marked as an example", () => {
    expect(String(cdkJson.context.ftsExampleContext)).toMatch(/^EXAMPLE/);
  });

  test('built from it (bin/app.ts), the template synthesizes, warns, and carries a rule that fails every deploy with a message naming the placeholders', () => {
    const { stack: example } = buildApp(new App({ context: { 'aws:cdk:bundling-stacks': [], ...cdkJson.context } }));
    const t = Template.fromStack(example);
    const json = t.toJSON() as { Parameters: Record<string, { Default: string }>; Rules: Record<string, { Assertions: { Assert: unknown; AssertDescription: string }[] }> };
    expect(json.Parameters[EXAMPLE_CONTEXT_PARAMETER].Default).toBe('example');
    const rule = json.Rules.ExampleContextIsNotDeployable;
    expect(rule.Assertions).toEqual([
      {
        Assert: { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: EXAMPLE_CONTEXT_PARAMETER }, 'example'] }] },
        AssertDescription: expect.stringMatching(/example context of cdk\.json \(placeholder vpcId vpc-0123456789abcdef0, privateSubnetIds subnet-0123456789abcdef0, .*pgSecretArn .*\) and cannot be deployed/),
      },
    ]);
    Annotations.fromStack(example).hasWarning('*', Match.stringLikeRegexp('cannot be deployed'));
  });

  test('with real values: no rule, no parameter, no warning', () => {
    const json = template.toJSON() as { Parameters?: Record<string, unknown>; Rules?: Record<string, unknown> };
    expect(json.Parameters?.[EXAMPLE_CONTEXT_PARAMETER]).toBeUndefined();
    expect(json.Rules?.ExampleContextIsNotDeployable).toBeUndefined();
    Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('cannot be deployed'));
  });

  test('overriding only some placeholders still fails, naming the ones left', () => {
    const props = ftsStackPropsFromContext((key) => ({ ...cdkJson.context, vpcId: realProps.vpcId, privateSubnetIds: realProps.privateSubnetIds, segmentSecurityGroupId: realProps.segmentSecurityGroupId })[key]);
    const t = Template.fromStack(new FtsStack(newApp(), 'Fts-example', props)).toJSON() as { Rules: Record<string, { Assertions: { AssertDescription: string }[] }> };
    expect(t.Rules.ExampleContextIsNotDeployable.Assertions[0].AssertDescription).toMatch(/placeholder pgSecretArn arn:aws:secretsmanager:us-east-1:123456789012:/);
  });
});

describe('every prop a user needs is reachable from context', () => {
  const ctx = (values: Record<string, unknown>) => (key: string) => ({ ...EXAMPLE_FTS_CONTEXT, ...values })[key];

  test('each FtsStackProps key has its context key (handlers and the StackProps are for code, not users)', () => {
    const source = fs.readFileSync(path.join(REPO, 'lib', 'fts-stack.ts'), 'utf8');
    const block = /export interface FtsStackProps extends StackProps \{([\s\S]*?)\n\}/.exec(source)![1];
    const props = [...block.matchAll(/^ {2}readonly (\w+)\??:/gm)].map((m) => m[1]);
    const contextKeyOf: Record<string, string> = {
      clusterId: 'clusterId',
      vpcId: 'vpcId',
      availabilityZones: 'availabilityZones',
      privateSubnetIds: 'privateSubnetIds',
      segmentSecurityGroupId: 'segmentSecurityGroupId',
      pgSecretArn: 'pgSecretArn',
      segmentPorts: 'segmentPorts',
      manageSegmentIngress: 'manageSegmentIngress',
      notificationEmails: 'notificationEmails',
      tableRemovalPolicy: 'tableRemovalPolicy',
      clientEndpoint: 'endpointKind',
      segmentHosts: 'pgOsUser',
      scheduleEnabled: 'scheduleEnabled',
      scheduleRate: 'scheduleRateSeconds',
      hostEvents: 'hostEvents',
      tableDeletionProtection: 'tableDeletionProtection',
      logRetention: 'logRetentionDays',
      segmentTls: 'pgSslMode',
    };
    const codeOnly = ['handlers'];
    for (const prop of props) {
      if (codeOnly.includes(prop)) continue;
      expect({ prop, contextKey: contextKeyOf[prop] }).toEqual({ prop, contextKey: expect.any(String) });
      expect(FTS_CONTEXT_KEYS).toContain(contextKeyOf[prop]);
    }
  });

  test('booleans (JSON or -c strings), the schedule rate, the removal policy, the retention', () => {
    expect(
      ftsStackPropsFromContext(ctx({ manageSegmentIngress: 'false', scheduleEnabled: false, hostEvents: 'FALSE', tableDeletionProtection: 'true', scheduleRateSeconds: '300', tableRemovalPolicy: 'retain', logRetentionDays: 365 })),
    ).toMatchObject({ manageSegmentIngress: false, scheduleEnabled: false, hostEvents: false, tableDeletionProtection: true, tableRemovalPolicy: 'retain', logRetention: 365 });
    expect(ftsStackPropsFromContext(ctx({ scheduleRateSeconds: '300' })).scheduleRate?.toSeconds()).toBe(300);
    expect(ftsStackPropsFromContext(ctx({ tableRemovalPolicy: 'DESTROY' })).tableRemovalPolicy).toBe('destroy');
  });

  test.each<[Record<string, unknown>, RegExp]>([
    [{ scheduleEnabled: 'no' }, /context "scheduleEnabled" must be true or false/],
    [{ scheduleRateSeconds: '30' }, /context "scheduleRateSeconds" must be between 60 and 840/],
    [{ scheduleRateSeconds: '1m' }, /context "scheduleRateSeconds" must be a whole number/],
    [{ tableRemovalPolicy: 'snapshot' }, /context "tableRemovalPolicy" must be retain or destroy/],
    [{ logRetentionDays: '31' }, /context "logRetentionDays" must be a CloudWatch Logs retention/],
  ])('%j: a clear error', (values, message) => {
    expect(() => ftsStackPropsFromContext(ctx(values))).toThrow(message);
  });

  test('they reach the template: schedule and EC2 rule disabled, no rule at all, no ingress, the retention, a 5-minute schedule', () => {
    const off = build({ scheduleEnabled: false, manageSegmentIngress: false, logRetention: 365, scheduleRate: ftsStackPropsFromContext(ctx({ scheduleRateSeconds: '300' })).scheduleRate });
    off.template.hasResourceProperties('AWS::Scheduler::Schedule', { State: 'DISABLED', ScheduleExpression: 'rate(5 minutes)' });
    off.template.hasResourceProperties('AWS::Events::Rule', { State: 'DISABLED' });
    off.template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
    for (const group of Object.values(off.template.findResources('AWS::Logs::LogGroup'))) expect(group).toMatchObject({ Properties: { RetentionInDays: 365 } });
    const none = build({ hostEvents: false });
    none.template.resourceCountIs('AWS::Events::Rule', 0);
    expect(none.stack.hostEvents).toBeUndefined();
  });
});

describe('tables and tags', () => {
  test('the catalog tables have deletion protection (off only with the DESTROY removal policy; both together are refused)', () => {
    for (const table of Object.values(template.findResources('AWS::DynamoDB::Table'))) expect(table).toMatchObject({ DeletionPolicy: 'Retain', Properties: { DeletionProtectionEnabled: true } });
    for (const table of Object.values(build({ tableRemovalPolicy: ftsStackPropsFromContext((k) => ({ ...EXAMPLE_FTS_CONTEXT, tableRemovalPolicy: 'destroy' })[k]).tableRemovalPolicy }).template.findResources('AWS::DynamoDB::Table'))) {
      expect(table).toMatchObject({ DeletionPolicy: 'Delete', Properties: { DeletionProtectionEnabled: false } });
    }
    expect(() => build({ tableRemovalPolicy: 'destroy' as never, tableDeletionProtection: true })).toThrow(/deletionProtection and removalPolicy DESTROY exclude each other/);
  });

  test('every resource that takes tags carries fts:cluster-id', () => {
    const tagged = ['AWS::Lambda::Function', 'AWS::DynamoDB::Table', 'AWS::StepFunctions::StateMachine', 'AWS::SNS::Topic', 'AWS::Logs::LogGroup', 'AWS::IAM::Role', 'AWS::EC2::SecurityGroup', 'AWS::Events::Rule', 'AWS::CloudWatch::Alarm'];
    const resources = Object.entries(template.toJSON().Resources as Record<string, { Type: string; Properties?: { Tags?: unknown } }>);
    for (const type of tagged) expect(resources.some(([, r]) => r.Type === type)).toBe(true);
    for (const [logicalId, r] of resources) {
      if (!tagged.includes(r.Type)) continue;
      const tags = r.Properties?.Tags;
      const has = Array.isArray(tags) ? tags.some((t: { Key: string; Value: string }) => t.Key === 'fts:cluster-id' && t.Value === 'prod-1') : (tags as Record<string, string> | undefined)?.['fts:cluster-id'] === 'prod-1';
      expect({ logicalId, has }).toEqual({ logicalId, has: true });
    }
  });
});

describe('EC2 events: faster detection of lost hosts', () => {
  test('a rule on state changes to stopping, stopped, shutting-down and terminated invokes the host-event function', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      State: 'ENABLED',
      EventPattern: { source: ['aws.ec2'], 'detail-type': ['EC2 Instance State-change Notification'], detail: { state: ['stopping', 'stopped', 'shutting-down', 'terminated'] } },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [id(stack.hostEvents!.function), 'Arn'] }, RetryPolicy: { MaximumEventAgeInSeconds: 300, MaximumRetryAttempts: 2 } })],
    });
  });

  test('the function: in the VPC, the probe settings of the others, may start PromoteMirror and ActivateStandby and nothing else', () => {
    const fn = template.findResources('AWS::Lambda::Function')[id(stack.hostEvents!.function)] as { Properties: { Timeout: number; VpcConfig: unknown; Environment: { Variables: Record<string, unknown> } } };
    expect(fn.Properties.Timeout).toBe(90);
    expect(fn.Properties.VpcConfig).toBeDefined();
    expect(fn.Properties.Environment.Variables).toMatchObject({
      FTS_CLUSTER_ID: 'prod-1',
      POWERTOOLS_SERVICE_NAME: HOST_EVENT_SERVICE_NAME,
      FTS_PROMOTE_STATE_MACHINE_ARN: { Ref: id(stack.promoteMirror.stateMachine) },
      FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN: { Ref: id(stack.activateStandby.stateMachine) },
      FTS_PG_SECRET_ARN: realProps.pgSecretArn,
    });
    const starts = statementsOf(template, roleOf(stack.hostEvents!.function)).filter((s) => actionsOf(s).some((a) => a.startsWith('states:')));
    expect(starts.flatMap(actionsOf)).toEqual(['states:StartExecution']);
    expect(starts.flatMap(resourcesOf)).toEqual([{ Ref: id(stack.promoteMirror.stateMachine) }, { Ref: id(stack.activateStandby.stateMachine) }]);
  });
});

describe('acknowledged cdk-nag findings', () => {
  test('each one has its reason in the code', () => {
    const reasons: [string, string][] = [];
    for (const c of stack.node.findAll()) {
      for (const entry of c.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [rule, reason] of Object.entries(entry.data as Record<string, string>)) reasons.push([rule, reason]);
      }
    }
    expect(reasons.length).toBeGreaterThan(5);
    for (const [rule, reason] of reasons) expect({ rule, reason: reason.length > 40 }).toEqual({ rule, reason: true });
  });
});
