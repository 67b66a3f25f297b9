/**
 * Compute over EC2: finds the segment hosts of a cluster by tag, with what the placement
 * planner needs (AZ, placement group, its strategy and partition) and the EC2 status
 * checks the prober can use as a second opinion on a host.
 */
import {
  DescribePlacementGroupsCommand,
  EC2Client,
  paginateDescribeInstances,
  paginateDescribeInstanceStatus,
  type Instance,
  type InstanceStatus,
} from '@aws-sdk/client-ec2';
import type { Compute, HostInfo } from '../../ports/compute';

/** Tag whose value is a host's `hostname` in the catalog, by default. */
export const DEFAULT_HOSTNAME_TAG = 'fts:hostname';
/** States of a host that still exists; terminated and shutting-down hosts are gone for good. */
export const DISCOVERED_STATES = ['pending', 'running', 'stopping', 'stopped'];
/** DescribeInstanceStatus takes at most 100 instance ids per call. */
const STATUS_BATCH = 100;

/** Options of {@link Ec2Compute}. */
export interface Ec2ComputeOptions {
  /** Tag holding the host name; default `fts:hostname`. Hosts without it use their private DNS name. */
  hostnameTag?: string;
}

/** Discovers segment hosts with DescribeInstances, DescribePlacementGroups and DescribeInstanceStatus. */
export class Ec2Compute implements Compute {
  private readonly hostnameTag: string;

  /** `client` defaults to one with the SDK's standard retry, 5 attempts. */
  constructor(
    private readonly client: EC2Client = new EC2Client({ maxAttempts: 5 }),
    options: Ec2ComputeOptions = {},
  ) {
    this.hostnameTag = options.hostnameTag ?? DEFAULT_HOSTNAME_TAG;
  }

  /**
   * Hosts tagged `tagKey=tagValue` that are pending, running, stopping or stopped, sorted
   * by hostname (then instance id). Stopped hosts are kept: a stopped segment host is a
   * fact the operator must see, not a host that left the cluster.
   */
  async discoverHosts(tagKey: string, tagValue: string): Promise<HostInfo[]> {
    const instances: Instance[] = [];
    const pages = paginateDescribeInstances(
      { client: this.client },
      {
        Filters: [
          { Name: `tag:${tagKey}`, Values: [tagValue] },
          { Name: 'instance-state-name', Values: [...DISCOVERED_STATES] },
        ],
      },
    );
    for await (const page of pages) {
      for (const reservation of page.Reservations ?? []) {
        for (const instance of reservation.Instances ?? []) {
          if (instance.InstanceId) instances.push(instance);
        }
      }
    }
    if (instances.length === 0) return [];

    const [strategies, statuses] = await Promise.all([this.placementStrategies(instances), this.statusChecks(instances)]);
    return instances
      .map((instance) => this.toHost(instance, strategies, statuses))
      .sort((a, b) => compare(a.hostname, b.hostname) || compare(a.instanceId, b.instanceId));
  }

  /** Placement group name -> strategy, for the groups the instances are in. */
  private async placementStrategies(instances: Instance[]): Promise<Map<string, string>> {
    const names = [...new Set(instances.map((i) => i.Placement?.GroupName).filter((n): n is string => !!n))].sort();
    const strategies = new Map<string, string>();
    if (names.length === 0) return strategies;
    const out = await this.client.send(new DescribePlacementGroupsCommand({ GroupNames: names }));
    for (const group of out.PlacementGroups ?? []) {
      if (group.GroupName && group.Strategy) strategies.set(group.GroupName, group.Strategy);
    }
    return strategies;
  }

  /** Instance id -> status checks; IncludeAllInstances so stopped hosts are reported too. */
  private async statusChecks(instances: Instance[]): Promise<Map<string, InstanceStatus>> {
    const ids = instances.map((i) => i.InstanceId as string);
    const statuses = new Map<string, InstanceStatus>();
    for (let i = 0; i < ids.length; i += STATUS_BATCH) {
      const pages = paginateDescribeInstanceStatus(
        { client: this.client },
        { InstanceIds: ids.slice(i, i + STATUS_BATCH), IncludeAllInstances: true },
      );
      for await (const page of pages) {
        for (const status of page.InstanceStatuses ?? []) {
          if (status.InstanceId) statuses.set(status.InstanceId, status);
        }
      }
    }
    return statuses;
  }

  private toHost(instance: Instance, strategies: Map<string, string>, statuses: Map<string, InstanceStatus>): HostInfo {
    const instanceId = instance.InstanceId as string;
    const tagged = instance.Tags?.find((t) => t.Key === this.hostnameTag)?.Value;
    const group = instance.Placement?.GroupName || undefined;
    const strategy = group ? strategies.get(group) : undefined;
    const status = statuses.get(instanceId);
    const host: HostInfo = {
      instanceId,
      hostname: tagged || instance.PrivateDnsName || instanceId,
      availabilityZone: instance.Placement?.AvailabilityZone ?? '',
      state: instance.State?.Name ?? 'unknown',
      systemStatus: status?.SystemStatus?.Status ?? 'unknown',
      instanceStatus: status?.InstanceStatus?.Status ?? 'unknown',
    };
    if (instance.PrivateIpAddress) host.privateIp = instance.PrivateIpAddress;
    if (group) host.placementGroup = group;
    if (strategy === 'cluster' || strategy === 'spread' || strategy === 'partition') host.placementStrategy = strategy;
    // EC2 reports a partition number only for partition placement groups.
    if (instance.Placement?.PartitionNumber !== undefined) host.partitionNumber = instance.Placement.PartitionNumber;
    return host;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
