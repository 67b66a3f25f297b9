/**
 * The client endpoint in the stack: the `FTS_ENDPOINT_*` environment the handlers build
 * their ClientEndpoint from (lambdas/adapters/aws/client-endpoint.ts), and the least
 * privilege a function needs to move it. Wire it with {@link configureClientEndpoint}:
 *
 * ```ts
 * const env = configureClientEndpoint(fn, { kind: 'secondary-ip', address: '10.0.1.50', subnetId });
 * for (const [k, v] of Object.entries(env)) fn.addEnvironment(k, v);
 * ```
 */
import { Aws, Stack, Token, Tokenization, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import {
  CLIENT_ENDPOINT_ENV,
  CLIENT_ENDPOINT_KINDS,
  DEFAULT_ENDPOINT_PORT,
  DEFAULT_ENDPOINT_TTL_SECONDS,
  type ClientEndpointKind,
} from '../lambdas/adapters/aws/client-endpoint';

export { CLIENT_ENDPOINT_ENV, CLIENT_ENDPOINT_KINDS, type ClientEndpointKind };

/** Which client endpoint the cluster has, and what limits the grant to move it. */
export interface ClientEndpointProps {
  /** How the endpoint moves (docs/coordinator.md); `none`: clients connect to the coordinator itself. */
  readonly kind: ClientEndpointKind;
  /**
   * `secondary-ip`: the private IPv4 address clients connect to (required; in the subnet
   * of both coordinator hosts). `elastic-ip`: the Elastic IP's public address (optional, shown by `describe`).
   */
  readonly address?: string;
  /**
   * The port clients connect to (the coordinator's).
   * @default 5432
   */
  readonly port?: number;
  /** `elastic-ip`: the allocation id (`eipalloc-...`; required). */
  readonly allocationId?: string;
  /** `route53`: the hosted zone id (`Z...`; required). */
  readonly hostedZoneId?: string;
  /** `route53`: the A record clients resolve (required). */
  readonly recordName?: string;
  /**
   * `route53`: TTL of the record; clients re-resolve within it after a move.
   * @default 5
   */
  readonly ttlSeconds?: number;
  /**
   * `secondary-ip`, `elastic-ip`: only network interfaces in this subnet (`subnet-...`)
   * may be given the address.
   * @default any subnet of the account and region
   */
  readonly subnetId?: string;
  /**
   * `secondary-ip`, `elastic-ip`: only network interfaces in this VPC (`vpc-...`).
   * @default any VPC of the account and region
   */
  readonly vpcId?: string;
  /**
   * `elastic-ip`: only instances with this tag may be given the address (tag the two
   * coordinator hosts).
   * @default any instance of the account and region
   */
  readonly instanceTag?: { readonly key: string; readonly value: string };
  /**
   * `secondary-ip`: only network interfaces with this tag may be given the address (tag
   * the coordinator hosts' primary network interfaces; EC2 checks the interface's own tags,
   * not its instance's).
   * @default any network interface (of `subnetId` / `vpcId`)
   */
  readonly networkInterfaceTag?: { readonly key: string; readonly value: string };
}

const OWNER = 'ClientEndpoint';
const fail = (message: string): never => {
  throw new Error(`${OWNER}: ${message}`);
};
const known = (v: string | number | undefined): v is string | number => v !== undefined && !Token.isUnresolved(v);
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Throws a clear error for props that cannot work (values that are tokens are checked at deploy time instead). */
export function validateClientEndpointProps(props: ClientEndpointProps): void {
  if (!(CLIENT_ENDPOINT_KINDS as readonly string[]).includes(props.kind)) fail(`kind must be one of ${CLIENT_ENDPOINT_KINDS.join(', ')}, got ${JSON.stringify(props.kind)}`);
  const unused = (names: (keyof ClientEndpointProps)[]): void => {
    const given = names.filter((n) => props[n] !== undefined);
    if (given.length) fail(`${given.join(', ')} ${given.length > 1 ? 'do' : 'does'} not apply to kind ${props.kind}`);
  };
  if (known(props.port) && !(Number.isInteger(props.port) && props.port >= 1 && props.port <= 65535)) fail(`port must be an integer from 1 to 65535, got ${props.port}`);
  if (known(props.subnetId) && !/^subnet-[0-9a-f]+$/.test(props.subnetId)) fail(`subnetId must look like subnet-0123abcd, got ${JSON.stringify(props.subnetId)}`);
  if (known(props.vpcId) && !/^vpc-[0-9a-f]+$/.test(props.vpcId)) fail(`vpcId must look like vpc-0123abcd, got ${JSON.stringify(props.vpcId)}`);
  switch (props.kind) {
    case 'secondary-ip':
      if (props.address === undefined) fail('kind secondary-ip needs address (the private IPv4 address clients connect to)');
      if (known(props.address) && !IPV4.test(props.address)) fail(`address must be an IPv4 address, got ${JSON.stringify(props.address)}`);
      if (props.networkInterfaceTag && (!props.networkInterfaceTag.key || props.networkInterfaceTag.value === undefined)) fail('networkInterfaceTag needs a key and a value');
      unused(['allocationId', 'hostedZoneId', 'recordName', 'ttlSeconds', 'instanceTag']);
      break;
    case 'elastic-ip':
      if (props.allocationId === undefined) fail('kind elastic-ip needs allocationId (eipalloc-...)');
      if (known(props.allocationId) && !/^eipalloc-[0-9a-f]+$/.test(props.allocationId)) fail(`allocationId must look like eipalloc-0123abcd, got ${JSON.stringify(props.allocationId)}`);
      if (known(props.address) && !IPV4.test(props.address)) fail(`address must be the Elastic IP's public IPv4 address, got ${JSON.stringify(props.address)}`);
      if (props.instanceTag && (!props.instanceTag.key || props.instanceTag.value === undefined)) fail('instanceTag needs a key and a value');
      unused(['hostedZoneId', 'recordName', 'ttlSeconds', 'networkInterfaceTag']);
      break;
    case 'route53':
      if (props.hostedZoneId === undefined) fail('kind route53 needs hostedZoneId');
      if (props.recordName === undefined) fail('kind route53 needs recordName');
      if (known(props.hostedZoneId) && !/^(\/hostedzone\/)?[A-Z0-9]{1,32}$/.test(props.hostedZoneId)) fail(`hostedZoneId must look like Z0123456789ABC, got ${JSON.stringify(props.hostedZoneId)}`);
      if (known(props.recordName) && !(props.recordName.length >= 1 && props.recordName.length <= 255)) fail(`recordName must be a DNS name of 1 to 255 characters, got ${JSON.stringify(props.recordName)}`);
      if (known(props.ttlSeconds) && !(Number.isInteger(props.ttlSeconds) && props.ttlSeconds >= 0 && props.ttlSeconds <= 172800)) fail(`ttlSeconds must be an integer from 0 to 172800, got ${props.ttlSeconds}`);
      unused(['address', 'allocationId', 'subnetId', 'vpcId', 'instanceTag', 'networkInterfaceTag']);
      break;
    case 'none':
      unused(['address', 'port', 'allocationId', 'hostedZoneId', 'recordName', 'ttlSeconds', 'subnetId', 'vpcId', 'instanceTag', 'networkInterfaceTag']);
      break;
  }
}

/** The `FTS_ENDPOINT_*` variables a handler builds the endpoint from (validated). */
export function clientEndpointEnvironment(props: ClientEndpointProps): Record<string, string> {
  validateClientEndpointProps(props);
  const E = CLIENT_ENDPOINT_ENV;
  const env: Record<string, string> = { [E.kind]: props.kind };
  if (props.kind === 'none') return env;
  env[E.port] = Tokenization.stringifyNumber(props.port ?? DEFAULT_ENDPOINT_PORT);
  if (props.address !== undefined) env[E.address] = props.address;
  if (props.kind === 'elastic-ip') env[E.allocationId] = props.allocationId!;
  if (props.kind === 'route53') {
    env[E.hostedZoneId] = props.hostedZoneId!;
    env[E.recordName] = props.recordName!;
    env[E.ttlSeconds] = Tokenization.stringifyNumber(props.ttlSeconds ?? DEFAULT_ENDPOINT_TTL_SECONDS);
  }
  return env;
}

/** Builds EC2 ARNs in the grantee's stack (its account and region), else the deploying one's. */
function ec2Arns(grantee: iam.IGrantable): (resource: string) => string {
  const stack = Construct.isConstruct(grantee) ? Stack.of(grantee) : undefined;
  return (resource) => `arn:${stack?.partition ?? Aws.PARTITION}:ec2:${stack?.region ?? Aws.REGION}:${stack?.account ?? Aws.ACCOUNT_ID}:${resource}`;
}

/** Conditions that keep network interfaces to the given subnet and VPC (and, for a secondary IP, to those with the given tag). */
function networkInterfaceConditions(props: ClientEndpointProps, ec2Arn: (resource: string) => string): Record<string, Record<string, string>> | undefined {
  const equals: Record<string, string> = {};
  if (props.subnetId) equals['ec2:Subnet'] = ec2Arn(`subnet/${props.subnetId}`);
  if (props.vpcId) equals['ec2:Vpc'] = ec2Arn(`vpc/${props.vpcId}`);
  if (props.kind === 'secondary-ip' && props.networkInterfaceTag) equals[`ec2:ResourceTag/${props.networkInterfaceTag.key}`] = props.networkInterfaceTag.value;
  return Object.keys(equals).length ? { StringEquals: equals } : undefined;
}

/**
 * Grants `grantee` what moving and describing the endpoint takes, and no more:
 *
 * - `secondary-ip`: ec2:AssignPrivateIpAddresses on network interfaces (of `subnetId` /
 *   `vpcId`, tagged `networkInterfaceTag`, when given), ec2:DescribeInstances and ec2:DescribeNetworkInterfaces (the
 *   Describe calls take no resource-level permissions);
 * - `elastic-ip`: ec2:AssociateAddress on that Elastic IP, on instances (tagged
 *   `instanceTag` when given) and network interfaces (of `subnetId` / `vpcId`), and
 *   ec2:DescribeAddresses;
 * - `route53`: route53:ChangeResourceRecordSets on the hosted zone, only UPSERT of the A
 *   record `recordName`; route53:ListResourceRecordSets on it; route53:GetChange.
 */
export function grantClientEndpoint(grantee: iam.IGrantable, props: ClientEndpointProps): void {
  validateClientEndpointProps(props);
  const add = (statement: iam.PolicyStatementProps): void => void grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement(statement));
  const ec2Arn = ec2Arns(grantee);
  if ((props.kind === 'secondary-ip' || props.kind === 'elastic-ip') && Construct.isConstruct(grantee.grantPrincipal)) {
    Validations.of(grantee.grantPrincipal).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]',
      reason:
        "The coordinator hosts' network interfaces are not known at deploy time: only those of the cluster's VPC (and subnetId when given) and, for a secondary IP, tagged networkInterfaceTag (FtsStack: fts:cluster-id=<clusterId>), the statement's conditions",
    });
  }
  switch (props.kind) {
    case 'secondary-ip':
      add({ actions: ['ec2:AssignPrivateIpAddresses'], resources: [ec2Arn('network-interface/*')], conditions: networkInterfaceConditions(props, ec2Arn) });
      add({ actions: ['ec2:DescribeInstances', 'ec2:DescribeNetworkInterfaces'], resources: ['*'] });
      break;
    case 'elastic-ip':
      // One statement per resource type: a tag condition on the instance must not be asked of the address.
      add({ actions: ['ec2:AssociateAddress'], resources: [ec2Arn(`elastic-ip/${props.allocationId}`)] });
      add({
        actions: ['ec2:AssociateAddress'],
        resources: [ec2Arn('instance/*')],
        conditions: props.instanceTag ? { StringEquals: { [`ec2:ResourceTag/${props.instanceTag.key}`]: props.instanceTag.value } } : undefined,
      });
      add({ actions: ['ec2:AssociateAddress'], resources: [ec2Arn('network-interface/*')], conditions: networkInterfaceConditions(props, ec2Arn) });
      add({ actions: ['ec2:DescribeAddresses'], resources: ['*'] });
      break;
    case 'route53': {
      if (Construct.isConstruct(grantee.grantPrincipal)) {
        Validations.of(grantee.grantPrincipal).acknowledge({
          id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:route53:::change/*]',
          reason: 'route53:GetChange of the change the UPSERT returns: its id is not known before the call, and the action reads the status of a change only',
        });
      }
      const zone = known(props.hostedZoneId) ? props.hostedZoneId.replace(/^\/hostedzone\//, '') : props.hostedZoneId!;
      const zoneArn = `arn:${Aws.PARTITION}:route53:::hostedzone/${zone}`;
      const only: Record<string, string[]> = { 'route53:ChangeResourceRecordSetsRecordTypes': ['A'], 'route53:ChangeResourceRecordSetsActions': ['UPSERT'] };
      // Route 53 compares normalized names: lower case, no trailing dot.
      if (known(props.recordName)) only['route53:ChangeResourceRecordSetsNormalizedRecordNames'] = [props.recordName.toLowerCase().replace(/\.$/, '')];
      add({ actions: ['route53:ChangeResourceRecordSets'], resources: [zoneArn], conditions: { 'ForAllValues:StringEquals': only } });
      add({ actions: ['route53:ListResourceRecordSets'], resources: [zoneArn] });
      add({ actions: ['route53:GetChange'], resources: [`arn:${Aws.PARTITION}:route53:::change/*`] });
      break;
    }
    case 'none':
      break;
  }
}

/**
 * Validates `props`, grants `grantee` the least privilege to move the endpoint and
 * returns the environment variables to set on the function.
 */
export function configureClientEndpoint(grantee: iam.IGrantable, props: ClientEndpointProps): Record<string, string> {
  const env = clientEndpointEnvironment(props);
  grantClientEndpoint(grantee, props);
  return env;
}
