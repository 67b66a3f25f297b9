/**
 * The prober (Greenplum's `ftsprobe`): one Lambda that EventBridge Scheduler invokes
 * every minute with `{"clusterId": ...}`. Each invocation takes the DynamoDB lease and
 * runs probe rounds every `probeIntervalSeconds` until its minute is over; the next
 * invocation takes over, so a dead invocation costs at most one minute of probing.
 *
 * Also home of what every FTS function shares (runtime, bundling, tracing, logging, its
 * own least-privilege role, handler sources), so the prober, the workflow steps and the
 * EC2-event function are built the same way.
 */
import * as path from 'node:path';
import { Duration, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { CatalogTables } from './catalog-tables';
import { RUN_SHELL_SCRIPT } from '../lambdas/adapters/aws/ssm-host';

/** CloudWatch namespace of every FTS metric (Powertools EMF). */
export const METRICS_NAMESPACE = 'ServerlessFTS';
/** Powertools service name of the prober; Powertools adds it as the `service` metric dimension. */
export const PROBER_SERVICE_NAME = 'fts-prober';
/** Root of the repository (where package-lock.json lives). */
const REPO_ROOT = path.join(__dirname, '..');
/** The prober's handler file. */
export const DEFAULT_PROBER_ENTRY = path.join(REPO_ROOT, 'lambdas', 'handlers', 'prober.ts');
/** The lock file NodejsFunction bundles against; its folder is the bundling project root. */
export const DEFAULT_DEPS_LOCK_FILE = path.join(REPO_ROOT, 'package-lock.json');
/** Cluster ids the handlers accept (same rule as the PromoteMirror input schema). */
export const CLUSTER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/;

/** Where an FTS function's code comes from; tests point these at stubs. */
export interface HandlerSource {
  /**
   * TypeScript file exporting `handler`.
   * @default the real handler under lambdas/handlers/
   */
  readonly entry?: string;
  /**
   * Lock file of the project the entry belongs to; its folder is the bundling root and
   * must contain `entry`.
   * @default the repository's package-lock.json
   */
  readonly depsLockFilePath?: string;
}

/** Network placement of an FTS function: it must reach the segments' PostgreSQL ports. */
export interface FunctionNetworkProps {
  /** VPC of the segment hosts. */
  readonly vpc: ec2.IVpc;
  /**
   * Subnets of the function's network interfaces. They need a route to DynamoDB, Step
   * Functions, Secrets Manager and CloudWatch (NAT gateway or VPC endpoints).
   * @default the VPC's private subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the function; the segments' security group must admit them on
   * the PostgreSQL ports.
   * @default one new security group with all outbound traffic allowed
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
}

/** Throws a clear error when a required prop is missing or a cluster id is malformed. */
export function validateClusterId(owner: string, clusterId: unknown): void {
  if (typeof clusterId !== 'string' || (!Token.isUnresolved(clusterId) && !CLUSTER_ID_PATTERN.test(clusterId))) {
    throw new Error(`${owner}: clusterId must be 1 to 48 letters, digits, - or _ (starting with a letter or digit), got ${JSON.stringify(clusterId)}`);
  }
}

/** Throws unless `value` is a Duration within [min, max] seconds. */
export function validateSeconds(owner: string, prop: string, value: Duration | undefined, min: number, max: number): void {
  if (value === undefined) return;
  const s = value.toSeconds();
  if (!(s >= min && s <= max)) throw new Error(`${owner}: ${prop} must be between ${min} and ${max} seconds, got ${s}`);
}

/** Throws unless `value` is an integer within [min, max]. */
export function validateInteger(owner: string, prop: string, value: number | undefined, min: number, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${owner}: ${prop} must be an integer between ${min} and ${max}, got ${value}`);
}

/** What differs between the FTS functions. */
export interface FtsFunctionOptions {
  /** Handler file when `props.entry` is not set. */
  readonly defaultEntry: string;
  readonly description: string;
  readonly timeout: Duration;
  /** Powertools service name (the `service` metric dimension). */
  readonly serviceName: string;
  /** Variables besides the shared ones (tables, cluster id, secret, Powertools). */
  readonly environment?: Record<string, string>;
  /**
   * What the function may do to the catalog: item reads and writes, or item reads only.
   * @default 'read-write'
   */
  readonly catalogAccess?: 'read-write' | 'read';
  /**
   * Whether the function runs host scripts through SSM Run Command on the cluster's instances.
   * @default true
   */
  readonly hostOperations?: boolean;
}

/** The EC2 actions Lambda performs with a VPC function's role to manage its network interfaces (AWSLambdaVPCAccessExecutionRole's). */
export const LAMBDA_VPC_ENI_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
] as const;

/** Lambda runtime of every FTS function (also what esbuild targets). */
export const FTS_RUNTIME = lambda.Runtime.NODEJS_24_X;

/**
 * Builds an FTS Lambda the way every FTS function wants it: Node.js 24 on ARM, X-Ray
 * active tracing, JSON logs into its own log group with a retention, source maps, and
 * everything bundled (the SDK too, so the code runs against the SDK version it was
 * tested with). `pg-native` stays out: `pg` only loads it when asked to.
 *
 * Its role is its own, with no AWS managed policy: log streams of its own log group, the
 * network interfaces Lambda places in the VPC, the catalog items
 * ({@link FtsFunctionOptions.catalogAccess}), the secret, and the host operations on the
 * cluster's tagged instances ({@link FtsFunctionOptions.hostOperations}).
 */
export function createFtsFunction(scope: Construct, id: string, props: FtsFunctionProps, options: FtsFunctionOptions): nodejs.NodejsFunction {
  const depsLockFilePath = props.depsLockFilePath ?? DEFAULT_DEPS_LOCK_FILE;
  const logGroup = new logs.LogGroup(scope, `${id}Logs`, { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH });
  const role = new iam.Role(scope, `${id}Role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `FTS ${props.clusterId}: ${options.serviceName}`,
  });
  // What AWSLambdaBasicExecutionRole would give, on this function's log group only.
  logGroup.grantWrite(role);
  // What AWSLambdaVPCAccessExecutionRole gives (Lambda manages the function's network
  // interfaces with the function's role), but only to Lambda itself: its ENI calls carry no
  // lambda:SourceFunctionArn, every call of the function's own code does. So the code cannot
  // assign addresses to, or delete, any interface (moving the client endpoint is a grant of its own).
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'LambdaServiceManagesVpcNetworkInterfaces',
      actions: [...LAMBDA_VPC_ENI_ACTIONS],
      resources: ['*'],
      conditions: { Null: { 'lambda:SourceFunctionArn': 'true' } },
    }),
  );
  const fn = new nodejs.NodejsFunction(scope, id, {
    entry: props.entry ?? options.defaultEntry,
    handler: 'handler',
    depsLockFilePath,
    projectRoot: path.dirname(depsLockFilePath),
    description: options.description,
    runtime: FTS_RUNTIME,
    architecture: lambda.Architecture.ARM_64,
    timeout: options.timeout,
    memorySize: props.memorySize ?? 512,
    role,
    tracing: lambda.Tracing.ACTIVE,
    loggingFormat: lambda.LoggingFormat.JSON,
    logGroup,
    vpc: props.vpc,
    vpcSubnets: props.vpcSubnets ?? { subnets: props.vpc.privateSubnets },
    securityGroups: props.securityGroups,
    environment: {
      NODE_OPTIONS: '--enable-source-maps',
      ...props.environment,
      ...props.tables.env,
      ...options.environment,
      FTS_CLUSTER_ID: props.clusterId,
      ...(props.pgSecret ? { FTS_PG_SECRET_ARN: props.pgSecret.secretArn } : {}),
      POWERTOOLS_SERVICE_NAME: options.serviceName,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    },
    bundling: {
      target: 'node24',
      minify: true,
      // Step Functions' Retry and Catch match on error names (`this.name = new.target.name`
      // in lambdas/core/errors.ts): minification must not rename the classes.
      keepNames: true,
      sourceMap: true,
      externalModules: ['pg-native'],
      // Warnings and errors only (the documented default; esbuild's CLI would print its size summary).
      logLevel: nodejs.LogLevel.WARNING,
    },
  });
  if ((options.catalogAccess ?? 'read-write') === 'read-write') props.tables.grantReadWrite(fn);
  else props.tables.grantRead(fn);
  props.pgSecret?.grantRead(fn);
  if (options.hostOperations ?? true) grantHostOperations(fn, props.clusterId);
  acknowledgeFunctionFindings(fn, role, logGroup);
  return fn;
}

