/**
 * gpactivatestandby end to end (real PostgreSQL 15 coordinator and standby with sync rep,
 * the catalog in DynamoDB Local, ActivateStandby run from its synthesized ASL with the
 * real step code, the local client endpoint forwarding TCP to the acting coordinator).
 * A workload writes through the endpoint the whole time, as an application would, and
 * every acknowledged commit is looked for on the coordinator at the end.
 */
import { killInstance } from '../../lambdas/adapters/local/host';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import { COORDINATOR_CONTENT, type SegmentRow } from '../../lambdas/core/model';
import { Workload } from '../../cli/failover-drill';
import { LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { activateStandbyRequest, runWorkflowLocally } from '../../bin/ftsctl';
import { executionNameFor } from '../../lambdas/ports/workflows';
import { TEST_SETTINGS, testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(240_000);

/** One primary without a mirror, and the coordinator pair: what these tests are about. */
const LAYOUT = { hosts: 1, mirroring: 'none', coordinator: true, standby: true };
const COORDINATOR = 1;

const coordinatorRows = async (cluster: TestCluster): Promise<SegmentRow[]> =>
  (await cluster.catalog.load(cluster.clusterId)).segments.filter((r) => r.content === COORDINATOR_CONTENT);

async function endpointWorkload(cluster: TestCluster): Promise<Workload> {
  const endpoint = await cluster.endpoint!.describe();
  const workload = new Workload(cluster.catalog, cluster.clusterId, COORDINATOR_CONTENT, { address: endpoint.address, port: endpoint.port });
  await workload.prepare();
  workload.start();
  await waitFor('first commits through the endpoint', async () => (workload.acks.length >= 20 ? true : undefined));
  return workload;
}

async function activate(cluster: TestCluster, options: { force?: boolean; ignoreLag?: boolean } = {}) {
  const snapshot = await cluster.catalog.load(cluster.clusterId);
  const input = activateStandbyRequest(cluster.clusterId, snapshot.version, options);
  return runWorkflowLocally(cluster, 'ActivateStandby', input, { executionName: executionNameFor('ActivateStandby', input as never), retryIntervalMs: 0 });
}

/** A commit on `row` with synchronous_commit = local (past any sync rep setting): what a client of a zombie coordinator would do. */
const localCommit = (row: SegmentRow) =>
  withSegmentClient(row, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 5000, statementTimeoutMs: 5000 }, async (c) => {
    await c.query('SET synchronous_commit = local');
    await c.query('CREATE TABLE IF NOT EXISTS zombie_writes (id int)');
    await c.query('INSERT INTO zombie_writes VALUES (1)');
  });

describe('ActivateStandby by hand', () => {
  let cluster: TestCluster;
  let workload: Workload | undefined;

  beforeAll(async () => {
    cluster = await testCluster('activate', LAYOUT);
  });
  afterAll(async () => {
    await workload?.stop();
    await cluster?.destroy();
  });

  it('refuses while the coordinator answers and changes nothing but the history', async () => {
    workload = await endpointWorkload(cluster);
    const before = await cluster.catalog.load(cluster.clusterId);
    const result = await activate(cluster);
    expect(result).toMatchObject({ status: 'FAILED', error: 'ActivationRefused' });
    expect(result.cause).toMatch(/coordinator dbid 1 answers/);
    const after = await cluster.catalog.load(cluster.clusterId);
    expect(after.segments).toEqual(before.segments);
    expect(after.pendingOperations).toEqual([]);
    const acked = workload.acks.length;
    await waitFor('more commits', async () => (workload!.acks.length > acked + 10 ? true : undefined));
  });

  it.each([
    ['a forced flag that is not a boolean', { force: 'yes' }],
    ['an unknown key', { standby: 2 }],
    ['a dbid that is not the standby', { standbyDbid: 2 }],
    ['an automatic start while the setting is off', { automatic: true }],
    ['an automatic start that is forced', { automatic: true, force: true }],
    ['a catalog version from the future', { catalogVersion: 10_000 }],
  ])('rejects %s as InvalidInput and changes nothing', async (_what, extra) => {
    const before = await cluster.catalog.load(cluster.clusterId);
    const result = await runWorkflowLocally(cluster, 'ActivateStandby', { clusterId: cluster.clusterId, ...extra }, { retryIntervalMs: 0 });
    expect(result).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(result.cause).toBeTruthy();
    const after = await cluster.catalog.load(cluster.clusterId);
    expect(after.version).toBe(before.version);
  });

  it('activates the standby after the coordinator is killed under writes; writes resume through the same endpoint with no commit lost', async () => {
    const [old, standby] = (await coordinatorRows(cluster)).sort((a, b) => a.dbid - b.dbid);
    expect(old).toMatchObject({ dbid: COORDINATOR, role: 'p', mode: 's' });
    await killInstance(old.datadir);
    const killedAt = Date.now();
    const result = await activate(cluster);
    expect(result.status).toBe('SUCCEEDED');
    const rows = await coordinatorRows(cluster);
    expect(rows).toEqual([expect.objectContaining({ dbid: standby.dbid, role: 'p', preferredRole: 'p', status: 'u', mode: 'n' })]);
    await waitFor('a commit through the endpoint on the new coordinator', async () => workload!.firstAckBy(standby.dbid, killedAt));
    await workload!.stop();
    const { lost, acknowledged } = await workload!.lostCommits();
    expect(acknowledged).toBeGreaterThan(20);
    expect(lost).toEqual([]);
    const history = await cluster.catalog.history(cluster.clusterId);
    expect(history.map((h) => h.description).join('\n')).toMatch(/gpactivatestandby: coordinator dbid 1 .* removed[\s\S]*activation of dbid \d+ complete/);
    expect((await cluster.catalog.load(cluster.clusterId)).pendingOperations).toEqual([]);
  });

  it('leaves the old coordinator fenced: restarted by hand it comes up read-only', async () => {
    const old = cluster.state.rows.find((r) => r.dbid === COORDINATOR)!;
    await cluster.host.start(old);
    await expect(localCommit(old)).rejects.toThrow(/read-only|recovery/);
  });
});

describe('ActivateStandby -f', () => {
  let cluster: TestCluster;
  let workload: Workload | undefined;

  beforeAll(async () => {
    cluster = await testCluster('activate-force', LAYOUT);
  });
  afterAll(async () => {
    await workload?.stop();
    await cluster?.destroy();
  });

  it('fences the coordinator that answers, then activates; no commit lost', async () => {
    workload = await endpointWorkload(cluster);
    const [old, standby] = (await coordinatorRows(cluster)).sort((a, b) => a.dbid - b.dbid);
    const startedAt = Date.now();
    const result = await activate(cluster, { force: true });
    expect(result.status).toBe('SUCCEEDED');
    // The fence stopped it; a restart by hand (systemd, an operator) comes up read-only.
    await expect(localCommit(old)).rejects.toThrow();
    await cluster.host.start(old);
    await expect(localCommit(old)).rejects.toThrow(/read-only|recovery/);
    await waitFor('a commit through the endpoint on the new coordinator', async () => workload!.firstAckBy(standby.dbid, startedAt));
    await workload!.stop();
    const { lost } = await workload!.lostCommits();
    expect(lost).toEqual([]);
  });
});

describe('automatic activation', () => {
  let cluster: TestCluster;
  let workload: Workload | undefined;

  beforeAll(async () => {
    cluster = await testCluster('activate-auto', { ...LAYOUT, settings: { ...TEST_SETTINGS, autoActivateStandby: true } });
  });
  afterAll(async () => {
    await workload?.stop();
    await cluster?.destroy();
  });

  it('activates the standby without a command when the coordinator dies, losing no commit', async () => {
    cluster.startProber({ endpoint: cluster.endpoint });
    workload = await endpointWorkload(cluster);
    const [old, standby] = (await coordinatorRows(cluster)).sort((a, b) => a.dbid - b.dbid);
    await waitFor('the pair in sync', async () => ((await coordinatorRows(cluster)).every((r) => r.mode === 's') ? true : undefined));
    await killInstance(old.datadir);
    const killedAt = Date.now();
    await waitFor('the standby activated', async () => ((await coordinatorRows(cluster)).some((r) => r.dbid === standby.dbid && r.role === 'p') ? true : undefined), 60_000);
    await waitFor('a commit through the endpoint on the new coordinator', async () => workload!.firstAckBy(standby.dbid, killedAt), 30_000);
    await workload!.stop();
    const { lost } = await workload!.lostCommits();
    expect(lost).toEqual([]);
    // Clients commit through the endpoint before the workflow's last step has released content -1.
    await waitFor('the activation complete', async () =>
      (await cluster.catalog.history(cluster.clusterId)).some((h) => /activation of dbid \d+ complete \(automatic\)/.test(h.description)) ? true : undefined,
    );
    expect((await cluster.catalog.load(cluster.clusterId)).pendingOperations).toEqual([]);
  });
});
