/**
 * The FTS stack of one cluster. It only composes the constructs (catalog tables,
 * PromoteMirror workflow, prober, alarms) and wires the network: the VPC is imported
 * from attributes (no lookup, so synth needs no credentials) and the segments' security
 * group admits the control plane's security group on the PostgreSQL ports.
 */
import { Annotations, CfnOutput, CfnParameter, CfnRule, Duration, Fn, RemovalPolicy, Stack, Tags, Token, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { FtsAlarms } from './alarms';
import { CatalogTables } from './catalog-tables';
import { parseServiceManager, PG_DISTROS, pgBinFor, type PgDistro } from '../lambdas/adapters/aws/shell';
import { WORKFLOW_SPECS } from '../lambdas/workflows';
import { StepWorkflow } from './step-workflow';
import { CLIENT_ENDPOINT_KINDS, configureClientEndpoint, validateClientEndpointProps, type ClientEndpointKind, type ClientEndpointProps } from './client-endpoint';
import { HostEvents } from './host-events';
import { CLUSTER_TAG_KEY, Prober, validateClusterId, type HandlerSource } from './prober';

/** TCP port range of the segments' PostgreSQL instances. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/**
 * How the segment hosts run PostgreSQL: what the host scripts (fence, stop, start,
 * rebuild, sent through SSM) use. Set once per cluster; every FTS function gets it as
 * FTS_PG_OS_USER, FTS_PG_BIN and FTS_PG_SERVICE_MANAGER.
 */
export interface SegmentHostsProps {
  /**
   * OS user that owns PostgreSQL on the hosts.
   * @default gpadmin
   */
  readonly osUser?: string;
  /**
   * Directory of `pg_ctl`, `pg_rewind`, `pg_basebackup`, `psql`, when the packages put them
   * elsewhere than `pgDistro`/`pgMajor` say. Not with `pgDistro`.
   * @default from pgDistro and pgMajor, else /usr/lib/postgresql/15/bin
   */
  readonly pgBin?: string;
  /** The hosts' distribution, for its packages' bin directory (`debian`, `ubuntu`, `amazon-linux-2023`, `pgdg-rhel`); needs `pgMajor`. */
  readonly pgDistro?: PgDistro;
  /** PostgreSQL major version on the hosts, with `pgDistro`. */
  readonly pgMajor?: number;
  /**
   * `pg_ctl`, or `systemd:<unit template>[,instance=gpseg|basename|path]` (e.g.
   * `systemd:postgresql@15-%i.service`), so an instance started or recovered through SSM
   * is still managed by systemd after a reboot.
   * @default pg_ctl
   */
  readonly serviceManager?: string;
  /**
   * How the scripts (run as root by SSM) switch to `osUser`: `sudo` (`sudo -n -u`; the
   * hosts need sudo) or `runuser` (util-linux, hosts without sudo).
   * @default sudo
   */
  readonly runAs?: 'sudo' | 'runuser';
  /**
   * Role mirrors, pg_rewind and pg_basebackup connect to the primary as; its password goes
   * in `osUser`'s `~/.pgpass` on every host.
   * @default osUser
   */
  readonly replicationUser?: string;
}

/** FTS_PG_SSLMODE and FTS_PG_CA_BUNDLE of every function; Error for a mode that is not libpq's or a verify mode without its CA bundle. */
export function segmentTlsEnvironment(tls: FtsStackProps['segmentTls']): Record<string, string> {
  if (!tls) return {};
  const modes = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];
  if (!modes.includes(tls.sslMode)) throw new Error(`FtsStack: segmentTls.sslMode must be one of ${modes.join(', ')}, got ${JSON.stringify(tls.sslMode)}`);
  if (tls.sslMode.startsWith('verify-') && !tls.caBundle) throw new Error(`FtsStack: segmentTls.sslMode ${tls.sslMode} verifies the segments' certificates: give segmentTls.caBundle (PEM, or system)`);
  return { FTS_PG_SSLMODE: tls.sslMode, ...(tls.caBundle ? { FTS_PG_CA_BUNDLE: tls.caBundle } : {}) };
}

