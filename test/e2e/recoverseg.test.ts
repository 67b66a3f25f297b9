/**
 * gprecoverseg end to end on one cluster (real PostgreSQL 15 pairs with sync rep, the
 * catalog in DynamoDB Local, the prober in-process, RecoverSegments and Rebalance run
 * from their synthesized ASL with the real step code), in order: a failover under
 * writes, incremental recovery, rebalance, the guards, full recovery and its refusals.
 * Each test starts from the state the one before left; every acknowledged commit is
 * counted throughout.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRunning, killInstance } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import { HostCommandError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { SegmentHost } from '../../lambdas/ports/segments';
import { killAndMeasure, longestStallMs, Workload, WORKLOAD_TABLE } from '../../cli/failover-drill';
import { LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { runWorkflowLocally } from '../../bin/ftsctl';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(240_000);

// The default test layout: content 0 = primary dbid 2 (sdw1) + mirror 4 (sdw2); content 1 = primary 3 (sdw2) + mirror 5 (sdw1).
const P0 = 2;
const M0 = 4;
const P1 = 3;
const M1 = 5;

let cluster: TestCluster;
let workload: Workload;

beforeAll(async () => {
  cluster = await testCluster('recoverseg');
  cluster.startProber();
  workload = new Workload(cluster.catalog, cluster.clusterId, 0);
  await workload.prepare();
  workload.start();
});

afterAll(async () => {
  await workload?.stop();
  await cluster?.destroy();
});

const run = (kind: 'RecoverSegments' | 'Rebalance', input: Record<string, unknown>) =>
  runWorkflowLocally(cluster, kind, { clusterId: cluster.clusterId, pollSeconds: 1, ...input }, { waitMs: 200, retryIntervalMs: 0 });

const state = async (dbid: number) => {
  const r = await cluster.row(dbid);
  return `${r.role}/${r.status}/${r.mode}`;
};
const waitState = (dbid: number, want: string, timeoutMs = 60_000) => waitFor(`dbid ${dbid} ${want}`, async () => ((await state(dbid)) === want ? true : undefined), timeoutMs);

/** Every acknowledged commit of the workload is on `row` (a standby is read once it has replayed them). */
async function commitsOn(row: SegmentRow): Promise<number[]> {
  const want = workload.acks.map((a) => a.id); // those acknowledged so far
  return waitFor(
    `every acknowledged commit on dbid ${row.dbid}`,
    async () => {
      const ids = await withSegmentClient(row, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, async (c) => new Set((await c.query<{ id: string }>(`SELECT id FROM ${WORKLOAD_TABLE}`)).rows.map((r) => Number(r.id))));
      const missing = want.filter((id) => !ids.has(id));
      return missing.length === 0 ? missing : undefined;
    },
    30_000,
  );
}

test('after a failover under writes, incremental recovery brings the old primary back as a mirror; the prober marks the pair in sync; no commit lost', async () => {
  await sleep(500);
  const m = await killAndMeasure(cluster.catalog, cluster.clusterId, workload, cluster.timeline);
  expect(m).toMatchObject({ killedDbid: P0, newPrimaryDbid: M0 });
  await waitFor('promotion complete', async () => ((await cluster.catalog.load(cluster.clusterId)).pendingPromotions.length === 0 ? true : undefined));
  expect(await state(P0)).toBe('m/d/n');

  const result = await run('RecoverSegments', {});
  expect(result).toMatchObject({ status: 'SUCCEEDED' });
  expect((result.output as { summarize: unknown }).summarize).toMatchObject({ complete: true, done: [{ content: 0, dbid: P0 }], failed: [], skipped: [] });
  expect(await state(P0)).toMatch(/^m\/u\/[ns]$/);
  await waitState(P0, 'm/u/s');
  await waitState(M0, 'p/u/s');
  const snapshot = await cluster.catalog.load(cluster.clusterId);
  expect(snapshot.status).toBe('up');
  expect(snapshot.pendingOperations).toEqual([]);
  expect((await cluster.catalog.history(cluster.clusterId)).some((h) => h.dbid === P0 && /to m, u, and n: gprecoverseg rebuilt it \(rewind\)/.test(h.description))).toBe(true);
  expect((await workload.lostCommits()).lost).toEqual([]);
  expect(await commitsOn(await cluster.row(P0))).toEqual([]);
});

