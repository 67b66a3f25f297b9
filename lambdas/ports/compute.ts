/** EC2: where segment hosts run, and the coordinator's address. */

/** A segment host as EC2 describes it. */
export interface HostInfo {
  instanceId: string;
  /** Value of the host-name tag (the `hostname` column), or the private DNS name. */
  hostname: string;
  privateIp?: string;
  availabilityZone: string;
  placementGroup?: string;
  /** `cluster`, `spread` or `partition`. */
  placementStrategy?: 'cluster' | 'spread' | 'partition';
  partitionNumber?: number;
  /** EC2 instance state name (`running`, `stopped`, ...). */
  state: string;
  /** `ok`, `impaired`, `initializing`, `insufficient-data`, `not-applicable`, or `unknown`. */
  systemStatus: string;
  instanceStatus: string;
}

/** Finds hosts by tag. */
export interface Compute {
  /** Hosts carrying `tagKey=tagValue`, sorted by hostname. */
  discoverHosts(tagKey: string, tagValue: string): Promise<HostInfo[]>;
}