/** The environment variables of {@link SegmentHostsProps}; throws an Error naming what is wrong. */
export function segmentHostsEnvironment(hosts: SegmentHostsProps | undefined): Record<string, string> {
  if (!hosts) return {};
  const env: Record<string, string> = {};
  if (hosts.osUser !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(hosts.osUser)) throw new Error(`FtsStack: segmentHosts.osUser must be a user name, got ${JSON.stringify(hosts.osUser)}`);
    env.FTS_PG_OS_USER = hosts.osUser;
  }
  if (hosts.pgBin !== undefined && hosts.pgDistro !== undefined) throw new Error('FtsStack: segmentHosts.pgBin and segmentHosts.pgDistro exclude each other');
  if (hosts.pgBin !== undefined) {
    if (!/^\/[A-Za-z0-9_./-]*$/.test(hosts.pgBin) || hosts.pgBin.includes('..')) throw new Error(`FtsStack: segmentHosts.pgBin must be an absolute directory, got ${JSON.stringify(hosts.pgBin)}`);
    env.FTS_PG_BIN = hosts.pgBin;
  }
  if (hosts.pgDistro !== undefined || hosts.pgMajor !== undefined) {
    if (hosts.pgDistro === undefined || hosts.pgMajor === undefined) throw new Error('FtsStack: segmentHosts.pgDistro and segmentHosts.pgMajor go together');
    if (!PG_DISTROS.includes(hosts.pgDistro)) throw new Error(`FtsStack: segmentHosts.pgDistro must be one of ${PG_DISTROS.join(', ')}, got ${JSON.stringify(hosts.pgDistro)}`);
    env.FTS_PG_BIN = pgBinFor(hosts.pgDistro, hosts.pgMajor);
  }
  if (hosts.runAs !== undefined) {
    if (hosts.runAs !== 'sudo' && hosts.runAs !== 'runuser') throw new Error(`FtsStack: segmentHosts.runAs must be sudo or runuser, got ${JSON.stringify(hosts.runAs)}`);
    env.FTS_PG_RUN_AS = hosts.runAs;
  }
  if (hosts.replicationUser !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/.test(hosts.replicationUser)) throw new Error(`FtsStack: segmentHosts.replicationUser must be a role name, got ${JSON.stringify(hosts.replicationUser)}`);
    env.FTS_PG_REPLICATION_USER = hosts.replicationUser;
  }
  if (hosts.serviceManager !== undefined) {
    try {
      parseServiceManager(hosts.serviceManager);
    } catch (e) {
      throw new Error(`FtsStack: segmentHosts.serviceManager: ${(e as Error).message}`, { cause: e });
    }
    env.FTS_PG_SERVICE_MANAGER = hosts.serviceManager;
  }
  return env;
}

