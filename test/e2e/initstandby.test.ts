/**
 * gpinitstandby end to end: real PostgreSQL 15 (a coordinator without a standby and one
 * primary), the catalog in DynamoDB Local, the prober in-process, InitStandby run from
 * its synthesized ASL with the real step code. A standby is added on host scdw2 (a fresh
 * port, a data directory under the cluster's): it streams, the prober marks the pair in
 * sync, `ftsctl state -f` shows it, and the coordinator commits with sync rep on. Bad
 * requests change nothing. `-r` removes it (sync rep off first, the standby stopped, its
 * slot dropped) and the coordinator commits on alone; the standby can then be added again.
 * After an activation (ActivateStandby), the old coordinator's directory is refused
 * untouched and a new standby on another host streams from the new coordinator.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { isRunning, killInstance } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { COORDINATOR_CONTENT, mirrorSlotName, type SegmentRow } from '../../lambdas/core/model';
import { formatState } from '../../cli/format';
import { LOCAL_ADDRESS, LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { activateStandbyRequest, runWorkflowLocally } from '../../bin/ftsctl';
import { executionNameFor } from '../../lambdas/ports/workflows';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(180_000);

let cluster: TestCluster;
let client: Client | undefined;

/** Starts `name`'s cluster (one primary, the coordinator, a standby or not) and its prober; stops both (and the test's client) after its tests. */
function clusterFor(name: string, standby: boolean): void {
  beforeAll(async () => {
    cluster = await testCluster(name, { hosts: 1, primariesPerHost: 1, mirroring: 'none', coordinator: true, standby });
    cluster.startProber();
  });
  afterAll(async () => {
    await client?.end().catch(() => undefined);
    client = undefined;
    await cluster?.destroy();
  });
}

const run = (input: Record<string, unknown>) => runWorkflowLocally(cluster, 'InitStandby', { clusterId: cluster.clusterId, pollSeconds: 1, ...input }, { waitMs: 200, retryIntervalMs: 0 });

const coordinatorRows = async () => {
  const rows = (await cluster.catalog.load(cluster.clusterId)).segments.filter((r) => r.content === COORDINATOR_CONTENT);
  return { coordinator: rows.find((r) => r.role === 'p') as SegmentRow, standby: rows.find((r) => r.role === 'm') };
};
const rowState = (r: SegmentRow | undefined) => (r ? `${r.role}/${r.status}/${r.mode}` : 'none');

/** One probe of the coordinator as the prober makes it (read-only). */
async function probeCoordinator(standby?: SegmentRow) {
  const { coordinator } = await coordinatorRows();
  const r = await cluster.probe.probe(coordinator, { ...(await cluster.catalog.loadSettings(cluster.clusterId)), probeRetries: 0 }, standby);
  if (!r.ok) throw new Error(`coordinator probe failed: ${r.message}`);
  return r;
}

const inSync = () =>
  waitFor('the coordinator and its standby in sync', async () => {
    const rows = await coordinatorRows();
    return rowState(rows.coordinator) === 'p/u/s' && rowState(rows.standby) === 'm/u/s' ? true : undefined;
  }, 60_000);