/**
 * The cdk-nag findings every FTS function has by design, acknowledged with the reason
 * (test/cdk/nag.test.ts runs the AwsSolutions and Serverless packs).
 */
function acknowledgeFunctionFindings(fn: nodejs.NodejsFunction, role: iam.Role, logGroup: logs.LogGroup): void {
  const stack = Stack.of(fn);
  const logGroupArn = stack.resolve(logGroup.logGroupArn) as { 'Fn::GetAtt': [string, string] };
  Validations.of(role).acknowledge(
    {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Only actions that take no resource-level permission: the ENI management Lambda itself needs for a function in a VPC (as AWSLambdaVPCAccessExecutionRole, but denied to the function code by a lambda:SourceFunctionArn condition), X-Ray PutTraceSegments/PutTelemetryRecords, SSM GetCommandInvocation/CancelCommand (of the commands the function sent), and EC2 Describe calls of the client endpoint',
    },
    {
      id: `AwsSolutions-IAM5[Resource::<${logGroupArn['Fn::GetAtt'][0]}.Arn>:*]`,
      reason: 'Log streams of the function\'s own log group (CreateLogStream, PutLogEvents), instead of AWSLambdaBasicExecutionRole\'s every log group',
    },
    {
      id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]',
      reason: `Instance ids are not known at deploy time: ssm:SendCommand (and ec2:AssociateAddress for an Elastic IP endpoint) only on instances tagged ${CLUSTER_TAG_KEY}=<clusterId> (the statement's condition)`,
    },
  );
  Validations.of(fn).acknowledge({
    id: 'Serverless-LambdaDLQ',
    reason: 'Step Functions invokes the workflow functions synchronously (Retry and Catch handle failures); the scheduled prober and the EC2-event function are invoked asynchronously, but a stale event is worthless to replay (the next tick or probe round decides on fresh state) and their failures are alarmed (ProberErrors, HostEventErrors)',
  });
}

