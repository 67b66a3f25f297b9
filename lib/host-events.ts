/**
 * Faster detection of lost hosts: an EventBridge rule on EC2 instance state changes
 * (`stopping`, `stopped`, `shutting-down`, `terminated`) invokes a function that probes
 * the acting primaries on that instance at once and starts their failover the way the
 * prober would (lambdas/service/host-event.ts: no lease, no catalog write; the workflow's
 * execution name makes the prober's later start of the same failover a no-op).
 *
 * EC2 state-change events carry the instance id and state, not the instance's tags, so
 * the rule matches every instance of the account and region and the function ignores
 * the ones no catalog row names (one strongly consistent read of the catalog each).
 */
import * as path from 'node:path';
import { Duration, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { EC2_STATE_CHANGE_DETAIL_TYPE, HOST_LOST_STATES } from '../lambdas/service/host-event';
import { createFtsFunction, validateClusterId, type FtsFunctionProps } from './prober';

/** Powertools service name of the host-event function (the `service` metric dimension). */
export const HOST_EVENT_SERVICE_NAME = 'fts-host-event';
/** The host-event function's handler file. */
export const DEFAULT_HOST_EVENT_ENTRY = path.join(__dirname, '..', 'lambdas', 'handlers', 'host-event.ts');
/**
 * Timeout of the function: one probe without retries (at most `probeTimeoutSeconds`,
 * 60 s), the wait for the mirror's second opinion (11 s after the state change) and a start.
 */
export const HOST_EVENT_TIMEOUT = Duration.seconds(90);

/** Props of {@link HostEvents}. */
export interface HostEventsProps extends FtsFunctionProps {
  /** The PromoteMirror state machine: the function may start executions of it. */
  readonly promoteStateMachine: sfn.IStateMachine;
  /**
   * The ActivateStandby state machine, started only when the catalog setting
   * `autoActivateStandby` is on and the coordinator's host went away.
   * @default none
   */
  readonly activateStandbyStateMachine?: sfn.IStateMachine;
  /**
   * Whether the rule starts enabled (follow the prober's schedule: no EC2 event should act
   * on a cluster whose prober is switched off).
   * @default true
   */
  readonly enabled?: boolean;
}

/** The EC2 state-change rule and the function it invokes. */
export class HostEvents extends Construct {
  /** The host-event function. */
  readonly function: nodejs.NodejsFunction;
  /** The EventBridge rule on EC2 state changes. */
  readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: HostEventsProps) {
    super(scope, id);
    validateClusterId('HostEvents', props.clusterId);
    if (!props.tables) throw new Error('HostEvents: tables is required');
    if (!props.promoteStateMachine) throw new Error('HostEvents: promoteStateMachine is required');
    if (!props.vpc) throw new Error('HostEvents: vpc is required (the function probes the segments)');

    this.function = createFtsFunction(this, 'Function', props, {
      defaultEntry: DEFAULT_HOST_EVENT_ENTRY,
      description: `FTS ${props.clusterId}: probes the primaries of an EC2 instance that stops or terminates, and starts their failover`,
      timeout: HOST_EVENT_TIMEOUT,
      serviceName: HOST_EVENT_SERVICE_NAME,
      // It decides, it never writes: the catalog stays the prober's (under its lease) and the workflows'.
      catalogAccess: 'read',
      hostOperations: false,
      environment: {
        FTS_PROMOTE_STATE_MACHINE_ARN: props.promoteStateMachine.stateMachineArn,
        ...(props.activateStandbyStateMachine ? { FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN: props.activateStandbyStateMachine.stateMachineArn } : {}),
      },
    });
    // A retry is harmless (a fresh probe and decision, an idempotent start); a late one is useless past the prober's own rounds.
    this.function.configureAsyncInvoke({ retryAttempts: 1, maxEventAge: Duration.minutes(5) });
    this.function.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['states:StartExecution'],
        resources: [props.promoteStateMachine.stateMachineArn, ...(props.activateStandbyStateMachine ? [props.activateStandbyStateMachine.stateMachineArn] : [])],
      }),
    );
    Validations.of(this.function).acknowledge({
      id: 'Serverless-LambdaAsyncFailureDestination',
      reason: "A failed invocation is alarmed (HostEventErrors) and the prober's next rounds handle the host anyway; a stale EC2 event is not worth keeping",
    });

    this.rule = new events.Rule(this, 'Rule', {
      description: `FTS ${props.clusterId}: an EC2 instance stops or terminates; the function ignores instances the catalog does not name`,
      enabled: props.enabled ?? true,
      eventPattern: { source: ['aws.ec2'], detailType: [EC2_STATE_CHANGE_DETAIL_TYPE], detail: { state: [...HOST_LOST_STATES] } },
      targets: [new eventsTargets.LambdaFunction(this.function, { retryAttempts: 2, maxEventAge: Duration.minutes(5) })],
    });
    Validations.of(this.rule).acknowledge({
      id: 'Serverless-EventBusDLQ',
      reason: "A delivery that fails after EventBridge's retries is alarmed (HostEventDeliveryFailed, the rule's FailedInvocations) and the prober handles the host at its next rounds anyway; a queue of stale EC2 events would be replayed by nobody",
    });
  }
}