test('a second run finds nothing to recover and succeeds without touching anything', async () => {
  const before = await cluster.catalog.load(cluster.clusterId);
  const result = await run('RecoverSegments', {});
  expect(result.status).toBe('SUCCEEDED');
  expect((result.output as { summarize: unknown }).summarize).toMatchObject({ complete: true, done: [], failed: [], skipped: [] });
  expect((await cluster.catalog.load(cluster.clusterId)).segments).toEqual(before.segments);
});

test('bad console input fails with a clear error and changes nothing', async () => {
  const before = await cluster.catalog.load(cluster.clusterId);
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['RecoverSegments', { contents: [99] }, /content 99 is not in the catalog/],
    ['RecoverSegments', { mode: 'fast' }, /mode/],
    ['RecoverSegments', { recoverConfig: 'sdw1|x|/data' }, /line 1: the failed port "x" is not a port/],
    ['RecoverSegments', { catalogVersion: before.version + 100 }, /newer than the catalog/],
    ['RecoverSegments', { dbid: 2 }, /Unrecognized key/i],
    ['Rebalance', { replayLagMB: -1 }, /replayLagMB/],
  ];
  for (const [kind, input, message] of cases) {
    const result = await run(kind as 'RecoverSegments', input);
    expect({ input, status: result.status, error: result.error }).toEqual({ input, status: 'FAILED', error: 'InvalidInput' });
    expect(result.cause).toMatch(message);
  }
  expect(await cluster.catalog.load(cluster.clusterId)).toMatchObject({ version: before.version, segments: before.segments });
});

test('rebalance refuses a pair whose mirror lags in replay, and changes nothing', async () => {
  const mirror = await cluster.row(P0); // the mirror now; primary by preference
  await withSegmentClient(mirror, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, (c) => c.query('SELECT pg_wal_replay_pause()'));
  try {
    await sleep(1000); // writes go on: WAL received, not replayed
    const result = await run('Rebalance', { replayLagMB: 0 });
    expect(result).toMatchObject({ status: 'FAILED', error: 'RebalanceIncomplete' });
    expect(result.cause).toMatch(/content 0 left alone: mirror dbid 2 has \d+ bytes of WAL still to replay, more than the 0 allowed/);
    expect(await state(M0)).toBe('p/u/s');
    expect(await state(P0)).toBe('m/u/s');
  } finally {
    await withSegmentClient(mirror, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, (c) => c.query('SELECT pg_wal_replay_resume()'));
  }
});

test('rebalance under writes: a planned switchover restores the preferred roles, loses no commit, and the write gap is short', async () => {
  const before = Date.now();
  const result = await run('Rebalance', {});
  const after = Date.now();
  expect(result).toMatchObject({ status: 'SUCCEEDED' });
  expect((result.output as { summarize: unknown }).summarize).toMatchObject({ complete: true, done: [{ content: 0, dbid: M0 }], failed: [] });
  expect(await state(P0)).toBe('p/u/n');
  await waitState(M0, 'm/u/s');
  await waitState(P0, 'p/u/s');
  await sleep(500);
  expect(workload.acks.filter((a) => a.dbid === P0 && a.at > before).length).toBeGreaterThan(10);
  expect((await workload.lostCommits()).lost).toEqual([]);
  expect(await commitsOn(await cluster.row(M0))).toEqual([]);
  // Measured, not asserted against a time: the benchmark reports it.
  expect(longestStallMs(workload.acks, before, after)).toBeGreaterThan(0);
  expect((await cluster.catalog.load(cluster.clusterId)).pendingFences).toEqual([]);
});

test('full recovery after the mirror\'s data directory is removed; refused (nothing deleted) when the directory holds something else', async () => {
  const mirror = await cluster.row(M1);
  await killInstance(mirror.datadir);
  await waitState(M1, 'm/d/n');
  await rm(mirror.datadir, { recursive: true, force: true });

  // A directory with a stranger's files is not emptied.
  await mkdir(mirror.datadir, { recursive: true });
  const precious = join(mirror.datadir, 'precious.txt');
  await writeFile(precious, 'not PostgreSQL');
  const refused = await run('RecoverSegments', { mode: 'full', contents: [1] });
  expect(refused).toMatchObject({ status: 'FAILED', error: 'RecoveryIncomplete' });
  expect(refused.cause).toMatch(/content 1 failed: RebuildFailedError: refusing the full copy/);
  await expect(import('node:fs/promises').then((fs) => fs.readFile(precious, 'utf8'))).resolves.toBe('not PostgreSQL');
  expect(await state(M1)).toBe('m/d/n');
  expect((await cluster.catalog.load(cluster.clusterId)).pendingOperations).toEqual([]);

  await rm(mirror.datadir, { recursive: true, force: true });
  const result = await run('RecoverSegments', { mode: 'full' });
  expect(result).toMatchObject({ status: 'SUCCEEDED' });
  expect((result.output as { summarize: unknown }).summarize).toMatchObject({ done: [{ content: 1, dbid: M1 }] });
  await waitState(M1, 'm/u/s');
  await waitState(P1, 'p/u/s');
});

