/**
 * What an operator must hear about: an SNS topic (alarms and the PromoteMirror
 * notifications go there), CloudWatch alarms on the FTS metrics, and a dashboard.
 *
 * The functions publish metrics with Powertools (EMF) in namespace ServerlessFTS.
 * Powertools adds a `service` dimension (POWERTOOLS_SERVICE_NAME) next to the
 * `ClusterId` default dimension, and CloudWatch alarms match dimension sets exactly, so
 * each alarm names both. Every alarm notifies the topic when it fires and when it is OK
 * again. Besides the metrics the code emits (ALARM_METRICS_BY_SERVICE; the others are
 * INFORMATIONAL_METRICS), every state machine's failed, timed-out and aborted executions
 * alarm, and so do the prober's and the host-event function's errors.
 */
import { Duration, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ACTIVATE_STANDBY_SPEC } from '../lambdas/workflows/activate-standby';
import { PROMOTE_MIRROR_SPEC } from '../lambdas/workflows/promote-mirror';
import { HOST_EVENT_SERVICE_NAME } from './host-events';
import { METRICS_NAMESPACE, PROBER_SERVICE_NAME, validateClusterId, validateInteger } from './prober';

/** Metrics of the prober that mean "a person must look", alarmed on Sum >= 1 in a minute. */
export const PROBER_ALARM_METRICS = [
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
  'StandbyDown',
  'StandbyLagging',
] as const;
/** Metrics of the PromoteMirror steps alarmed the same way (UnreachablePrimary: a failover was aborted because the primary still answers somewhere). */
export const PROMOTE_ALARM_METRICS = ['UnreachablePrimary', 'PromotionAborted', 'PromotionFailed', 'FencePending'] as const;
/** Metrics of the ActivateStandby steps alarmed the same way. */
export const ACTIVATE_STANDBY_ALARM_METRICS = ['ActivationFailed', 'ActivationRefused', 'FencePending'] as const;
/**
 * Every metric an alarm watches, by the Powertools service (the `service` dimension)
 * that emits it. test/cdk/hardening.test.ts checks that each metric the code emits is
 * here for its emitter, or in {@link INFORMATIONAL_METRICS}.
 */
export const ALARM_METRICS_BY_SERVICE: Readonly<Record<string, readonly string[]>> = {
  [PROBER_SERVICE_NAME]: PROBER_ALARM_METRICS,
  [PROMOTE_MIRROR_SPEC.serviceName]: PROMOTE_ALARM_METRICS,
  [ACTIVATE_STANDBY_SPEC.serviceName]: ACTIVATE_STANDBY_ALARM_METRICS,
  [HOST_EVENT_SERVICE_NAME]: [],
};
/**
 * Metrics that are not alarms by themselves: timings and counts for the dashboard, and
 * successes (a promotion or activation also notifies the topic). `RoundDurationMs` is
 * watched for its absence (ProberSilent); `ColdStart` is Powertools'.
 */
export const INFORMATIONAL_METRICS = [
  'RoundDurationMs',
  'ContentRoundMs',
  'ProbesFailed',
  'Decisions',
  'FailoversStarted',
  'StandbyLagBytes',
  'StandbyActivationsStarted',
  'PromotionSucceeded',
  'StandbyActivated',
  'ColdStart',
] as const;

