/**
 * PromoteMirror (Greenplum's FTS PROMOTE): a Standard state machine whose every Task
 * invokes the same Lambda with `{ "step": <step>, "input": <state document> }`. Each
 * task writes its result at `$.<stepKey>`, so the document accumulates what every step
 * saw and the steps stay stateless and re-runnable (catalog first, then act).
 *
 *   ValidateInput -> ConfirmFailure -> FenceOldPrimary -> AlreadyFlipped? -> FlipCatalog
 *     -> PromoteMirror -> VerifyWritable -> ClearPending -> Notify -> Promoted
 *
 * The old primary is fenced before the catalog names the mirror, so no client that
 * follows the catalog finds two writable instances of the content; the fence is
 * recorded as owed first, and one that cannot be done (host unreachable) stays owed in
 * the catalog and the prober carries it out later.
 *
 * JSONPath only: the local runner (aws-local-stepfunctions) ignores JSONata.
 */
import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { PromoteStep } from '../lambdas/service/promotion';
import {
  createFtsFunction,
  validateClusterId,
  validateInteger,
  validateSeconds,
  type FtsFunctionProps,
} from './prober';

/** Powertools service name of the PromoteMirror steps (the `service` metric dimension). */
export const PROMOTE_MIRROR_SERVICE_NAME = 'fts-promote-mirror';
/** The PromoteMirror steps' handler file. */
export const DEFAULT_PROMOTE_MIRROR_ENTRY = path.join(__dirname, '..', 'lambdas', 'handlers', 'promote-mirror.ts');

/** Names of the PromoteMirror states; tests, local mode and operators refer to these. */
export const PROMOTE_STATES = {
  validateInput: 'ValidateInput',
  invalidInput: 'InvalidInput',
  confirmFailure: 'ConfirmFailure',
  alreadyFlipped: 'AlreadyFlipped',
  flipCatalog: 'FlipCatalog',
  fenceOldPrimary: 'FenceOldPrimary',
  promoteMirror: 'PromoteMirror',
  verifyWritable: 'VerifyWritable',
  clearPending: 'ClearPending',
  notify: 'Notify',
  promoted: 'Promoted',
  recordAbort: 'RecordAbort',
  aborted: 'Aborted',
  recordFailure: 'RecordFailure',
  promotionFailed: 'PromotionFailed',
} as const;

/** Name of a Task state of PromoteMirror. */
export type PromoteTaskState =
  | 'ValidateInput'
  | 'ConfirmFailure'
  | 'FlipCatalog'
  | 'FenceOldPrimary'
  | 'PromoteMirror'
  | 'VerifyWritable'
  | 'ClearPending'
  | 'Notify'
  | 'RecordAbort'
  | 'RecordFailure';

/** The step each Task state sends to the handler. */
export const PROMOTE_TASK_STEPS: Readonly<Record<PromoteTaskState, PromoteStep>> = {
  ValidateInput: 'validate',
  ConfirmFailure: 'confirm-failure',
  FlipCatalog: 'flip-catalog',
  FenceOldPrimary: 'fence-old-primary',
  PromoteMirror: 'promote',
  VerifyWritable: 'verify-writable',
  ClearPending: 'clear-pending',
  Notify: 'notify',
  RecordAbort: 'record-abort',
  RecordFailure: 'record-failure',
};

/** Where a step's result lands in the state document: `$.` + camelCase of the step (`confirm-failure` -> `$.confirmFailure`). */
export const stepResultKey = (step: PromoteStep): string => step.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Errors of steps that touch a segment or the catalog and are worth a quick retry. */
export const TRANSIENT_STEP_ERRORS = ['SegmentUnreachableError', 'HostCommandError', 'NotWritableError', 'CatalogConflictError'];

/** Props of {@link PromoteMirrorWorkflow}. */
export interface PromoteMirrorWorkflowProps extends FtsFunctionProps {
  /**
   * Timeout of the step function. `promote` waits up to 30 s for pg_promote.
   * @default Duration.seconds(60)
   */
  readonly timeout?: Duration;
  /**
   * Longest a whole execution may run before Step Functions fails it (States.Timeout).
   * @default Duration.minutes(15)
   */
  readonly executionTimeout?: Duration;
  /**
   * Name of the state machine.
   * @default a CloudFormation-generated name
   */
  readonly stateMachineName?: string;
  /**
   * Execution log level in CloudWatch Logs (execution data included).
   * @default sfn.LogLevel.ALL: failovers are rare and every transition matters afterwards
   */
  readonly logLevel?: sfn.LogLevel;
}

/** The PromoteMirror state machine and the one function behind its steps. */
export class PromoteMirrorWorkflow extends Construct {
  /** The Standard state machine. */
  readonly stateMachine: sfn.StateMachine;
  /** The function every Task invokes (`handler({ step, input })`). */
  readonly function: nodejs.NodejsFunction;

