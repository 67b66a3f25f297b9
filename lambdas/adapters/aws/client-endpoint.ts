/**
 * The client endpoint in AWS, three ways (docs/coordinator.md, "Client endpoint"):
 *
 * - {@link SecondaryIpEndpoint}: a secondary private IP moved with AssignPrivateIpAddresses
 *   (AllowReassignment) onto the coordinator host's primary network interface. Both
 *   coordinator hosts must be in the address's subnet, and their OS must configure a
 *   secondary address it is given (Amazon Linux's ec2-net-utils does).
 * - {@link ElasticIpEndpoint}: an Elastic IP moved with AssociateAddress (AllowReassociation).
 * - {@link Route53Endpoint}: an A record UPSERTed with a short TTL; clients that cache
 *   DNS longer than the TTL reach the old address until they resolve again.
 *
 * Each `moveTo` is idempotent and returns once EC2 reports the address on the new
 * coordinator, or Route 53 reports the change INSYNC.
 */
import { isIPv4 } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AssignPrivateIpAddressesCommand,
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  EC2Client,
  type Address,
  type NetworkInterface,
} from '@aws-sdk/client-ec2';
import { ChangeResourceRecordSetsCommand, ListResourceRecordSetsCommand, Route53Client, waitUntilResourceRecordSetsChanged } from '@aws-sdk/client-route-53';
import { z } from 'zod';
import { FtsError, ValidationError } from '../../core/errors';
import type { SegmentRow } from '../../core/model';
import type { ClientEndpoint, EndpointDescription } from '../../ports/endpoint';

/** The kinds of client endpoint a deployment chooses from (`none`: clients connect to the coordinator's own address). */
export const CLIENT_ENDPOINT_KINDS = ['secondary-ip', 'elastic-ip', 'route53', 'none'] as const;
/** A kind of client endpoint. */
export type ClientEndpointKind = (typeof CLIENT_ENDPOINT_KINDS)[number];

/** The environment variables {@link clientEndpointFromEnvironment} reads. */
export const CLIENT_ENDPOINT_ENV = {
  kind: 'FTS_ENDPOINT_KIND',
  address: 'FTS_ENDPOINT_ADDRESS',
  port: 'FTS_ENDPOINT_PORT',
  allocationId: 'FTS_ENDPOINT_ALLOCATION_ID',
  hostedZoneId: 'FTS_ENDPOINT_HOSTED_ZONE_ID',
  recordName: 'FTS_ENDPOINT_RECORD_NAME',
  ttlSeconds: 'FTS_ENDPOINT_TTL_SECONDS',
} as const;

/** Port clients use when none is configured (PostgreSQL's and Greenplum's coordinator default). */
export const DEFAULT_ENDPOINT_PORT = 5432;
/** TTL of the Route 53 record by default: clients re-resolve within seconds of a move. */
export const DEFAULT_ENDPOINT_TTL_SECONDS = 5;
/** How long a move may take to show (EC2 reports the address moved, Route 53 INSYNC), by default. */
export const DEFAULT_ENDPOINT_MOVE_TIMEOUT_SECONDS = 120;

/** The endpoint did not reach the new coordinator in time (EC2 did not report the address moved, or Route 53 the change INSYNC). */
export class EndpointMoveTimeoutError extends FtsError {}

/** How a move is confirmed. */
export interface EndpointWaitOptions {
  /** Longest wait for the move to show; default 120 s. */
  timeoutSeconds?: number;
  /** Pause between checks; default 1 s (Route 53: the waiter's first delay, backing off to 10 s). */
  pollSeconds?: number;
}

const ec2Client = (): EC2Client => new EC2Client({ maxAttempts: 5 });

/** The row's EC2 instance, or a ValidationError naming the row and the endpoint kind. */
function instanceOf(row: SegmentRow, kind: string): string {
  if (!row.instanceId) throw new ValidationError(`a ${kind} client endpoint moves to an EC2 instance, but dbid ${row.dbid} (${row.hostname}) has no instanceId in the catalog`);
  return row.instanceId;
}

/** Polls `check` every `pollSeconds` until it returns true; EndpointMoveTimeoutError after `timeoutSeconds`. */
async function confirm(what: string, check: () => Promise<boolean>, options: EndpointWaitOptions): Promise<void> {
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_ENDPOINT_MOVE_TIMEOUT_SECONDS) * 1000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new EndpointMoveTimeoutError(`${what} did not show within ${timeoutMs / 1000} s`);
    await sleep((options.pollSeconds ?? 1) * 1000);
  }
}

/** Options of {@link SecondaryIpEndpoint}. */
export interface SecondaryIpEndpointOptions extends EndpointWaitOptions {
  /** The private IPv4 address clients connect to (in the subnet of both coordinator hosts). */
  address: string;
  /** The port clients connect to (the coordinator's); default 5432. */
  port?: number;
  /** Default: one with the SDK's standard retry, 5 attempts. */
  client?: EC2Client;
}