test('a StartRebuild step that dies after starting the copy is retried; the copy it left running is waited for, and the recovery completes', async () => {
  const mirror = await cluster.row(M1);
  await killInstance(mirror.datadir);
  await waitState(M1, 'm/d/n');
  let crashes = 0;
  const host: SegmentHost = Object.assign(Object.create(Object.getPrototypeOf(cluster.host) as object) as SegmentHost, cluster.host, {
    startRebuild: async (...args: Parameters<SegmentHost['startRebuild']>) => {
      const job = await cluster.host.startRebuild(...args);
      if (crashes++ === 0) throw new HostCommandError(`the step died after starting job ${job.id} (a Lambda timeout)`);
      return job;
    },
  });
  const result = await runWorkflowLocally({ ...cluster, host }, 'RecoverSegments', { clusterId: cluster.clusterId, pollSeconds: 1, mode: 'full' }, { waitMs: 200, retryIntervalMs: 0 });
  expect({ status: result.status, cause: result.cause }).toMatchObject({ status: 'SUCCEEDED' });
  expect(crashes).toBeGreaterThanOrEqual(2);
  await waitState(M1, 'm/u/s');
  expect((await workload.lostCommits()).lost).toEqual([]);
});

describe('recovery to another place', () => {
  const downMirror1 = async (): Promise<SegmentRow> => {
    const mirror = await cluster.row(M1);
    await killInstance(mirror.datadir);
    await waitState(M1, 'm/d/n');
    return mirror;
  };

  test('-p onto the host of the content\'s own primary is refused with the placement rule; nothing changes', async () => {
    await downMirror1();
    const before = await cluster.catalog.load(cluster.clusterId);
    const primaryHost = (await cluster.row(P1)).hostname;
    const result = await run('RecoverSegments', { spareHost: { hostname: primaryHost, address: '127.0.0.1' } });
    expect(result).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(result.cause).toMatch(/would break its placement/);
    expect(await cluster.catalog.load(cluster.clusterId)).toMatchObject({ version: before.version, segments: before.segments });
  });

  test('-i to another port and data directory: the catalog names the new place, the old one stays stopped', async () => {
    const mirror = await cluster.row(M1);
    expect(mirror.status).toBe('d');
    const port = await freePort();
    const datadir = join(dirname(mirror.datadir), `moved-gpseg${mirror.content}`);
    const result = await run('RecoverSegments', { recoverConfig: `# moved by the test\n${mirror.address}|${mirror.port}|${mirror.datadir} ${mirror.address}|${port}|${datadir}\n` });
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    expect(await cluster.row(M1)).toMatchObject({ hostname: mirror.hostname, port, datadir, role: 'm', status: 'u' });
    await waitState(M1, 'm/u/s');
    expect(isRunning(mirror.datadir)).toBe(false);
    expect((await cluster.catalog.history(cluster.clusterId)).some((h) => h.dbid === M1 && /moved for recovery from .* to .*moved-gpseg1/.test(h.description))).toBe(true);
  });

  test('-p onto a spare host: the row takes the new hostname, same port and directory', async () => {
    const mirror = await downMirror1();
    const result = await run('RecoverSegments', { spareHost: { hostname: 'sdw9', address: '127.0.0.1' } });
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    expect((result.output as { summarize: { warnings: string[] } }).summarize.warnings).toEqual([]);
    expect(await cluster.row(M1)).toMatchObject({ hostname: 'sdw9', port: mirror.port, datadir: mirror.datadir, status: 'u' });
    await waitState(M1, 'm/u/s');
    expect((await cluster.catalog.load(cluster.clusterId)).status).toBe('up');
    expect((await workload.lostCommits()).lost).toEqual([]);
  });
});