/** Props of {@link FtsStack}. */
export interface FtsStackProps extends StackProps {
  /** Cluster id (1 to 48 letters, digits, - or _); the prober's schedule input and the metrics' ClusterId. */
  readonly clusterId: string;
  /** VPC of the segment hosts, e.g. `vpc-0123456789abcdef0`. */
  readonly vpcId: string;
  /** Availability zones of `privateSubnetIds`, in the same order (one subnet per zone, or a multiple). */
  readonly availabilityZones: string[];
  /** Private subnets the functions run in; they need a NAT gateway or VPC endpoints for DynamoDB, Step Functions, Secrets Manager, SNS and CloudWatch. */
  readonly privateSubnetIds: string[];
  /** Security group of the segment hosts; the FTS functions' security group is admitted to it on `segmentPorts`. */
  readonly segmentSecurityGroupId: string;
  /**
   * Complete ARN (ending in the 6-character suffix) of the Secrets Manager secret with
   * the PostgreSQL credentials, `{"username": ..., "password": ...}`.
   * @default no secret: the handlers connect as FTS_PG_USER without a password
   */
  readonly pgSecretArn?: string;
  /**
   * PostgreSQL ports of the segments (coordinator, standby, primaries, mirrors).
   * @default { from: 1024, to: 65535 }: every unprivileged port, from the FTS security group only
   */
  readonly segmentPorts?: PortRange;
  /**
   * Add the ingress rule to the segments' security group. Turn off when that group is
   * managed elsewhere; then admit `controlPlaneSecurityGroup` there yourself.
   * @default true
   */
  readonly manageSegmentIngress?: boolean;
  /**
   * E-mail addresses subscribed to the alarm and notification topic.
   * @default none
   */
  readonly notificationEmails?: string[];
  /**
   * Removal policy of the catalog tables.
   * @default RemovalPolicy.RETAIN
   */
  readonly tableRemovalPolicy?: RemovalPolicy;
  /**
   * Sources of the handlers (the prober's and each workflow's); tests point them at stubs.
   * @default the real handlers under lambdas/handlers/
   */
  readonly handlers?: {
    readonly prober?: HandlerSource;
    readonly promoteMirror?: HandlerSource;
    readonly recoverSegments?: HandlerSource;
    readonly rebalance?: HandlerSource;
    readonly activateStandby?: HandlerSource;
    readonly initStandby?: HandlerSource;
    readonly hostEvent?: HandlerSource;
  };
  /**
   * The client endpoint that follows the acting coordinator (a secondary private IP, an
   * Elastic IP or a Route 53 record; docs/coordinator.md): ActivateStandby moves it and
   * commits a row through it, and may do nothing else with it.
   * @default none: clients connect to the coordinator's own address, and an activation moves nothing
   */
  readonly clientEndpoint?: ClientEndpointProps;
  /**
   * How the segment hosts run PostgreSQL (OS user, bin directory, pg_ctl or systemd).
   * @default gpadmin, /usr/lib/postgresql/15/bin, pg_ctl
   */
  readonly segmentHosts?: SegmentHostsProps;
  /**
   * TLS of the functions' connections to the segments: libpq's `sslMode` (`disable`,
   * `prefer`, `require`, `verify-ca`, `verify-full`) and, for the two `verify-` modes, the
   * CA bundle (PEM text, or `system` for Node's public roots). FTS_PG_SSLMODE, FTS_PG_CA_BUNDLE.
   * @default prefer, no CA bundle
   */
  readonly segmentTls?: { readonly sslMode: 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full'; readonly caBundle?: string };
  /**
   * Whether the prober's schedule and the EC2 host-event rule start enabled. Disable to
   * deploy before the cluster is in the catalog (`ftsctl init`), or to switch FTS off.
   * @default true
   */
  readonly scheduleEnabled?: boolean;
  /**
   * How often the schedule invokes the prober (60 s to 14 min); the takeover delay after
   * an invocation dies, not the probe interval (a catalog setting).
   * @default Duration.minutes(1)
   */
  readonly scheduleRate?: Duration;
  /**
   * The EventBridge rule on EC2 state changes and its function, which probe the primaries
   * of a host that stops or terminates at once (lib/host-events.ts).
   * @default true
   */
  readonly hostEvents?: boolean;
  /**
   * DynamoDB deletion protection on the catalog tables.
   * @default true, false with `tableRemovalPolicy: RemovalPolicy.DESTROY`
   */
  readonly tableDeletionProtection?: boolean;
  /**
   * Retention of the functions' and state machines' log groups.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * Placeholder values of the example context (cdk.json, docs): AWS's documentation
 * account 123456789012 and ids made of `0123456789abcdef`. A stack built with any of
 * them synthesizes (tests, local mode), warns, and cannot be deployed.
 */
export const EXAMPLE_PLACEHOLDERS = {
  account: '123456789012',
  vpcId: 'vpc-0123456789abcdef0',
  subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
  segmentSecurityGroupId: 'sg-0123456789abcdef0',
  allocationId: 'eipalloc-0123456789abcdef0',
  hostedZoneId: 'Z0123456789ABCDEFGHIJ',
} as const;

/** The props that still hold a placeholder of the example context (empty when none does). */
export function examplePlaceholdersIn(props: FtsStackProps): string[] {
  const found: string[] = [];
  const P = EXAMPLE_PLACEHOLDERS;
  if (props.vpcId === P.vpcId) found.push(`vpcId ${props.vpcId}`);
  for (const id of props.privateSubnetIds ?? []) if ((P.subnetIds as readonly string[]).includes(id)) found.push(`privateSubnetIds ${id}`);
  if (props.segmentSecurityGroupId === P.segmentSecurityGroupId) found.push(`segmentSecurityGroupId ${props.segmentSecurityGroupId}`);
  if (props.pgSecretArn?.split(':')[4] === P.account) found.push(`pgSecretArn ${props.pgSecretArn}`);
  if (props.clientEndpoint?.allocationId === P.allocationId) found.push(`endpointAllocationId ${P.allocationId}`);
  if (props.clientEndpoint?.hostedZoneId?.replace(/^\/hostedzone\//, '') === P.hostedZoneId) found.push(`endpointHostedZoneId ${P.hostedZoneId}`);
  return found;
}

const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SG_ID = /^sg-[0-9a-f]{8,17}$/;
const AZ = /^[a-z]{2}(-[a-z0-9]+)+[a-z]$/;
const COMPLETE_SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$/;

function checkId(prop: string, value: unknown, pattern: RegExp, example: string): void {
  if (typeof value !== 'string' || (!Token.isUnresolved(value) && !pattern.test(value))) {
    throw new Error(`FtsStack: ${prop} must look like ${example}, got ${JSON.stringify(value)}`);
  }
}

function checkList(prop: string, value: unknown, pattern: RegExp, example: string): void {
  if (!Array.isArray(value) || value.length === 0) throw new Error(`FtsStack: ${prop} must be a non-empty list (e.g. ${example}), got ${JSON.stringify(value)}`);
  value.forEach((v, i) => checkId(`${prop}[${i}]`, v, pattern, example));
  if (new Set(value).size !== value.length) throw new Error(`FtsStack: ${prop} has duplicates: ${JSON.stringify(value)}`);
}

/** Throws an Error naming the first prop that is missing or malformed. */
export function validateFtsStackProps(props: FtsStackProps): void {
  if (!props) throw new Error('FtsStack: props are required');
  validateClusterId('FtsStack', props.clusterId);
  checkId('vpcId', props.vpcId, VPC_ID, 'vpc-0123456789abcdef0');
  checkList('availabilityZones', props.availabilityZones, AZ, 'us-east-1a');
  checkList('privateSubnetIds', props.privateSubnetIds, SUBNET_ID, 'subnet-0123456789abcdef0');
  if (props.privateSubnetIds.length % props.availabilityZones.length !== 0) {
    throw new Error(
      `FtsStack: privateSubnetIds (${props.privateSubnetIds.length}) must be a multiple of availabilityZones (${props.availabilityZones.length}): one subnet per zone, in zone order`,
    );
  }
  checkId('segmentSecurityGroupId', props.segmentSecurityGroupId, SG_ID, 'sg-0123456789abcdef0');
  if (props.pgSecretArn !== undefined) {
    checkId('pgSecretArn', props.pgSecretArn, COMPLETE_SECRET_ARN, 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fts/pg-AbCdEf (the complete ARN, with its 6-character suffix)');
  }
  if (props.segmentPorts !== undefined) {
    const { from, to } = props.segmentPorts;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 1 || to > 65535 || from > to) {
      throw new Error(`FtsStack: segmentPorts must be integers with 1 <= from <= to <= 65535, got ${JSON.stringify(props.segmentPorts)}`);
    }
  }
  segmentHostsEnvironment(props.segmentHosts);
  segmentTlsEnvironment(props.segmentTls);
  if (props.clientEndpoint) validateClientEndpointProps(props.clientEndpoint);
}

/** The FTS control plane of one cluster. */
export class FtsStack extends Stack {
  /** The catalog tables. */
  readonly tables: CatalogTables;
  /** The PromoteMirror workflow (the prober starts it). */
  readonly promoteMirror: StepWorkflow;
  /** The RecoverSegments workflow (gprecoverseg; operators start it). */
  readonly recoverSegments: StepWorkflow;
  /** The Rebalance workflow (gprecoverseg -r; operators start it). */
  readonly rebalance: StepWorkflow;
  /** The ActivateStandby workflow (gpactivatestandby; operators start it, or the prober when autoActivateStandby is on). */
  readonly activateStandby: StepWorkflow;
  /** The InitStandby workflow (gpinitstandby, gpinitstandby -r; operators start it). */
  readonly initStandby: StepWorkflow;
  /** The scheduled prober. */
  readonly prober: Prober;
  /** Topic, alarms, dashboard. */
  readonly alarms: FtsAlarms;
  /** Security group of both FTS functions; the segments must admit it on their PostgreSQL ports. */
  readonly controlPlaneSecurityGroup: ec2.SecurityGroup;
  /** The EC2 state-change rule and its function (absent with `hostEvents: false`). */
  readonly hostEvents?: HostEvents;

  constructor(scope: Construct, id: string, props: FtsStackProps) {
    validateFtsStackProps(props);
    super(scope, id, props);
    // Every resource that takes tags carries the cluster id (cost allocation, ownership, and the same key the hosts carry).
    Tags.of(this).add(CLUSTER_TAG_KEY, props.clusterId);
    const placeholders = examplePlaceholdersIn(props);
    if (placeholders.length) refuseDeploy(this, placeholders);

    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: props.vpcId,
      availabilityZones: props.availabilityZones,
      privateSubnetIds: props.privateSubnetIds,
    });
    // The functions only need the subnets' ids, never their route tables.
    Annotations.of(vpc).acknowledgeWarning('@aws-cdk/aws-ec2:noSubnetRouteTableId', 'FTS places functions in these subnets and reads no route table');
    const vpcSubnets: ec2.SubnetSelection = { subnets: vpc.privateSubnets };
    this.controlPlaneSecurityGroup = new ec2.SecurityGroup(this, 'ControlPlaneSecurityGroup', {
      vpc,
      description: `FTS ${props.clusterId}: prober and workflow functions`,
      allowAllOutbound: true,
    });
    if (props.manageSegmentIngress ?? true) {
      const segments = ec2.SecurityGroup.fromSecurityGroupId(this, 'SegmentSecurityGroup', props.segmentSecurityGroupId, { mutable: true });
      const ports = props.segmentPorts ?? { from: 1024, to: 65535 };
      segments.addIngressRule(this.controlPlaneSecurityGroup, ec2.Port.tcpRange(ports.from, ports.to), `FTS ${props.clusterId} probes and promotes segments`);
    }
    const securityGroups = [this.controlPlaneSecurityGroup];
    const pgSecret = props.pgSecretArn ? secretsmanager.Secret.fromSecretCompleteArn(this, 'PgSecret', props.pgSecretArn) : undefined;

    this.tables = new CatalogTables(this, 'Catalog', { removalPolicy: props.tableRemovalPolicy, deletionProtection: props.tableDeletionProtection });
    const environment = { ...segmentHostsEnvironment(props.segmentHosts), ...segmentTlsEnvironment(props.segmentTls) };
    const logRetention = props.logRetention;
    const workflow = (kind: keyof typeof WORKFLOW_SPECS, source: HandlerSource | undefined): StepWorkflow =>
      new StepWorkflow(this, kind, { spec: WORKFLOW_SPECS[kind], clusterId: props.clusterId, tables: this.tables, pgSecret, vpc, vpcSubnets, securityGroups, environment, logRetention, ...source });
    this.promoteMirror = workflow('PromoteMirror', props.handlers?.promoteMirror);
    this.recoverSegments = workflow('RecoverSegments', props.handlers?.recoverSegments);
    this.rebalance = workflow('Rebalance', props.handlers?.rebalance);
    this.activateStandby = workflow('ActivateStandby', props.handlers?.activateStandby);
    if (props.clientEndpoint && props.clientEndpoint.kind !== 'none') {
      const endpoint = clientEndpointWithClusterLimits(props.clientEndpoint, props);
      for (const [key, value] of Object.entries(configureClientEndpoint(this.activateStandby.function, endpoint))) this.activateStandby.function.addEnvironment(key, value);
    }
    this.initStandby = workflow('InitStandby', props.handlers?.initStandby);
    // What the prober and the host-event function share: both probe and start these workflows.
    const probing = {
      clusterId: props.clusterId,
      tables: this.tables,
      promoteStateMachine: this.promoteMirror.stateMachine,
      activateStandbyStateMachine: this.activateStandby.stateMachine,
      pgSecret,
      vpc,
      vpcSubnets,
      securityGroups,
      environment,
      logRetention,
    };
    this.prober = new Prober(this, 'Prober', {
      ...probing,
      scheduleEnabled: props.scheduleEnabled,
      scheduleRate: props.scheduleRate,
      ...props.handlers?.prober,
    });
    if (props.hostEvents ?? true) {
      this.hostEvents = new HostEvents(this, 'HostEvents', {
        ...probing,
        enabled: props.scheduleEnabled,
        ...props.handlers?.hostEvent,
      });
    }
    this.alarms = new FtsAlarms(this, 'Alarms', {
      clusterId: props.clusterId,
      promoteStateMachine: this.promoteMirror.stateMachine,
      promoteFunction: this.promoteMirror.function,
      operatorStateMachines: { RecoverSegments: this.recoverSegments.stateMachine, Rebalance: this.rebalance.stateMachine, ActivateStandby: this.activateStandby.stateMachine, InitStandby: this.initStandby.stateMachine },
      proberFunction: this.prober.function,
      hostEventFunction: this.hostEvents?.function,
      hostEventRule: this.hostEvents?.rule,
      notificationEmails: props.notificationEmails,
    });
    // An activation is news too (the coordinator moved): ActivateStandby publishes to the same topic.
    this.alarms.topic.grantPublish(this.activateStandby.function);
    this.activateStandby.function.addEnvironment('FTS_NOTIFY_TOPIC_ARN', this.alarms.topic.topicArn);

    // What `ftsctl` and operators need to find the deployed pieces.
    new CfnOutput(this, 'SegmentsTable', { value: this.tables.segments.tableName });
    new CfnOutput(this, 'HistoryTable', { value: this.tables.history.tableName });
    new CfnOutput(this, 'ClustersTable', { value: this.tables.clusters.tableName });
    for (const w of [this.promoteMirror, this.recoverSegments, this.rebalance, this.activateStandby, this.initStandby]) {
      new CfnOutput(this, `${w.spec.kind}StateMachineArn`, { value: w.stateMachine.stateMachineArn });
    }
    new CfnOutput(this, 'ProberFunctionName', { value: this.prober.function.functionName });
    new CfnOutput(this, 'NotificationTopicArn', { value: this.alarms.topic.topicArn });
    // The cluster the prober watches (`ftsctl --outputs/--stack` acts on it), the group the segments must admit, the dashboard.
    new CfnOutput(this, 'ClusterId', { value: props.clusterId });
    new CfnOutput(this, 'ControlPlaneSecurityGroupId', { value: this.controlPlaneSecurityGroup.securityGroupId });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://${this.region}.console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards/dashboard/${this.alarms.dashboard.dashboardName}`,
    });
  }
}