/** A secondary private IP on the acting coordinator host's primary network interface. */
export class SecondaryIpEndpoint implements ClientEndpoint {
  private readonly client: EC2Client;
  readonly address: string;
  readonly port: number;

  constructor(private readonly options: SecondaryIpEndpointOptions) {
    if (!isIPv4(options.address)) throw new ValidationError(`secondary-ip endpoint: address must be a private IPv4 address, got ${JSON.stringify(options.address)}`);
    this.address = options.address;
    this.port = options.port ?? DEFAULT_ENDPOINT_PORT;
    this.client = options.client ?? ec2Client();
  }

  /** The address, and the instance whose network interface holds it now. */
  async describe(): Promise<EndpointDescription> {
    const holder = await this.holder();
    const description: EndpointDescription = { kind: 'secondary-ip', address: this.address, port: this.port };
    if (holder?.PrivateIpAddress) description.target = { address: holder.PrivateIpAddress, port: this.port, ...(holder.Attachment?.InstanceId ? { instanceId: holder.Attachment.InstanceId } : {}) };
    return description;
  }

  /**
   * Assigns the address to the primary network interface (device index 0) of the
   * coordinator's instance, taking it from wherever it is, and waits until EC2 reports
   * it there. A no-op when that interface holds it already.
   */
  async moveTo(coordinator: SegmentRow): Promise<void> {
    const instanceId = instanceOf(coordinator, 'secondary-ip');
    const eni = await this.primaryInterface(instanceId);
    if (eni.PrivateIpAddresses?.some((a) => a.PrivateIpAddress === this.address)) return;
    await this.client.send(new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: eni.NetworkInterfaceId, PrivateIpAddresses: [this.address], AllowReassignment: true }));
    // Remapping is asynchronous: done once the interface is the one holding the address.
    await confirm(`address ${this.address} on ${eni.NetworkInterfaceId} (${instanceId})`, async () => (await this.holder())?.NetworkInterfaceId === eni.NetworkInterfaceId, this.options);
  }

  private async primaryInterface(instanceId: string): Promise<NetworkInterface & { NetworkInterfaceId: string }> {
    const out = await this.client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    const instance = out.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId);
    if (!instance) throw new ValidationError(`instance ${instanceId} does not exist`);
    const eni = instance.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0);
    if (!eni?.NetworkInterfaceId) throw new ValidationError(`instance ${instanceId} has no primary network interface (device index 0) to move ${this.address} to`);
    return eni as NetworkInterface & { NetworkInterfaceId: string };
  }

  /** The network interface holding the address now, if any. */
  private async holder(): Promise<NetworkInterface | undefined> {
    const out = await this.client.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'addresses.private-ip-address', Values: [this.address] }] }));
    return out.NetworkInterfaces?.[0];
  }
}

/** Options of {@link ElasticIpEndpoint}. */
export interface ElasticIpEndpointOptions extends EndpointWaitOptions {
  /** Allocation id of the Elastic IP (`eipalloc-...`). */
  allocationId: string;
  /** The port clients connect to (the coordinator's); default 5432. */
  port?: number;
  /** Its public IP, shown by `describe` when EC2 does not report it. */
  address?: string;
  /** Default: one with the SDK's standard retry, 5 attempts. */
  client?: EC2Client;
}

/**
 * An Elastic IP associated with the acting coordinator's instance (its primary private
 * IP; AssociateAddress with an instance id needs the instance to have one network interface).
 */
export class ElasticIpEndpoint implements ClientEndpoint {
  private readonly client: EC2Client;
  readonly allocationId: string;
  readonly port: number;

  constructor(private readonly options: ElasticIpEndpointOptions) {
    if (!/^eipalloc-[0-9a-f]+$/.test(options.allocationId)) throw new ValidationError(`elastic-ip endpoint: allocationId must look like eipalloc-0123abcd, got ${JSON.stringify(options.allocationId)}`);
    this.allocationId = options.allocationId;
    this.port = options.port ?? DEFAULT_ENDPOINT_PORT;
    this.client = options.client ?? ec2Client();
  }

  /** The public IP, and the instance it is associated with now. */
  async describe(): Promise<EndpointDescription> {
    const address = await this.current();
    const description: EndpointDescription = { kind: 'elastic-ip', address: address.PublicIp ?? this.options.address ?? this.allocationId, port: this.port };
    if (address.PrivateIpAddress) description.target = { address: address.PrivateIpAddress, port: this.port, ...(address.InstanceId ? { instanceId: address.InstanceId } : {}) };
    return description;
  }