/** Tag every segment host of the cluster carries; host operations are limited to these instances. */
export const CLUSTER_TAG_KEY = 'fts:cluster-id';

/**
 * Host operations (fence, rebuild) through SSM Run Command: `AWS-RunShellScript` on the
 * cluster's instances only (tagged `fts:cluster-id=<clusterId>`), and reading or
 * cancelling the commands sent.
 */
function grantHostOperations(fn: nodejs.NodejsFunction, clusterId: string): void {
  const stack = Stack.of(fn);
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['ssm:SendCommand'],
      resources: [stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
      conditions: { StringEquals: { [`ssm:resourceTag/${CLUSTER_TAG_KEY}`]: clusterId } },
    }),
  );
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['ssm:SendCommand'],
      resources: [stack.formatArn({ service: 'ssm', account: '', resource: 'document', resourceName: RUN_SHELL_SCRIPT })],
    }),
  );
  // Neither takes a resource-level permission (Service Authorization Reference): '*' is the only choice.
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['ssm:GetCommandInvocation', 'ssm:CancelCommand'], resources: ['*'] }));
}

/** What both FTS functions (the prober and the PromoteMirror steps) are configured with. */
export interface FtsFunctionProps extends FunctionNetworkProps, HandlerSource {
  /** Cluster the function serves (FTS_CLUSTER_ID, the metrics' ClusterId dimension). */
  readonly clusterId: string;
  /** The catalog tables; the function gets read/write on these three only. */
  readonly tables: CatalogTables;
  /**
   * Secret with the PostgreSQL credentials (`{"username", "password"}`);
   * FTS_PG_SECRET_ARN. A customer-managed KMS key on it needs its own grant.
   * @default no secret: the handler connects as FTS_PG_USER without a password (trust/IAM auth)
   */
  readonly pgSecret?: secretsmanager.ISecret;
  /**
   * Memory of the function in MB (also buys CPU for parallel probes).
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * Retention of the function's log group (and the state machine's, for PromoteMirror).
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Extra environment variables (settings of the handler, e.g. FTS_PG_USER).
   * @default none
   */
  readonly environment?: Record<string, string>;
}

/** Longest schedule rate: one period of probing plus the last round must fit in Lambda's 15 minutes. */
export const MAX_SCHEDULE_RATE_SECONDS = 840;
/** Seconds an invocation may need past its period: the longest round valid settings allow (50 s) plus releasing the lease. */
export const LAST_ROUND_SECONDS = 60;

/** Props of {@link Prober}. */
export interface ProberProps extends FtsFunctionProps {
  /** The PromoteMirror state machine; the prober may start executions of it and nothing else. */
  readonly promoteStateMachine: sfn.IStateMachine;
  /**
   * The ActivateStandby state machine, which the prober starts only when the catalog
   * setting `autoActivateStandby` is on.
   * @default none: the prober never activates the standby
   */
  readonly activateStandbyStateMachine?: sfn.IStateMachine;
  /**
   * How often the schedule invokes the prober (60 s to 14 min). Each invocation probes
   * for one whole period, so there is no gap whatever the rate; rounds inside it run
   * every `probeIntervalSeconds` (a catalog setting), so this is the takeover delay
   * after an invocation dies, not the probe interval.
   * @default Duration.minutes(1)
   */
  readonly scheduleRate?: Duration;
  /**
   * Function timeout: one schedule period of rounds, plus the longest round any valid
   * settings allow (50 s) and a margin to release the lease. It must be at least the
   * schedule rate plus 60 s, or periods would go unprobed.
   * @default the schedule rate plus 60 s
   */
  readonly timeout?: Duration;
  /**
   * Whether the schedule starts enabled (disable to deploy a cluster before it is seeded).
   * @default true
   */
  readonly scheduleEnabled?: boolean;
}

