/**
 * One construct for every FTS workflow: a Standard state machine built from a workflow
 * spec (lambdas/workflows/), and the one Lambda function behind all its Task states,
 * invoked with `{ "step", "input": <state document>, "execution": <execution name> }`.
 * Each task writes its result at `$.<stepKey>`; a Catch puts the error at `$.error`.
 *
 * JSONPath only: the local runner (aws-local-stepfunctions) ignores JSONata.
 */
import * as path from 'node:path';
import { Aws, Duration, Fn, Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { checkSpec, errorName, stepResultKey, type StateSpec, type WorkflowSpec } from '../lambdas/workflows/spec';
import { CLUSTER_TAG_KEY, createFtsFunction, validateClusterId, validateInteger, validateSeconds, type FtsFunctionProps } from './prober';

/** Where a Catch puts the error (`{ Error, Cause }`). */
export const ERROR_PATH = '$.error';

/**
 * Retry of a Lambda task the Lambda service throttled (account or function concurrency
 * exhausted, e.g. during a failover storm): the step never ran, so running it again is
 * always safe. Added to every Lambda task after CDK's service-exception retry.
 */
export const LAMBDA_THROTTLE_RETRY = { errors: ['Lambda.TooManyRequestsException'], interval: Duration.seconds(1), maxAttempts: 6, backoffRate: 2 } as const;

/** Prefix of the execution log groups: CloudWatch Logs' resource policy for vended logs covers it, so many state machines never exceed its size limit. */
export const STATE_MACHINE_LOG_GROUP_PREFIX = '/aws/vendedlogs/states/';

/** The handler file of a spec. */
export const handlerEntry = (spec: Pick<WorkflowSpec, 'handler'>): string => path.join(__dirname, '..', 'lambdas', 'handlers', `${spec.handler}.ts`);

/** Props of {@link StepWorkflow}. */
export interface StepWorkflowProps extends FtsFunctionProps {
  /** The workflow: states, steps, limits. */
  readonly spec: WorkflowSpec;
  /**
   * Timeout of the step function.
   * @default the spec's stepTimeoutSeconds
   */
  readonly timeout?: Duration;
  /**
   * Longest a whole execution may run before Step Functions fails it (States.Timeout).
   * @default the spec's executionTimeoutSeconds
   */
  readonly executionTimeout?: Duration;
  /**
   * Name of the state machine.
   * @default a CloudFormation-generated name
   */
  readonly stateMachineName?: string;
  /**
   * Execution log level in CloudWatch Logs (execution data included).
   * @default sfn.LogLevel.ALL: these workflows are rare and every transition matters afterwards
   */
  readonly logLevel?: sfn.LogLevel;
}

/** A workflow's state machine and the one function behind its steps. */
export class StepWorkflow extends Construct {
  /** The Standard state machine. */
  readonly stateMachine: sfn.StateMachine;
  /** The function every Task invokes. */
  readonly function: nodejs.NodejsFunction;
  /** The spec it was built from. */
  readonly spec: WorkflowSpec;
  private readonly clusterId: string;

  constructor(scope: Construct, id: string, props: StepWorkflowProps) {
    super(scope, id);
    const { spec } = props;
    const owner = `${spec.kind}Workflow`;
    checkSpec(spec);
    validateClusterId(owner, props.clusterId);
    if (!props.tables) throw new Error(`${owner}: tables is required`);
    if (!props.vpc) throw new Error(`${owner}: vpc is required (the steps must reach the segments)`);
    validateSeconds(owner, 'timeout', props.timeout, 35, 900);
    validateSeconds(owner, 'executionTimeout', props.executionTimeout, 60, 365 * 24 * 3600);
    validateInteger(owner, 'memorySize', props.memorySize, 128, 10240);
    if (props.stateMachineName !== undefined && !/^[A-Za-z0-9_-]{1,80}$/.test(props.stateMachineName)) {
      throw new Error(`${owner}: stateMachineName must be 1 to 80 letters, digits, - or _, got ${JSON.stringify(props.stateMachineName)}`);
    }
    this.spec = spec;
    this.clusterId = props.clusterId;
    const timeout = props.timeout ?? Duration.seconds(spec.stepTimeoutSeconds);

    this.function = createFtsFunction(this, 'Function', props, {
      defaultEntry: handlerEntry(spec),
      description: `FTS ${spec.kind} steps of cluster ${props.clusterId}`,
      timeout,
      serviceName: spec.serviceName,
      environment: { FTS_HOST_OPERATION_SECONDS: String(Math.min(spec.hostOperationSeconds, Math.floor(timeout.toSeconds() / 2))) },
    });

    // A task outlives the function by a margin, so a hung invocation ends as the
    // function's own timeout error (a clear cause) rather than States.Timeout.
    const taskTimeout = sfn.Timeout.duration(timeout.plus(Duration.seconds(10)));
    const build = (states: Readonly<Record<string, StateSpec>>, start: string): sfn.IChainable => {
      const made = new Map<string, sfn.State>();
      for (const [name, s] of Object.entries(states)) made.set(name, this.state(name, s, taskTimeout));
      const at = (name: string): sfn.State => made.get(name) as sfn.State;
      for (const [name, s] of Object.entries(states)) {
        const state = at(name);
        if (s.type === 'task' || s.type === 'sdk' || s.type === 'map') {
          const t = state as tasks.LambdaInvoke | tasks.CallAwsService | sfn.Map;
          if (s.type === 'task') t.addRetry({ ...LAMBDA_THROTTLE_RETRY, errors: [...LAMBDA_THROTTLE_RETRY.errors] });
          for (const r of s.type !== 'map' ? (s.retry ?? []) : []) {
            t.addRetry({ errors: r.errors.map(errorName), interval: Duration.seconds(r.intervalSeconds), maxAttempts: r.maxAttempts, backoffRate: r.backoffRate });
          }
          for (const c of s.catch ?? []) {
            // No ResultPath is ASL's `$` (the error replaces the document); the local runner reads an explicit `$` as a field name.
            t.addCatch(at(c.next), { errors: c.errors.map(errorName), ...(c.resultPath === '$' ? {} : { resultPath: ERROR_PATH }) });
          }
          if (s.type === 'map') (t as sfn.Map).itemProcessor(build(s.states, s.start));
          if (s.next !== undefined) t.next(at(s.next));
        } else if (s.type === 'wait') (state as sfn.Wait).next(at(s.next));
        else if (s.type === 'choice') {
          const choice = state as sfn.Choice;
          for (const w of s.when) {
            // isPresent first: a missing field must route, not fail the execution with States.Runtime.
            const test = typeof w.equals === 'boolean' ? sfn.Condition.booleanEquals(w.path, w.equals) : sfn.Condition.stringEquals(w.path, w.equals);
            choice.when(sfn.Condition.and(sfn.Condition.isPresent(w.path), test), at(w.next));
          }
          choice.otherwise(at(s.otherwise));
        }
      }
      return at(start);
    };
    const definition = build(spec.states, spec.start);

    // Unique per stack instance (the stack id's UUID): a log group retained from a deleted stack never blocks a new one.
    const stackUuid = Fn.select(0, Fn.split('-', Fn.select(2, Fn.split('/', Aws.STACK_ID))));
    const logGroup = new logs.LogGroup(this, 'ExecutionLogs', {
      logGroupName: `${STATE_MACHINE_LOG_GROUP_PREFIX}fts-${props.clusterId}-${spec.kind}-${stackUuid}`,
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
    });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      comment: `FTS ${spec.kind} of cluster ${props.clusterId}: ${spec.description}`,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: props.executionTimeout ?? Duration.seconds(spec.executionTimeoutSeconds),
      tracingEnabled: true,
      logs: { destination: logGroup, level: props.logLevel ?? sfn.LogLevel.ALL, includeExecutionData: true },
    });
    const fnId = Stack.of(this).getLogicalId(this.function.node.defaultChild as lambda.CfnFunction);
    Validations.of(this.stateMachine).acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling* and CloudWatch Logs log delivery (CreateLogDelivery, ..., DescribeLogGroups) take no resource-level permission: AWS requires * there',
      },
      { id: `AwsSolutions-IAM5[Resource::<${fnId}.Arn>:*]`, reason: "lambda:InvokeFunction on the workflow's one step function and its versions and aliases (CDK's grant of a function), nothing else" },
      {
        id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]',
        reason: `Native EC2 tasks (ActivateStandby's StopCoordinatorInstance): instance ids are not known at deploy time; only instances tagged ${CLUSTER_TAG_KEY}=<clusterId> (the statement's condition)`,
      },
    );
  }

  /** Lets `grantee` start executions of this state machine (and nothing else on it). */
  grantStartExecution(grantee: iam.IGrantable): iam.Grant {
    return this.stateMachine.grantStartExecution(grantee);
  }

  private state(name: string, s: StateSpec, taskTimeout: sfn.Timeout): sfn.State {
    switch (s.type) {
      case 'task':
        return new tasks.LambdaInvoke(this, name, {
          stateName: name,
          comment: s.comment,
          lambdaFunction: this.function,
          payload: sfn.TaskInput.fromObject({ step: s.step, input: sfn.JsonPath.entirePayload, execution: sfn.JsonPath.stringAt('$$.Execution.Name') }),
          payloadResponseOnly: true,
          resultPath: `$.${stepResultKey(s.step)}`,
          taskTimeout,
          // Keeps the Lambda service-exception retries (Lambda.ServiceException, ...).
          retryOnServiceExceptions: true,
        });
      case 'sdk': {
        const parameters = Object.fromEntries(
          Object.entries(s.parameters).map(([k, v]) => [k, typeof v === 'object' ? (v.list ? sfn.JsonPath.listAt(v.path) : sfn.JsonPath.stringAt(v.path)) : v]),
        );
        return new TaggedInstancesCallAwsService(this, name, this.clusterId, {
          stateName: name,
          comment: s.comment,
          service: s.service,
          action: s.action,
          parameters,
          // Instances cannot be named at deploy time: the cluster's tagged instances of this account and region (see docs/deploy.md).
          iamResources: [Stack.of(this).formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
          resultPath: s.resultPath,
          taskTimeout,
        });
      }
      case 'choice':
        return new sfn.Choice(this, name, { stateName: name });
      case 'wait':
        return new sfn.Wait(this, name, { stateName: name, time: sfn.WaitTime.secondsPath(s.secondsPath) });
      case 'map':
        return new sfn.Map(this, name, {
          stateName: name,
          itemsPath: s.itemsPath,
          itemSelector: Object.fromEntries(Object.entries(s.itemSelector).map(([k, p]) => [k, sfn.JsonPath.stringAt(p)])),
          ...(s.maxConcurrencyPath ? { maxConcurrencyPath: s.maxConcurrencyPath } : {}),
          resultPath: s.resultPath,
        });
      case 'succeed':
        return new sfn.Succeed(this, name, { stateName: name, comment: s.comment });
      case 'fail':
        return new sfn.Fail(this, name, { stateName: name, error: s.error, ...(s.causePath ? { causePath: s.causePath } : {}) });
    }
  }
}

/**
 * A native SDK task on EC2 instances (ActivateStandby's StopInstances), allowed only on
 * instances tagged `fts:cluster-id=<clusterId>`: CallAwsService takes resources but no
 * condition, so the condition goes on the statements it made.
 */
class TaggedInstancesCallAwsService extends tasks.CallAwsService {
  constructor(scope: Construct, id: string, clusterId: string, props: tasks.CallAwsServiceProps) {
    super(scope, id, props);
    for (const statement of this.taskPolicies ?? []) statement.addCondition('StringEquals', { [`ec2:ResourceTag/${CLUSTER_TAG_KEY}`]: clusterId });
  }
}
