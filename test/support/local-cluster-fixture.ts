/**
 * A local cluster for end-to-end tests: real PostgreSQL instances (2 segment hosts, one
 * primary each, group mirroring, sync rep), the catalog in the test run's DynamoDB Local,
 * and the prober run in-process (runProber + the synthesized PromoteMirror definition)
 * with its events collected in a Timeline. With a coordinator, `endpoint` is the client
 * endpoint (its forwarder runs in-process). `destroy()` stops the probers and the
 * endpoint and removes everything; call it from afterEach/afterAll.
 *
 * The cluster's probe, control and host adapters connect as the control plane's role
 * of scripts/fts-role.sql (LOCAL_FTS_ROLE), not as a superuser: `testCluster` checks
 * that the role is no superuser, so every test built on it shows that the prober and
 * the workflows need none.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { upLocalCluster, downLocalCluster, LOCAL_FTS_ROLE, type LocalCluster } from '../../cli/local-cluster';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import { startLocalProber, timelineTelemetry, type LocalProber, type LocalProberOptions } from '../../cli/local-prober';
import { Timeline } from '../../cli/failover-drill';
import type { SegmentRow } from '../../lambdas/core/model';

/**
 * Settings for tests: a dead primary is declared failed after 2 attempts 0.2 s apart
 * (1 s timeout each), rounds every second, a 2 s mirror-down grace period.
 */
export const TEST_SETTINGS = { probeIntervalSeconds: 1, probeTimeoutSeconds: 1, probeRetries: 1, probeRetryDelaySeconds: 0.2, mirrorDownGracePeriodSeconds: 2 };

/** A test cluster and its probers. */
export interface TestCluster extends LocalCluster {
  clusterId: string;
  timeline: Timeline;
  /** Starts an in-process prober (several may run: they compete for the lease). */
  startProber(options?: Partial<LocalProberOptions>): LocalProber;
  /** The catalog row of a dbid, as the catalog has it now. */
  row(dbid: number): Promise<SegmentRow>;
  destroy(): Promise<void>;
}

let counter = 0;

/** Builds a cluster named after the test; `spec` overrides the default layout. */
export async function testCluster(name: string, spec: Record<string, unknown> = {}): Promise<TestCluster> {
  const clusterId = `${name}-${process.pid}-${++counter}`;
  const dir = await mkdtemp(join(tmpdir(), `fts-e2e-${name}-`));
  const cluster = await upLocalCluster(
    { clusterId, hosts: 2, primariesPerHost: 1, mirroring: 'group', coordinator: false, standby: false, settings: TEST_SETTINGS, ...spec },
    { dir, dynamoEndpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB, backgroundEndpoint: false },
  );
  try {
    // What the adapters connect as must be no superuser (superuser is an attribute, never inherited).
    const first = cluster.state.rows.find((r) => r.role === 'p')!;
    const [who] = await withSegmentClient(first, trustCredentials(LOCAL_FTS_ROLE), { connectTimeoutMs: 5000 }, async (c) =>
      (await c.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user')).rows,
    );
    if (!who || who.rolsuper) throw new Error(`the test cluster's adapters connect as ${LOCAL_FTS_ROLE}, which must exist and be no superuser`);
  } catch (e) {
    await cluster.stopEndpoint().catch(() => undefined);
    await downLocalCluster(dir);
    throw e;
  }
  const timeline = new Timeline();
  const probers: LocalProber[] = [];
  return {
    ...cluster,
    clusterId,
    timeline,
    startProber(options = {}) {
      const prober = startLocalProber({
        clusterId,
        catalog: cluster.catalog,
        probe: cluster.probe,
        control: cluster.control,
        host: cluster.host,
        telemetry: timelineTelemetry(timeline.push),
        retryIntervalMs: 0,
        ...options,
      });
      probers.push(prober);
      return prober;
    },
    async row(dbid) {
      const row = (await cluster.catalog.load(clusterId)).segments.find((r) => r.dbid === dbid);
      if (!row) throw new Error(`no dbid ${dbid}`);
      return row;
    },
    async destroy() {
      await Promise.all(probers.map((p) => p.stop().catch(() => undefined)));
      await cluster.stopEndpoint().catch(() => undefined);
      await downLocalCluster(dir);
    },
  };
}