/** The parameter {@link refuseDeploy} adds, and its only value. */
export const EXAMPLE_CONTEXT_PARAMETER = 'FtsExampleContext';

/**
 * A stack synthesized from placeholder values: a synth warning, and a CloudFormation rule
 * that fails every create or update of the stack with a message naming the placeholders
 * (synth keeps working: tests and local mode build the stack from the example context).
 */
function refuseDeploy(stack: Stack, placeholders: string[]): void {
  const message =
    `FTS: this template was synthesized from the example context of cdk.json (placeholder ${placeholders.join(', ')}) and cannot be deployed. ` +
    'Set your own values under "context" in cdk.json or pass them with -c key=value (docs/deploy.md, Context).';
  Annotations.of(stack).addWarningV2('@fts:exampleContext', message);
  const parameter = new CfnParameter(stack, EXAMPLE_CONTEXT_PARAMETER, {
    type: 'String',
    default: 'example',
    description: 'Present only in a template built from the placeholder values of the example context: such a template cannot be deployed',
  });
  new CfnRule(stack, 'ExampleContextIsNotDeployable', {
    assertions: [{ assert: Fn.conditionNot(Fn.conditionEquals(parameter.valueAsString, 'example')), assertDescription: message }],
  });
}

/**
 * The client endpoint with the cluster's limits filled in where the props leave them
 * open: address moves stay in the cluster's VPC, an Elastic IP goes only to instances
 * tagged `fts:cluster-id=<clusterId>` (the tag SSM already requires), and a secondary IP
 * only to network interfaces with that tag.
 */