/** A commit on the coordinator, and how long it took (a synchronous one waits for the standby). */
async function commit(): Promise<number> {
  if (!client) {
    const { coordinator } = await coordinatorRows();
    client = new Client({ host: coordinator.address, port: coordinator.port, user: LOCAL_SUPERUSER, database: 'postgres', statement_timeout: 30_000 });
    await client.connect();
    await client.query('CREATE TABLE IF NOT EXISTS initstandby_check (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
  }
  const started = Date.now();
  await client.query('INSERT INTO initstandby_check DEFAULT VALUES');
  return Date.now() - started;
}

describe('on a coordinator without a standby', () => {
  clusterFor('initstandby', false);
  let datadir: string;
  let port: number;

  test('a standby added on scdw2 streams, the prober marks the pair in sync, state -f shows it, the coordinator commits with sync rep on', async () => {
    expect(await commit()).toBeLessThan(5000);
    datadir = join(cluster.state.dir, 'scdw2', 'coordinator', 'gpseg-1');
    port = await freePort();
    const result = await run({ hostname: 'scdw2', address: LOCAL_ADDRESS, port, datadir });
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    const out = result.output as { plan: { dbid: number; warnings: string[] }; finish: { message: string } };
    expect(out.plan.warnings).toEqual([expect.stringMatching(/address 127.0.0.1 is the coordinator's: both run on one machine \(a local cluster\)/)]);
    expect(out.finish.message).toMatch(/sync rep is on/);

    const { coordinator, standby } = await coordinatorRows();
    expect(standby).toMatchObject({ dbid: out.plan.dbid, hostname: 'scdw2', address: LOCAL_ADDRESS, port, datadir, role: 'm', preferredRole: 'm', status: 'u' });
    expect(standby?.systemIdentifier).toBe(coordinator.systemIdentifier);
    const receiver = await cluster.control.walReceiver(standby as SegmentRow);
    expect(receiver).toMatchObject({ inRecovery: true, state: 'streaming', senderPort: coordinator.port });

    await inSync(); // the prober's doing, once the standby has caught up
    // Its slot is in use: never dropped under a streaming standby.
    await expect(cluster.control.dropSlot(coordinator, (standby as SegmentRow).dbid)).rejects.toThrow(/is in use .*its standby still streams/);
    const probe = await probeCoordinator(standby);
    expect(probe.syncRepOn).toBe(true);
    expect(probe.mirror).toMatchObject({ state: 'streaming', syncState: 'sync' });
    // A synchronous commit: the standby acknowledges it at once.
    expect(await commit()).toBeLessThan(5000);

    const text = await waitFor('state -f showing the new standby', async () => {
      const t = formatState(await cluster.catalog.load(cluster.clusterId), { standby: true });
      return t.includes('scdw2') ? t : undefined;
    });
    expect(text).toContain(String(port));

    const history = (await cluster.catalog.history(cluster.clusterId)).map((h) => h.description);
    expect(history).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^gpinitstandby: add standby dbid ${out.plan.dbid} on scdw2:${port} datadir `))]));
  });

  test('bad requests are refused with a clear error and change nothing', async () => {
    const before = await cluster.catalog.load(cluster.clusterId);
    const again = await run({ hostname: 'scdw3', address: LOCAL_ADDRESS, port: await freePort(), datadir: join(cluster.state.dir, 'scdw3', 'gpseg-1') });
    expect(again).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(again.cause).toMatch(/has a standby already: dbid \d+ on scdw2:\d+ .*remove it first with gpinitstandby -r/);
    const typo = await run({ hostname: 'scdw2', prot: 5 });
    expect(typo).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(typo.cause).toMatch(/Unrecognized key: "prot"/);
    const unknown = await runWorkflowLocally(cluster, 'InitStandby', { clusterId: 'no-such-cluster', remove: true }, { retryIntervalMs: 0 });
    expect(unknown).toMatchObject({ status: 'FAILED', error: 'InvalidInput', cause: 'cluster no-such-cluster is not in the catalog' });
    const after = await cluster.catalog.load(cluster.clusterId);
    expect(after.segments).toEqual(before.segments);
    expect(after.pendingOperations).toEqual([]);
  });

  test('-r removes the standby: sync rep off first, the standby stopped, its slot dropped, its row gone; the coordinator commits alone', async () => {
    const { standby } = await coordinatorRows();
    const dbid = (standby as SegmentRow).dbid;
    const result = await run({ remove: true });
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    expect((result.output as { removeStandby: { message: string } }).removeStandby.message).toMatch(new RegExp(`standby dbid ${dbid} .* removed; its replication slot ${mirrorSlotName(dbid)} on coordinator dbid \\d+ dropped`));

    const rows = await coordinatorRows();
    expect(rows.standby).toBeUndefined();
    expect(rowState(rows.coordinator)).toBe('p/u/n');
    expect(isRunning(datadir)).toBe(false);
    const probe = await probeCoordinator();
    expect(probe.syncRepOn).toBe(false);
    const slots = await (client as Client).query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots');
    expect(slots.rows.map((r) => r.slot_name)).not.toContain(mirrorSlotName(dbid));
    expect(await commit()).toBeLessThan(2000);
    expect((await cluster.catalog.history(cluster.clusterId)).map((h) => h.description)).toEqual(
      expect.arrayContaining([expect.stringMatching(new RegExp(`^gpinitstandby -r: standby dbid ${dbid} on scdw2:${port} datadir .* removed`))]),
    );
  });

  test('the standby added again in the same place: its old data directory is its own, copied anew, in sync again', async () => {
    const result = await run({ hostname: 'scdw2', address: LOCAL_ADDRESS, port, datadir });
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    await inSync();
    expect(await commit()).toBeLessThan(5000);
  });
});

describe('after an activation', () => {
  clusterFor('initstandby-activated', true);

  test("the old coordinator's directory is refused untouched; a new standby on scdw2 streams from the new coordinator in sync; -r removes it", async () => {
    await inSync();
    const { coordinator: old, standby } = await coordinatorRows();
    expect(await killInstance(old.datadir)).toBe(true);
    const request = activateStandbyRequest(cluster.clusterId, (await cluster.catalog.load(cluster.clusterId)).version, {});
    const activation = await runWorkflowLocally(cluster, 'ActivateStandby', request, { executionName: executionNameFor('ActivateStandby', request as never), retryIntervalMs: 0 });
    expect(activation).toMatchObject({ status: 'SUCCEEDED' });
    const now = await coordinatorRows();
    expect(now).toEqual({ coordinator: expect.objectContaining({ dbid: (standby as SegmentRow).dbid, role: 'p' }), standby: undefined });

    // gpinitstandby onto the old coordinator's host, port and directory: the copy will not empty another dbid's data directory.
    const refused = await run({ hostname: old.hostname, address: LOCAL_ADDRESS, port: old.port, datadir: old.datadir });
    expect(refused).toMatchObject({ status: 'FAILED', error: 'InitStandbyFailed' });
    expect(refused.cause).toMatch(new RegExp(`refusing to copy into ${old.datadir} on ${old.hostname}: .*it is the data directory of dbid ${old.dbid}, not of dbid \\d+.*nothing was deleted.*Its row was removed from the catalog and content -1 released`));
    expect(existsSync(join(old.datadir, 'PG_VERSION'))).toBe(true);
    expect((await coordinatorRows()).standby).toBeUndefined();
    expect((await cluster.catalog.load(cluster.clusterId)).pendingOperations).toEqual([]);

    const port = await freePort();
    const added = await run({ hostname: 'scdw2', address: LOCAL_ADDRESS, port, datadir: join(cluster.state.dir, 'scdw2', 'coordinator', 'gpseg-1') });
    expect(added).toMatchObject({ status: 'SUCCEEDED' });
    await inSync();
    const rows = await coordinatorRows();
    expect(rows.standby).toMatchObject({ hostname: 'scdw2', port });
    expect(await cluster.control.walReceiver(rows.standby as SegmentRow)).toMatchObject({ state: 'streaming', senderPort: rows.coordinator.port });
    expect((await probeCoordinator(rows.standby)).syncRepOn).toBe(true);
    expect(await commit()).toBeLessThan(5000);
    expect(formatState(await cluster.catalog.load(cluster.clusterId), { standby: true })).toContain('scdw2');

    expect(await run({ remove: true })).toMatchObject({ status: 'SUCCEEDED' });
    expect((await coordinatorRows()).standby).toBeUndefined();
    expect(await commit()).toBeLessThan(2000);
  });
});