  constructor(scope: Construct, id: string, props: PromoteMirrorWorkflowProps) {
    super(scope, id);
    validateClusterId('PromoteMirrorWorkflow', props.clusterId);
    if (!props.tables) throw new Error('PromoteMirrorWorkflow: tables is required');
    if (!props.vpc) throw new Error('PromoteMirrorWorkflow: vpc is required (the steps must reach the segments)');
    validateSeconds('PromoteMirrorWorkflow', 'timeout', props.timeout, 35, 900);
    validateSeconds('PromoteMirrorWorkflow', 'executionTimeout', props.executionTimeout, 60, 365 * 24 * 3600);
    validateInteger('PromoteMirrorWorkflow', 'memorySize', props.memorySize, 128, 10240);
    if (props.stateMachineName !== undefined && !/^[A-Za-z0-9_-]{1,80}$/.test(props.stateMachineName)) {
      throw new Error(`PromoteMirrorWorkflow: stateMachineName must be 1 to 80 letters, digits, - or _, got ${JSON.stringify(props.stateMachineName)}`);
    }
    const timeout = props.timeout ?? Duration.seconds(60);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    this.function = createFtsFunction(this, 'Function', props, {
      defaultEntry: DEFAULT_PROMOTE_MIRROR_ENTRY,
      description: `FTS PromoteMirror steps of cluster ${props.clusterId}`,
      timeout,
      serviceName: PROMOTE_MIRROR_SERVICE_NAME,
    });

    // A task outlives the function by a margin, so a hung invocation ends as the
    // function's own timeout error (a clear cause) rather than States.Timeout.
    const taskTimeout = sfn.Timeout.duration(timeout.plus(Duration.seconds(10)));
    const task = (state: PromoteTaskState): tasks.LambdaInvoke => {
      const step = PROMOTE_TASK_STEPS[state];
      return new tasks.LambdaInvoke(this, state, {
        stateName: state,
        lambdaFunction: this.function,
        payload: sfn.TaskInput.fromObject({ step, input: sfn.JsonPath.entirePayload }),
        payloadResponseOnly: true,
        resultPath: `$.${stepResultKey(step)}`,
        taskTimeout,
        // Keeps the Lambda service-exception retries (Lambda.ServiceException, ...).
        retryOnServiceExceptions: true,
      });
    };
    const S = PROMOTE_STATES;
    const errorPath = '$.error';

    const invalidInput = new sfn.Fail(this, S.invalidInput, { stateName: S.invalidInput, error: 'InvalidInput', causePath: `${errorPath}.Cause` });
    const promoted = new sfn.Succeed(this, S.promoted, { stateName: S.promoted });
    const aborted = new sfn.Succeed(this, S.aborted, { stateName: S.aborted, comment: 'The primary is alive: no failover. Not an error.' });
    const promotionFailed = new sfn.Fail(this, S.promotionFailed, { stateName: S.promotionFailed, error: 'PromotionFailed', causePath: `${errorPath}.Cause` });

    const recordAbort = task('RecordAbort');
    // record-abort writes a history row; a concurrent catalog writer is worth another try.
    recordAbort.addRetry({ errors: ['CatalogConflictError'], interval: Duration.seconds(1), maxAttempts: 3, backoffRate: 2 });
    recordAbort.next(aborted);
    const recordFailure = task('RecordFailure');
    // record-failure writes a history row; a concurrent catalog writer is worth another try.
    recordFailure.addRetry({ errors: ['CatalogConflictError'], interval: Duration.seconds(1), maxAttempts: 3, backoffRate: 2 });
    recordFailure.next(promotionFailed);

    const validate = task('ValidateInput');
    validate.addCatch(invalidInput, { errors: ['ValidationError'], resultPath: errorPath });

    const confirm = task('ConfirmFailure');
    confirm.addCatch(recordAbort, { errors: ['PrimaryAliveError'], resultPath: errorPath });
    confirm.addCatch(recordFailure, { errors: ['MirrorNotPromotableError'], resultPath: errorPath });
    // Anything else (catalog unreadable, mirror unreachable) is a failed promotion too: recorded and alarmed.
    confirm.addCatch(recordFailure, { errors: ['States.ALL'], resultPath: errorPath });

    const flip = task('FlipCatalog');
    flip.addRetry({ errors: ['CatalogConflictError'], interval: Duration.seconds(1), maxAttempts: 3, backoffRate: 2 });

    const fence = task('FenceOldPrimary');
    const promote = task('PromoteMirror');
    const verify = task('VerifyWritable');
    const clear = task('ClearPending');
    for (const t of [fence, promote, verify, clear]) {
      t.addRetry({ errors: TRANSIENT_STEP_ERRORS, interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 3 });
    }
    const notify = task('Notify');
    for (const t of [flip, fence, promote, verify, clear, notify]) t.addCatch(recordFailure, { errors: ['States.ALL'], resultPath: errorPath });

    const alreadyFlipped = new sfn.Choice(this, S.alreadyFlipped, { stateName: S.alreadyFlipped })
      .when(
        // isPresent first: a missing field must route, not fail the execution with States.Runtime.
        sfn.Condition.and(sfn.Condition.isPresent('$.confirmFailure.alreadyFlipped'), sfn.Condition.booleanEquals('$.confirmFailure.alreadyFlipped', true)),
        promote,
      )
      .otherwise(flip);
    fence.next(alreadyFlipped);
    flip.next(promote);
    promote.next(verify).next(clear).next(notify).next(promoted);

    const definition = validate.next(confirm).next(fence);

    const logGroup = new logs.LogGroup(this, 'ExecutionLogs', { retention: logRetention });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      comment: `FTS PromoteMirror of cluster ${props.clusterId}: confirm the primary is gone, flip the catalog, promote the mirror`,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: props.executionTimeout ?? Duration.minutes(15),
      tracingEnabled: true,
      logs: { destination: logGroup, level: props.logLevel ?? sfn.LogLevel.ALL, includeExecutionData: true },
    });
  }

  /** Lets `grantee` start executions of this state machine (and nothing else on it). */
  grantStartExecution(grantee: iam.IGrantable): iam.Grant {
    return this.stateMachine.grantStartExecution(grantee);
  }
}