export function clientEndpointWithClusterLimits(endpoint: ClientEndpointProps, props: Pick<FtsStackProps, 'clusterId' | 'vpcId'>): ClientEndpointProps {
  const tag = { key: CLUSTER_TAG_KEY, value: props.clusterId };
  switch (endpoint.kind) {
    case 'secondary-ip':
      return { vpcId: props.vpcId, networkInterfaceTag: tag, ...endpoint };
    case 'elastic-ip':
      return { vpcId: props.vpcId, instanceTag: tag, ...endpoint };
    default:
      return endpoint;
  }
}

/** Context keys `bin/app.ts` reads (`-c key=value` or cdk.json). */
export const FTS_CONTEXT_KEYS = [
  'clusterId',
  'vpcId',
  'availabilityZones',
  'privateSubnetIds',
  'segmentSecurityGroupId',
  'pgSecretArn',
  'segmentPorts',
  'notificationEmails',
  'pgOsUser',
  'pgBin',
  'pgDistro',
  'pgMajor',
  'pgServiceManager',
  'pgRunAs',
  'pgReplicationUser',
  'pgSslMode',
  'pgCaBundle',
  'endpointKind',
  'endpointAddress',
  'endpointPort',
  'endpointAllocationId',
  'endpointHostedZoneId',
  'endpointRecordName',
  'endpointTtlSeconds',
  'manageSegmentIngress',
  'scheduleEnabled',
  'scheduleRateSeconds',
  'hostEvents',
  'tableRemovalPolicy',
  'tableDeletionProtection',
  'logRetentionDays',
] as const;