/** Props of {@link FtsAlarms}. */
export interface FtsAlarmsProps {
  /** Cluster the metrics belong to (their ClusterId dimension). */
  readonly clusterId: string;
  /** The PromoteMirror state machine; an alarm fires on its ExecutionsFailed. */
  readonly promoteStateMachine: sfn.IStateMachine;
  /**
   * The PromoteMirror step function: allowed to publish to the topic, and told its ARN
   * through FTS_NOTIFY_TOPIC_ARN.
   * @default no function publishes notifications
   */
  readonly promoteFunction?: lambda.Function;
  /**
   * Operator workflows' state machines by name (RecoverSegments, Rebalance): an alarm
   * `<name>ExecutionsFailed` fires on each one's failed executions.
   * @default none
   */
  readonly operatorStateMachines?: Readonly<Record<string, sfn.IStateMachine>>;
  /**
   * The prober function: an alarm fires on its errors.
   * @default no Lambda error alarm
   */
  readonly proberFunction?: lambda.IFunction;
  /**
   * The EC2 host-event function (lib/host-events.ts): an alarm fires on its errors.
   * @default no alarm
   */
  readonly hostEventFunction?: lambda.IFunction;
  /**
   * The EC2 state-change rule: an alarm fires when EventBridge fails to invoke its target.
   * @default no alarm
   */
  readonly hostEventRule?: events.IRule;
  /**
   * Topic for alarms and notifications.
   * @default a new topic that only accepts TLS
   */
  readonly topic?: sns.ITopic;
  /**
   * E-mail addresses subscribed to the topic (each must confirm the subscription).
   * @default none
   */
  readonly notificationEmails?: string[];
  /**
   * Minutes without a single probe round after which the "prober silent" alarm fires.
   * A prober that stopped is an outage of fault tolerance itself.
   * @default 3
   */
  readonly proberSilentMinutes?: number;
  /**
   * Name of the dashboard.
   * @default `fts-<clusterId>`
   */
  readonly dashboardName?: string;
}