  /** Associates the Elastic IP with the coordinator's instance and waits until EC2 reports it there. A no-op when it is already. */
  async moveTo(coordinator: SegmentRow): Promise<void> {
    const instanceId = instanceOf(coordinator, 'elastic-ip');
    if ((await this.current()).InstanceId === instanceId) return; // each association is billed: skip a needless one
    await this.client.send(new AssociateAddressCommand({ AllocationId: this.allocationId, InstanceId: instanceId, AllowReassociation: true }));
    await confirm(`Elastic IP ${this.allocationId} on ${instanceId}`, async () => (await this.current()).InstanceId === instanceId, this.options);
  }

  private async current(): Promise<Address> {
    const out = await this.client.send(new DescribeAddressesCommand({ AllocationIds: [this.allocationId] }));
    const address = out.Addresses?.find((a) => a.AllocationId === this.allocationId);
    if (!address) throw new ValidationError(`Elastic IP ${this.allocationId} does not exist`);
    return address;
  }
}

/** Options of {@link Route53Endpoint}. */
export interface Route53EndpointOptions extends EndpointWaitOptions {
  /** The hosted zone (`Z...` or `/hostedzone/Z...`). */
  hostedZoneId: string;
  /** The A record clients resolve, e.g. `coordinator.gp.example.internal`. */
  recordName: string;
  /** TTL of the record; default 5 s. */
  ttlSeconds?: number;
  /** The port clients connect to (the coordinator's); default 5432. */
  port?: number;
  /** Default: one with the SDK's standard retry, 5 attempts. */
  client?: Route53Client;
}

/** Record names compare without case and trailing dot (Route 53 answers `name.` in lower case). */
const normalizeRecordName = (name: string): string => name.toLowerCase().replace(/\.$/, '');

/** A Route 53 A record that names the acting coordinator's address. */
export class Route53Endpoint implements ClientEndpoint {
  private readonly client: Route53Client;
  readonly hostedZoneId: string;
  readonly recordName: string;
  readonly ttlSeconds: number;
  readonly port: number;

  constructor(private readonly options: Route53EndpointOptions) {
    this.hostedZoneId = options.hostedZoneId.replace(/^\/hostedzone\//, '');
    if (!/^[A-Z0-9]{1,32}$/.test(this.hostedZoneId)) throw new ValidationError(`route53 endpoint: hostedZoneId must look like Z0123456789ABC, got ${JSON.stringify(options.hostedZoneId)}`);
    if (!options.recordName || options.recordName.length > 255) throw new ValidationError(`route53 endpoint: recordName must be a DNS name, got ${JSON.stringify(options.recordName)}`);
    this.recordName = options.recordName;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_ENDPOINT_TTL_SECONDS;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 0) throw new ValidationError(`route53 endpoint: ttlSeconds must be a whole number of seconds, got ${this.ttlSeconds}`);
    this.port = options.port ?? DEFAULT_ENDPOINT_PORT;
    this.client = options.client ?? new Route53Client({ maxAttempts: 5 });
  }

  /** The record name, and the address it holds now. */
  async describe(): Promise<EndpointDescription> {
    const out = await this.client.send(new ListResourceRecordSetsCommand({ HostedZoneId: this.hostedZoneId, StartRecordName: this.recordName, StartRecordType: 'A', MaxItems: 1 }));
    const record = out.ResourceRecordSets?.[0];
    const value = record && record.Type === 'A' && normalizeRecordName(record.Name ?? '') === normalizeRecordName(this.recordName) ? record.ResourceRecords?.[0]?.Value : undefined;
    return { kind: 'route53', address: this.recordName, port: this.port, ...(value ? { target: { address: value, port: this.port } } : {}) };
  }

  /**
   * UPSERTs the A record with the coordinator's address and waits until Route 53 reports
   * the change INSYNC (on every authoritative server). Always UPSERTs: an earlier call
   * may have written the record and died before the change was in sync.
   */
  async moveTo(coordinator: SegmentRow): Promise<void> {
    if (!isIPv4(coordinator.address)) throw new ValidationError(`a route53 client endpoint is an A record, but dbid ${coordinator.dbid} has address ${JSON.stringify(coordinator.address)}, not an IPv4 address`);
    const out = await this.client.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: this.hostedZoneId,
        ChangeBatch: {
          Comment: `FTS: the client endpoint follows the coordinator (dbid ${coordinator.dbid})`,
          Changes: [{ Action: 'UPSERT', ResourceRecordSet: { Name: this.recordName, Type: 'A', TTL: this.ttlSeconds, ResourceRecords: [{ Value: coordinator.address }] } }],
        },
      }),
    );
    const changeId = out.ChangeInfo?.Id;
    if (!changeId) throw new FtsError(`Route 53 returned no change id for ${this.recordName}`);
    if (out.ChangeInfo?.Status === 'INSYNC') return;
    const timeoutSeconds = this.options.timeoutSeconds ?? DEFAULT_ENDPOINT_MOVE_TIMEOUT_SECONDS;
    const minDelay = this.options.pollSeconds ?? 1;
    try {
      await waitUntilResourceRecordSetsChanged({ client: this.client, maxWaitTime: timeoutSeconds, minDelay, maxDelay: Math.max(minDelay, 10) }, { Id: changeId });
    } catch (e) {
      throw new EndpointMoveTimeoutError(`Route 53 change ${changeId} (${this.recordName} -> ${coordinator.address}) was not INSYNC within ${timeoutSeconds} s: ${(e as Error).message}`);
    }
  }
}