/** Marker key of cdk.json's example context (documentation only: the placeholder values themselves make a deploy fail). */
export const EXAMPLE_CONTEXT_MARKER = 'ftsExampleContext';

/** `segmentTls` from the context keys pgSslMode and pgCaBundle (absent without pgSslMode). */
function segmentTlsFromContext(optional: (key: string) => string | undefined): { segmentTls?: FtsStackProps['segmentTls'] } {
  const sslMode = optional('pgSslMode');
  const caBundle = optional('pgCaBundle');
  if (sslMode === undefined) {
    if (caBundle !== undefined) throw new Error('context "pgCaBundle" set without "pgSslMode" (verify-ca or verify-full)');
    return {};
  }
  return { segmentTls: { sslMode: sslMode as NonNullable<FtsStackProps['segmentTls']>['sslMode'], ...(caBundle !== undefined ? { caBundle } : {}) } };
}

/** `clientEndpoint` from the context keys endpointKind, endpointAddress, endpointPort, endpointAllocationId, endpointHostedZoneId, endpointRecordName, endpointTtlSeconds (absent without endpointKind). */
function clientEndpointFromContext(optional: (key: string) => string | undefined): { clientEndpoint?: ClientEndpointProps } {
  const kind = optional('endpointKind');
  if (kind === undefined) {
    const stray = ['endpointAddress', 'endpointPort', 'endpointAllocationId', 'endpointHostedZoneId', 'endpointRecordName', 'endpointTtlSeconds'].filter((k) => optional(k) !== undefined);
    if (stray.length) throw new Error(`context ${stray.map((k) => `"${k}"`).join(', ')} set without "endpointKind" (one of ${CLIENT_ENDPOINT_KINDS.join(', ')})`);
    return {};
  }
  if (!(CLIENT_ENDPOINT_KINDS as readonly string[]).includes(kind)) throw new Error(`context "endpointKind" must be one of ${CLIENT_ENDPOINT_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  const number = (key: string): number | undefined => {
    const v = optional(key);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`context "${key}" must be a whole number, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const address = optional('endpointAddress');
  const allocationId = optional('endpointAllocationId');
  const hostedZoneId = optional('endpointHostedZoneId');
  const recordName = optional('endpointRecordName');
  const port = number('endpointPort');
  const ttlSeconds = number('endpointTtlSeconds');
  return {
    clientEndpoint: {
      kind: kind as ClientEndpointKind,
      ...(address !== undefined ? { address } : {}),
      ...(port !== undefined ? { port } : {}),
      ...(allocationId !== undefined ? { allocationId } : {}),
      ...(hostedZoneId !== undefined ? { hostedZoneId } : {}),
      ...(recordName !== undefined ? { recordName } : {}),
      ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
    },
  };
}

/** `segmentHosts` from the context keys pgOsUser, pgBin, pgDistro, pgMajor, pgServiceManager, pgRunAs, pgReplicationUser (absent when none is set). */
function segmentHostsFromContext(optional: (key: string) => string | undefined): { segmentHosts?: SegmentHostsProps } {
  const major = optional('pgMajor');
  if (major !== undefined && !/^\d+$/.test(major)) throw new Error(`context "pgMajor" must be a PostgreSQL major version such as 15, got ${JSON.stringify(major)}`);
  const hosts: SegmentHostsProps = {
    ...(optional('pgOsUser') !== undefined ? { osUser: optional('pgOsUser') } : {}),
    ...(optional('pgBin') !== undefined ? { pgBin: optional('pgBin') } : {}),
    ...(optional('pgDistro') !== undefined ? { pgDistro: optional('pgDistro') as PgDistro } : {}),
    ...(major !== undefined ? { pgMajor: Number(major) } : {}),
    ...(optional('pgServiceManager') !== undefined ? { serviceManager: optional('pgServiceManager') } : {}),
    ...(optional('pgRunAs') !== undefined ? { runAs: optional('pgRunAs') as 'sudo' | 'runuser' } : {}),
    ...(optional('pgReplicationUser') !== undefined ? { replicationUser: optional('pgReplicationUser') } : {}),
  };
  return Object.keys(hosts).length ? { segmentHosts: hosts } : {};
}

/** A context list: a JSON array (cdk.json) or a comma-separated string (`-c key=a,b`). */
function contextList(key: string, value: unknown): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'string') {
    const text = value.trim();
    if (text.startsWith('[')) {
      try {
        const parsed: unknown = JSON.parse(text);
        if (Array.isArray(parsed)) return parsed.map(String);
      } catch {
        /* fall through to the error */
      }
      throw new Error(`context "${key}" is not a valid JSON array: ${text}`);
    }
    return text.split(',').map((s) => s.trim()).filter(Boolean);
  }
  throw new Error(`context "${key}" must be a list (JSON array or comma-separated), got ${JSON.stringify(value)}`);
}