/** Topic, alarms and dashboard of one cluster's FTS. */
export class FtsAlarms extends Construct {
  /** Where alarms and notifications go. */
  readonly topic: sns.ITopic;
  /**
   * The alarms, by name: the metric's name (`PromotionFencePending`, `ActivationFencePending`
   * for the workflows' FencePending), `<Workflow>ExecutionsFailed`, `<Workflow>ExecutionsTimedOut`,
   * `<Workflow>ExecutionsAborted`, `ProberErrors`, `ProberSilent`, `HostEventErrors`. Each
   * notifies the topic when it fires and when it is OK again.
   */
  readonly alarms: Readonly<Record<string, cloudwatch.Alarm>>;
  /** The dashboard. */
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: FtsAlarmsProps) {
    super(scope, id);
    validateClusterId('FtsAlarms', props.clusterId);
    if (!props.promoteStateMachine) throw new Error('FtsAlarms: promoteStateMachine is required');
    validateInteger('FtsAlarms', 'proberSilentMinutes', props.proberSilentMinutes, 2, 60);
    for (const email of props.notificationEmails ?? []) {
      if (!Token.isUnresolved(email) && !/^[^@\s]+@[^@\s]+$/.test(email)) throw new Error(`FtsAlarms: notificationEmails has an invalid address ${JSON.stringify(email)}`);
    }
    if (props.dashboardName !== undefined && !/^[A-Za-z0-9_-]{1,255}$/.test(props.dashboardName)) {
      throw new Error(`FtsAlarms: dashboardName must be letters, digits, - or _, got ${JSON.stringify(props.dashboardName)}`);
    }

    this.topic = props.topic ?? new sns.Topic(this, 'Topic', { displayName: `FTS ${props.clusterId}`, enforceSSL: true });
    for (const email of props.notificationEmails ?? []) this.topic.addSubscription(new subscriptions.EmailSubscription(email));
    Validations.of(this).acknowledge({
      id: 'Serverless-SNSRedrivePolicy',
      reason: 'The subscriptions are e-mail addresses of people: SNS retries e-mail delivery itself, and a dead-letter queue of undelivered alarm mails would be read by nobody (the alarms stay in ALARM and on the dashboard)',
    });
    if (props.promoteFunction) {
      this.topic.grantPublish(props.promoteFunction);
      props.promoteFunction.addEnvironment('FTS_NOTIFY_TOPIC_ARN', this.topic.topicArn);
    }

    const metric = (service: string, metricName: string, statistic = cloudwatch.Stats.SUM, period = Duration.minutes(1)): cloudwatch.Metric =>
      new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, dimensionsMap: { ClusterId: props.clusterId, service }, statistic, period });
    const prober = (name: string, statistic?: string) => metric(PROBER_SERVICE_NAME, name, statistic);
    const promotion = (name: string) => metric(PROMOTE_MIRROR_SPEC.serviceName, name);
    const activation = (name: string) => metric(ACTIVATE_STANDBY_SPEC.serviceName, name);

    const action = new actions.SnsAction(this.topic);
    const alarms: Record<string, cloudwatch.Alarm> = {};
    const atLeastOnce = (name: string, m: cloudwatch.IMetric, description: string): void => {
      const alarm = new cloudwatch.Alarm(this, name, {
        alarmDescription: `FTS ${props.clusterId}: ${description}`,
        metric: m,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // No data means nothing happened.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm.addAlarmAction(action);
      alarm.addOkAction(action);
      alarms[name] = alarm;
    };
    const descriptions: Record<(typeof PROBER_ALARM_METRICS)[number] | (typeof PROMOTE_ALARM_METRICS)[number] | (typeof ACTIVATE_STANDBY_ALARM_METRICS)[number], string> = {
      DoubleFault: 'double fault: a primary failed while its mirror was not in sync; the content is down and was not failed over',
      ContentUnavailable: 'a content has no acting primary that answers',
      ProbeMisconfigured: 'a probe failed for a reason that is not the segment (credentials, pg_hba, settings)',
      ProberRoundFailed: 'a prober round failed; failures are not being detected while this lasts',
      UnreachablePrimary: 'a failover was aborted: the primary is unreachable from the prober but still alive (network partition?)',
      PromotionAborted: 'a failover was aborted because the primary proved alive; it is tried again while the primary keeps failing',
      PromotionFailed: 'a mirror promotion failed; the content may have no writable primary',
      CoordinatorUnreachable: 'the coordinator does not answer; the standby is activated automatically only with autoActivateStandby (and a synchronous, in-sync standby), else activating it is a decision for a person',
      StandbyDown: "the coordinator's standby is down (not streaming past the grace period): the coordinator has no standby to fail over to",
      StandbyLagging: "the coordinator's standby lacks more WAL than standbyLagAlarmBytes (asynchronously: what an activation now would lose; see ftsctl state -f)",
      WrongInstance: 'an address in the catalog answers as another instance (DNS change, reused IP, typo); nothing is done to it',
      ZombieFenced: 'an instance marked down answered as a writable primary beside the acting one and was fenced',
      FencePending: 'an old primary could not be fenced yet (host unreachable); it is retried until it is done',
      PrimaryReset: 'a primary reset itself after a backend crash',
      PrimaryResetLoop: 'a primary keeps resetting (crash loop): failed over when its mirror is in sync',
      DiskFailure: 'a primary could not write and flush its heartbeat (full or read-only disk)',
      TooManyConnections: 'a primary is out of connection slots (alive; clients are refused)',
      ReplicationTimeoutMisconfigured: "a primary's wal_sender_timeout is off or too long for the mirror's second opinion before a failover",
      ActivationFailed: 'an activation of the standby failed half-way; the catalog history says where, and ActivateStandby run again finishes it',
      ActivationRefused: 'an activation of the standby was refused (the coordinator answers, or its fence was not confirmed); nothing changed',
    };
    for (const name of PROBER_ALARM_METRICS) atLeastOnce(name, prober(name), descriptions[name]);
    // FencePending is emitted by both functions: the prober's alarm keeps the plain name.
    for (const name of PROMOTE_ALARM_METRICS) atLeastOnce(name === 'FencePending' ? 'PromotionFencePending' : name, promotion(name), descriptions[name]);
    for (const name of ACTIVATE_STANDBY_ALARM_METRICS) {
      atLeastOnce(name === 'FencePending' ? 'ActivationFencePending' : name, activation(name), name === 'FencePending' ? `ActivateStandby: ${descriptions[name]}` : descriptions[name]);
    }
    const perMinute = { period: Duration.minutes(1), statistic: cloudwatch.Stats.SUM };
    const machines: Record<string, sfn.IStateMachine> = { PromoteMirror: props.promoteStateMachine, ...props.operatorStateMachines };
    for (const [name, machine] of Object.entries(machines)) {
      const what = name === 'PromoteMirror' ? 'a failed primary may have no writable successor' : 'the operation did not complete (a segment not recovered or switched back, a standby not activated or added)';
      atLeastOnce(`${name}ExecutionsFailed`, machine.metricFailed(perMinute), name === 'PromoteMirror' ? 'a PromoteMirror execution failed' : `a ${name} execution failed (${what})`);
      atLeastOnce(`${name}ExecutionsTimedOut`, machine.metricTimedOut(perMinute), `a ${name} execution ran past its execution timeout and was stopped: ${what}`);
      atLeastOnce(`${name}ExecutionsAborted`, machine.metricAborted(perMinute), `a ${name} execution was stopped (StopExecution) before it finished: ${what}`);
    }
    if (props.proberFunction) {
      atLeastOnce('ProberErrors', props.proberFunction.metricErrors(perMinute), 'the prober Lambda failed');
    }
    if (props.hostEventFunction) {
      atLeastOnce('HostEventErrors', props.hostEventFunction.metricErrors(perMinute), 'the EC2 host-event function failed: a lost host is handled at the next probe round instead of at once');
    }
    if (props.hostEventRule) {
      const failed = new cloudwatch.Metric({ namespace: 'AWS/Events', metricName: 'FailedInvocations', dimensionsMap: { RuleName: props.hostEventRule.ruleName }, ...perMinute });
      atLeastOnce('HostEventDeliveryFailed', failed, 'EventBridge could not deliver an EC2 state change to the host-event function (after its retries): a lost host is handled at the next probe round');
    }

    // Every tick of the prober publishes RoundDurationMs; none for a few minutes means nobody probes.
    const silentMinutes = props.proberSilentMinutes ?? 3;
    const silent = new cloudwatch.Alarm(this, 'ProberSilent', {
      alarmDescription: `FTS ${props.clusterId}: no probe round for ${silentMinutes} minutes; failures are not being detected`,
      metric: prober('RoundDurationMs', cloudwatch.Stats.SAMPLE_COUNT),
      threshold: 1,
      evaluationPeriods: silentMinutes,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    silent.addAlarmAction(action);
    silent.addOkAction(action);
    alarms.ProberSilent = silent;
    this.alarms = alarms;

    const graph = (title: string, left: cloudwatch.IMetric[]): cloudwatch.GraphWidget => new cloudwatch.GraphWidget({ title, left, width: 8, height: 6 });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName ?? `fts-${props.clusterId}`,
      defaultInterval: Duration.hours(3),
    });
    this.dashboard.addWidgets(
      graph('Probe of a content, decision and write (ms)', [
        prober('ContentRoundMs', cloudwatch.Stats.AVERAGE).with({ label: 'average' }),
        prober('ContentRoundMs', cloudwatch.Stats.MAXIMUM).with({ label: 'maximum' }),
      ]),
      graph('Probes failed', [prober('ProbesFailed')]),
      graph('Decisions', [prober('Decisions'), prober('DoubleFault'), prober('ContentUnavailable')]),
    );
    this.dashboard.addWidgets(
      graph('Promotions', [
        prober('FailoversStarted'),
        metric(HOST_EVENT_SERVICE_NAME, 'FailoversStarted').with({ label: 'FailoversStarted (EC2 events)' }),
        promotion('PromotionSucceeded'),
        promotion('PromotionFailed'),
        promotion('UnreachablePrimary'),
      ]),
      graph('PromoteMirror executions', [
        props.promoteStateMachine.metricStarted({ period: Duration.minutes(1), statistic: cloudwatch.Stats.SUM }),
        props.promoteStateMachine.metricSucceeded({ period: Duration.minutes(1), statistic: cloudwatch.Stats.SUM }),
        props.promoteStateMachine.metricFailed({ period: Duration.minutes(1), statistic: cloudwatch.Stats.SUM }),
      ]),
      new cloudwatch.AlarmStatusWidget({ title: 'FTS alarms', alarms: Object.values(alarms), width: 8, height: 6 }),
    );
    this.dashboard.addWidgets(
      graph('Coordinator and standby', [prober('CoordinatorUnreachable'), prober('StandbyDown'), prober('StandbyLagging'), prober('StandbyActivationsStarted')]),
      graph('Standby lag (bytes of WAL not flushed)', [prober('StandbyLagBytes', cloudwatch.Stats.MAXIMUM).with({ label: 'maximum' })]),
    );
  }
}
