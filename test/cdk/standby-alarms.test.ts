/**
 * The coordinator's alarms and dashboard widgets (lib/alarms.ts): CoordinatorUnreachable,
 * StandbyDown and StandbyLagging alarm on the prober's metrics, and the dashboard graphs
 * them with the standby's lag in bytes.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { FtsAlarms, PROBER_ALARM_METRICS } from '../../lib/alarms';

const stack = new Stack(new App(), 'Alarms');
const promote = new sfn.StateMachine(stack, 'Promote', { definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Pass')) });
const alarms = new FtsAlarms(stack, 'Fts', { clusterId: 'prod-1', promoteStateMachine: promote });
const template = Template.fromStack(stack);

test.each(['CoordinatorUnreachable', 'StandbyDown', 'StandbyLagging'])('%s alarms on Sum >= 1 per minute of the prober, to the topic', (metricName) => {
  expect(PROBER_ALARM_METRICS).toContain(metricName);
  expect(alarms.alarms[metricName]).toBeDefined();
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'ServerlessFTS',
    MetricName: metricName,
    Dimensions: Match.arrayWith([
      { Name: 'ClusterId', Value: 'prod-1' },
      { Name: 'service', Value: 'fts-prober' },
    ]),
    Statistic: 'Sum',
    Period: 60,
    Threshold: 1,
    ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    TreatMissingData: 'notBreaching',
    AlarmDescription: Match.stringLikeRegexp('^FTS prod-1: .*(coordinator|standby)'),
    AlarmActions: [{ Ref: stack.getLogicalId(alarms.topic.node.defaultChild as never) }],
  });
});

test('the dashboard graphs the coordinator and standby metrics and the standby lag in bytes', () => {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  const body = JSON.stringify((dashboards[0] as { Properties: { DashboardBody: unknown } }).Properties.DashboardBody);
  for (const text of ['Coordinator and standby', 'CoordinatorUnreachable', 'StandbyDown', 'StandbyLagging', 'StandbyActivationsStarted', 'StandbyLagBytes', 'Standby lag (bytes of WAL not flushed)']) {
    expect(body).toContain(text);
  }
});