/**
 * Stack props from CDK context, with errors that say which key to set and how. Extra
 * props (env, handlers) are merged over the result.
 */
export function ftsStackPropsFromContext(getContext: (key: string) => unknown, extra: Partial<FtsStackProps> = {}): FtsStackProps {
  const required = (key: string): string => {
    const v = getContext(key);
    if (v === undefined || v === null || v === '') {
      throw new Error(`context "${key}" is missing: pass -c ${key}=... to cdk, or set it under "context" in cdk.json (see docs/deploy.md)`);
    }
    if (typeof v !== 'string') throw new Error(`context "${key}" must be a string, got ${JSON.stringify(v)}`);
    return v.trim();
  };
  const requiredList = (key: string): string[] => {
    const v = contextList(key, getContext(key));
    if (!v?.length) throw new Error(`context "${key}" is missing: pass -c ${key}=a,b to cdk, or a JSON array under "context" in cdk.json (see docs/deploy.md)`);
    return v;
  };
  const optional = (key: string): string | undefined => {
    const v = getContext(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new Error(`context "${key}" must be a string, got ${JSON.stringify(v)}`);
    return v.trim();
  };
  let segmentPorts: PortRange | undefined;
  const ports = optional('segmentPorts');
  if (ports !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(ports);
    if (!m) throw new Error(`context "segmentPorts" must look like 6000-7999, got ${JSON.stringify(ports)}`);
    segmentPorts = { from: Number(m[1]), to: Number(m[2]) };
  }
  const props: FtsStackProps = {
    clusterId: required('clusterId'),
    vpcId: required('vpcId'),
    availabilityZones: requiredList('availabilityZones'),
    privateSubnetIds: requiredList('privateSubnetIds'),
    segmentSecurityGroupId: required('segmentSecurityGroupId'),
    pgSecretArn: optional('pgSecretArn'),
    segmentPorts,
    notificationEmails: contextList('notificationEmails', getContext('notificationEmails')),
    ...segmentHostsFromContext(optional),
    ...clientEndpointFromContext(optional),
    ...segmentTlsFromContext(optional),
    ...deploymentFromContext(getContext, optional),
    ...extra,
  };
  validateFtsStackProps(props);
  return props;
}

/**
 * The deployment switches from context: manageSegmentIngress, scheduleEnabled,
 * scheduleRateSeconds, hostEvents, tableRemovalPolicy (`retain`, `destroy`),
 * tableDeletionProtection, logRetentionDays (a CloudWatch Logs retention, e.g. 30, 365).
 * Booleans are JSON booleans (cdk.json) or `true`/`false` (`-c key=false`).
 */
function deploymentFromContext(getContext: (key: string) => unknown, optional: (key: string) => string | undefined): Partial<FtsStackProps> {
  const flag = (key: string): boolean | undefined => {
    const v = getContext(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string' && /^(true|false)$/i.test(v.trim())) return v.trim().toLowerCase() === 'true';
    throw new Error(`context "${key}" must be true or false, got ${JSON.stringify(v)}`);
  };
  const whole = (key: string): number | undefined => {
    const v = getContext(key);
    if (v === undefined || v === null || v === '') return undefined;
    const text = String(v).trim();
    if (!/^\d+$/.test(text)) throw new Error(`context "${key}" must be a whole number, got ${JSON.stringify(v)}`);
    return Number(text);
  };
  const out: { -readonly [K in keyof FtsStackProps]?: FtsStackProps[K] } = {};
  const set = <K extends keyof FtsStackProps>(key: K, value: FtsStackProps[K] | undefined): void => {
    if (value !== undefined) out[key] = value;
  };
  set('manageSegmentIngress', flag('manageSegmentIngress'));
  set('scheduleEnabled', flag('scheduleEnabled'));
  set('hostEvents', flag('hostEvents'));
  set('tableDeletionProtection', flag('tableDeletionProtection'));
  const rate = whole('scheduleRateSeconds');
  if (rate !== undefined) {
    if (rate < 60 || rate > 840) throw new Error(`context "scheduleRateSeconds" must be between 60 and 840, got ${rate}`);
    out.scheduleRate = Duration.seconds(rate);
  }
  const removal = optional('tableRemovalPolicy');
  if (removal !== undefined) {
    const policies: Record<string, RemovalPolicy> = { retain: RemovalPolicy.RETAIN, destroy: RemovalPolicy.DESTROY };
    const policy = policies[removal.toLowerCase()];
    if (!policy) throw new Error(`context "tableRemovalPolicy" must be retain or destroy, got ${JSON.stringify(removal)}`);
    out.tableRemovalPolicy = policy;
  }
  const days = whole('logRetentionDays');
  if (days !== undefined) {
    const allowed = Object.values(logs.RetentionDays).filter((d): d is number => typeof d === 'number' && d > 0);
    if (!allowed.includes(days)) throw new Error(`context "logRetentionDays" must be a CloudWatch Logs retention (${allowed.join(', ')}), got ${days}`);
    out.logRetention = days as logs.RetentionDays;
  }
  return out;
}