/** Clients {@link clientEndpointFromEnvironment} uses instead of its own (tests). */
export interface ClientEndpointClients {
  ec2?: EC2Client;
  route53?: Route53Client;
}

const E = CLIENT_ENDPOINT_ENV;
const required = (kind: string) => ({ error: (i: { input: unknown }) => (i.input === undefined ? `is required when ${E.kind} is ${kind}` : undefined) });
const portSchema = z
  .string()
  .regex(/^\d+$/, 'must be a port number (1 to 65535)')
  .transform(Number)
  .pipe(z.number().int().min(1, 'must be a port number (1 to 65535)').max(65535, 'must be a port number (1 to 65535)'))
  .default(DEFAULT_ENDPOINT_PORT);
const ipv4 = (kind: string) => z.string(required(kind)).refine((v) => isIPv4(v), 'must be an IPv4 address');
const environmentSchema = z.discriminatedUnion(E.kind, [
  z.object({ [E.kind]: z.literal('secondary-ip'), [E.address]: ipv4('secondary-ip'), [E.port]: portSchema }),
  z.object({
    [E.kind]: z.literal('elastic-ip'),
    [E.allocationId]: z.string(required('elastic-ip')).regex(/^eipalloc-[0-9a-f]+$/, 'must be an allocation id like eipalloc-0123abcd'),
    [E.address]: z.string().refine((v) => isIPv4(v), 'must be an IPv4 address (the public IP)').optional(),
    [E.port]: portSchema,
  }),
  z.object({
    [E.kind]: z.literal('route53'),
    [E.hostedZoneId]: z.string(required('route53')).regex(/^(\/hostedzone\/)?[A-Z0-9]{1,32}$/, 'must be a hosted zone id like Z0123456789ABC'),
    [E.recordName]: z.string(required('route53')).min(1).max(255, 'must be a DNS name of at most 255 characters'),
    [E.ttlSeconds]: z
      .string()
      .regex(/^\d+$/, 'must be a whole number of seconds')
      .transform(Number)
      .pipe(z.number().int().max(172800, 'must be at most 172800 (2 days)'))
      .default(DEFAULT_ENDPOINT_TTL_SECONDS),
    [E.port]: portSchema,
  }),
  z.object({ [E.kind]: z.literal('none') }),
]);

/**
 * The client endpoint a deployment configured in the environment (`FTS_ENDPOINT_*`, see
 * {@link CLIENT_ENDPOINT_ENV}); undefined for kind `none` or no `FTS_ENDPOINT_KIND`.
 * ValidationError names every variable that is missing or malformed. Empty values count
 * as unset.
 */
export function clientEndpointFromEnvironment(env: NodeJS.ProcessEnv = process.env, clients: ClientEndpointClients = {}): ClientEndpoint | undefined {
  const vars: Record<string, string> = {};
  for (const name of Object.values(E)) {
    const value = env[name]?.trim();
    if (value) vars[name] = value;
  }
  if (vars[E.kind] === undefined) return undefined;
  if (!(CLIENT_ENDPOINT_KINDS as readonly string[]).includes(vars[E.kind])) {
    throw new ValidationError(`${E.kind} must be one of ${CLIENT_ENDPOINT_KINDS.join(', ')}, got ${JSON.stringify(vars[E.kind])}`);
  }
  const parsed = environmentSchema.safeParse(vars);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'environment'} ${i.message}`);
    throw new ValidationError(`invalid client endpoint configuration: ${issues.join('; ')}`, issues);
  }
  const c = parsed.data as Record<string, string | number | undefined>;
  const port = c[E.port] as number;
  switch (c[E.kind]) {
    case 'secondary-ip':
      return new SecondaryIpEndpoint({ address: c[E.address] as string, port, client: clients.ec2 });
    case 'elastic-ip':
      return new ElasticIpEndpoint({ allocationId: c[E.allocationId] as string, address: c[E.address] as string | undefined, port, client: clients.ec2 });
    case 'route53':
      return new Route53Endpoint({ hostedZoneId: c[E.hostedZoneId] as string, recordName: c[E.recordName] as string, ttlSeconds: c[E.ttlSeconds] as number, port, client: clients.route53 });
    default:
      return undefined;
  }
}
