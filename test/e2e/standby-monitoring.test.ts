/**
 * The coordinator's standby watched by the prober, end to end: real PostgreSQL (a
 * coordinator with its synchronous standby, one primary), the catalog in DynamoDB Local,
 * the prober in-process. The standby killed: the coordinator's commits wait at most for
 * the grace period plus an interval, `StandbyDown` is raised and the standby marked
 * down; restarted: back in sync (mode `s`, sync rep on). `ftsctl state -f` shows both
 * ends of the replication from the prober's memory throughout.
 */
import { Client } from 'pg';
import { killInstance } from '../../lambdas/adapters/local/host';
import { COORDINATOR_CONTENT, type SegmentRow } from '../../lambdas/core/model';
import type { ProbeAnswer } from '../../lambdas/core/probe';
import { formatState } from '../../cli/format';
import { LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { TEST_SETTINGS, testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(120_000);

let cluster: TestCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

const rowsOf = async (c: TestCluster) => {
  const rows = (await c.catalog.load(c.clusterId)).segments.filter((r) => r.content === COORDINATOR_CONTENT);
  return { coordinator: rows.find((r) => r.role === 'p')!, standby: rows.find((r) => r.role === 'm')! };
};
const rowState = (r: SegmentRow) => `${r.role}/${r.status}/${r.mode}`;
const stateF = async (c: TestCluster) => formatState(await c.catalog.load(c.clusterId), { standby: true });

/** One probe of the coordinator as the prober makes it (read-only here). */
async function probeCoordinator(c: TestCluster, coordinator: SegmentRow, standby: SegmentRow): Promise<ProbeAnswer> {
  const r = await c.probe.probe(coordinator, { ...(await c.catalog.loadSettings(c.clusterId)), probeRetries: 0 }, standby);
  if (!r.ok) throw new Error(`coordinator probe failed: ${r.message}`);
  return r;
}

test('standby killed: the coordinator keeps committing within the grace period plus an interval, StandbyDown, standby d; restarted: back in sync, sync rep on', async () => {
  cluster = await testCluster('standby', { hosts: 1, primariesPerHost: 1, mirroring: 'none', coordinator: true, standby: true });
  const c = cluster;
  const { coordinator, standby } = await rowsOf(c);
  expect([rowState(coordinator), rowState(standby)]).toEqual(['p/u/s', 'm/u/s']);
  c.startProber();

  // The prober keeps both ends of the replication; state -f shows them from the catalog.
  await waitFor('state -f showing the standby streaming in sync', async () => {
    const text = await stateF(c);
    return /WAL sender state += streaming\n/.test(text) && /Sync state += sync\n/.test(text) && /Standby WAL receiver += streaming, received to /.test(text) ? text : undefined;
  });

  const client = new Client({ host: coordinator.address, port: coordinator.port, user: LOCAL_SUPERUSER, database: 'postgres', statement_timeout: 60_000 });
  await client.connect();
  try {
    await client.query('CREATE TABLE IF NOT EXISTS standby_check (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
    await client.query('INSERT INTO standby_check DEFAULT VALUES'); // commits at once: the standby acknowledges

    const killedAt = Date.now();
    expect(await killInstance(standby.datadir)).toBe(true);
    // A synchronous commit waits for the standby until the prober marks it down and turns sync rep off.
    await client.query('INSERT INTO standby_check DEFAULT VALUES');
    const waitedMs = Date.now() - killedAt;
    // Grace period + one probe interval to notice, plus the round's own work (a probe, a catalog write, the reload): generous slack for a loaded machine.
    const boundMs = (TEST_SETTINGS.mirrorDownGracePeriodSeconds + TEST_SETTINGS.probeIntervalSeconds) * 1000 + 3000;
    expect(waitedMs).toBeLessThan(boundMs);

    await waitFor('StandbyDown', async () => (c.timeline.events.some((e) => e.level === 'metric' && e.message === 'StandbyDown') ? true : undefined), 10_000);
    const down = await rowsOf(c);
    expect([rowState(down.coordinator), rowState(down.standby)]).toEqual(['p/u/n', 'm/d/n']);
    expect((await probeCoordinator(c, coordinator, standby)).syncRepOn).toBe(false);
    expect((await c.catalog.history(c.clusterId)).some((h) => h.dbid === standby.dbid && /to m, d, and n: mirror dbid \d+ of content -1 not streaming/.test(h.description))).toBe(true);
    // The coordinator commits at once now.
    const started = Date.now();
    await client.query('INSERT INTO standby_check DEFAULT VALUES');
    expect(Date.now() - started).toBeLessThan(2000);
    await waitFor('state -f showing the standby gone', async () => {
      const text = await stateF(c);
      return /WAL sender state += absent\n/.test(text) && /Standby WAL receiver += unreachable: refused/.test(text) ? text : undefined;
    });

    // Restarted: it streams again, catches up, sync rep goes back on and the pair is marked in sync.
    await c.host.start(standby);
    await waitFor('standby back in sync', async () => {
      const now = await rowsOf(c);
      return rowState(now.coordinator) === 'p/u/s' && rowState(now.standby) === 'm/u/s' ? true : undefined;
    }, 60_000);
    const back = await probeCoordinator(c, coordinator, standby);
    expect(back).toMatchObject({ syncRepOn: true, mirror: { state: 'streaming', syncState: 'sync' } });
    expect((await c.catalog.load(c.clusterId)).status).toBe('up');
    await client.query('INSERT INTO standby_check DEFAULT VALUES');
    expect(Number((await client.query<{ n: string }>('SELECT count(*)::text AS n FROM standby_check')).rows[0].n)).toBe(4);
  } finally {
    await client.end().catch(() => undefined);
  }
});
