/**
 * The FTS stack of one cluster. It only composes the constructs (catalog tables,
 * PromoteMirror workflow, prober, alarms) and wires the network: the VPC is imported
 * from attributes (no lookup, so synth needs no credentials) and the segments' security
 * group admits the control plane's security group on the PostgreSQL ports.
 */
import { Annotations, CfnOutput, RemovalPolicy, Stack, Token, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { FtsAlarms } from './alarms';
import { CatalogTables } from './catalog-tables';
import { parseServiceManager, PG_DISTROS, pgBinFor, type PgDistro } from '../lambdas/adapters/aws/shell';
import { WORKFLOW_SPECS } from '../lambdas/workflows';
import { StepWorkflow } from './step-workflow';
import { CLIENT_ENDPOINT_KINDS, configureClientEndpoint, validateClientEndpointProps, type ClientEndpointKind, type ClientEndpointProps } from './client-endpoint';
import { Prober, validateClusterId, type HandlerSource } from './prober';

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
  readonly handlers?: { readonly prober?: HandlerSource; readonly promoteMirror?: HandlerSource; readonly recoverSegments?: HandlerSource; readonly rebalance?: HandlerSource; readonly activateStandby?: HandlerSource; readonly initStandby?: HandlerSource };
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

  constructor(scope: Construct, id: string, props: FtsStackProps) {
    validateFtsStackProps(props);
    super(scope, id, props);

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

    this.tables = new CatalogTables(this, 'Catalog', { removalPolicy: props.tableRemovalPolicy });
    const environment = segmentHostsEnvironment(props.segmentHosts);
    const workflow = (kind: keyof typeof WORKFLOW_SPECS, source: HandlerSource | undefined): StepWorkflow =>
      new StepWorkflow(this, kind, { spec: WORKFLOW_SPECS[kind], clusterId: props.clusterId, tables: this.tables, pgSecret, vpc, vpcSubnets, securityGroups, environment, ...source });
    this.promoteMirror = workflow('PromoteMirror', props.handlers?.promoteMirror);
    this.recoverSegments = workflow('RecoverSegments', props.handlers?.recoverSegments);
    this.rebalance = workflow('Rebalance', props.handlers?.rebalance);
    this.activateStandby = workflow('ActivateStandby', props.handlers?.activateStandby);
    if (props.clientEndpoint && props.clientEndpoint.kind !== 'none') {
      for (const [key, value] of Object.entries(configureClientEndpoint(this.activateStandby.function, props.clientEndpoint))) this.activateStandby.function.addEnvironment(key, value);
    }
    this.initStandby = workflow('InitStandby', props.handlers?.initStandby);
    this.prober = new Prober(this, 'Prober', {
      clusterId: props.clusterId,
      tables: this.tables,
      promoteStateMachine: this.promoteMirror.stateMachine,
      activateStandbyStateMachine: this.activateStandby.stateMachine,
      pgSecret,
      vpc,
      vpcSubnets,
      securityGroups,
      environment,
      ...props.handlers?.prober,
    });
    this.alarms = new FtsAlarms(this, 'Alarms', {
      clusterId: props.clusterId,
      promoteStateMachine: this.promoteMirror.stateMachine,
      promoteFunction: this.promoteMirror.function,
      operatorStateMachines: { RecoverSegments: this.recoverSegments.stateMachine, Rebalance: this.rebalance.stateMachine, ActivateStandby: this.activateStandby.stateMachine, InitStandby: this.initStandby.stateMachine },
      proberFunction: this.prober.function,
      notificationEmails: props.notificationEmails,
    });

    // What `ftsctl` and operators need to find the deployed pieces.
    new CfnOutput(this, 'SegmentsTable', { value: this.tables.segments.tableName });
    new CfnOutput(this, 'HistoryTable', { value: this.tables.history.tableName });
    new CfnOutput(this, 'ClustersTable', { value: this.tables.clusters.tableName });
    for (const w of [this.promoteMirror, this.recoverSegments, this.rebalance, this.activateStandby, this.initStandby]) {
      new CfnOutput(this, `${w.spec.kind}StateMachineArn`, { value: w.stateMachine.stateMachineArn });
    }
    new CfnOutput(this, 'ProberFunctionName', { value: this.prober.function.functionName });
    new CfnOutput(this, 'NotificationTopicArn', { value: this.alarms.topic.topicArn });
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
  'endpointKind',
  'endpointAddress',
  'endpointPort',
  'endpointAllocationId',
  'endpointHostedZoneId',
  'endpointRecordName',
  'endpointTtlSeconds',
] as const;

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
    ...extra,
  };
  validateFtsStackProps(props);
  return props;
}
