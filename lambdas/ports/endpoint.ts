/**
 * The client endpoint: the one address clients connect to, which follows the acting
 * coordinator (a secondary private IP, an Elastic IP or a Route 53 record in AWS; a TCP
 * forwarder on a stable loopback port locally). ActivateStandby moves it after the
 * catalog names the new coordinator, then commits a row through it.
 *
 * Consistency: `moveTo` is idempotent (moving to where it points already is a no-op)
 * and may be called again after a crash at any point; the last call wins.
 */
import type { SegmentRow } from '../core/model';

/** Where clients connect, and where that leads now. */
export interface EndpointDescription {
  /** The kind of endpoint (`secondary-ip`, `elastic-ip`, `route53`, `local`). */
  kind: string;
  /** The address clients use: an IP or a DNS name. */
  address: string;
  /** The port clients use. */
  port: number;
  /** The instance it leads to now (address and port of the coordinator behind it), when the adapter can tell. */
  target?: { address: string; port: number; instanceId?: string };
}

/** The client endpoint of a cluster. */
export interface ClientEndpoint {
  /** Where clients connect and where that leads now. */
  describe(): Promise<EndpointDescription>;
  /**
   * Points the endpoint at `coordinator` (its address and port, or its EC2 instance and
   * network interface) and returns once new connections reach it. Idempotent.
   */
  moveTo(coordinator: SegmentRow): Promise<void>;
}