/**
 * The scheduled prober. No reserved concurrency: the DynamoDB lease, not Lambda, keeps
 * two invocations from probing at once, and reserved concurrency could starve the
 * takeover invocation while a stuck one still counts.
 */
export class Prober extends Construct {
  /** The prober function. */
  readonly function: nodejs.NodejsFunction;
  /** The EventBridge Scheduler schedule that invokes it. */
  readonly schedule: scheduler.Schedule;

  constructor(scope: Construct, id: string, props: ProberProps) {
    super(scope, id);
    validateClusterId('Prober', props.clusterId);
    if (!props.tables) throw new Error('Prober: tables is required');
    if (!props.promoteStateMachine) throw new Error('Prober: promoteStateMachine is required');
    if (!props.vpc) throw new Error('Prober: vpc is required (the prober must reach the segments)');
    validateSeconds('Prober', 'scheduleRate', props.scheduleRate, 60, MAX_SCHEDULE_RATE_SECONDS);
    validateSeconds('Prober', 'timeout', props.timeout, 10, 900);
    validateInteger('Prober', 'memorySize', props.memorySize, 128, 10240);
    const rate = props.scheduleRate ?? Duration.minutes(1);
    const timeout = props.timeout ?? rate.plus(Duration.seconds(LAST_ROUND_SECONDS));
    if (timeout.toSeconds() < rate.toSeconds() + LAST_ROUND_SECONDS) {
      // An invocation probes for one period and then finishes its last round: shorter would leave gaps with no prober at all.
      throw new Error(`Prober: timeout (${timeout.toSeconds()} s) must be at least the scheduleRate plus ${LAST_ROUND_SECONDS} s (${rate.toSeconds() + LAST_ROUND_SECONDS} s)`);
    }

    this.function = createFtsFunction(this, 'Function', props, {
      defaultEntry: DEFAULT_PROBER_ENTRY,
      description: `FTS prober of cluster ${props.clusterId}: probe rounds under a DynamoDB lease`,
      timeout,
      serviceName: PROBER_SERVICE_NAME,
      environment: {
        FTS_PROMOTE_STATE_MACHINE_ARN: props.promoteStateMachine.stateMachineArn,
        ...(props.activateStandbyStateMachine ? { FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN: props.activateStandbyStateMachine.stateMachineArn } : {}),
        FTS_SCHEDULE_PERIOD_SECONDS: String(rate.toSeconds()),
      },
    });
    // A failed invocation is not worth an async retry: the next scheduled one takes over.
    this.function.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(1) });
    Validations.of(this.function).acknowledge({
      id: 'Serverless-LambdaAsyncFailureDestination',
      reason: 'A failed prober invocation is alarmed (ProberErrors, ProberSilent) and the next scheduled one takes over within a minute; its event ({"clusterId"}) carries nothing worth keeping',
    });

    // Least privilege: the three tables and the secret (createFtsFunction), the state machines it starts.
    this.function.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['states:StartExecution'],
        resources: [props.promoteStateMachine.stateMachineArn, ...(props.activateStandbyStateMachine ? [props.activateStandbyStateMachine.stateMachineArn] : [])],
      }),
    );

    // The scheduler's own role (not the stack-wide one CDK shares between schedules), so its findings are acknowledged here.
    const schedulerRole = new iam.Role(this, 'ScheduleRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } } }),
      description: `FTS ${props.clusterId}: the schedule that invokes the prober`,
    });
    Validations.of(schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${Stack.of(this).getLogicalId(this.function.node.defaultChild as lambda.CfnFunction)}.Arn>:*]`,
      reason: "lambda:InvokeFunction on the prober and its versions and aliases (CDK's grant of a function), nothing else",
    });
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `Invokes the FTS prober of cluster ${props.clusterId}`,
      schedule: scheduler.ScheduleExpression.rate(rate),
      enabled: props.scheduleEnabled ?? true,
      target: new targets.LambdaInvoke(this.function, {
        input: scheduler.ScheduleTargetInput.fromObject({ clusterId: props.clusterId }),
        // A late invocation is useless: the next one is due by then.
        maxEventAge: Duration.minutes(1),
        retryAttempts: 1,
        role: schedulerRole,
      }),
    });
  }
}

