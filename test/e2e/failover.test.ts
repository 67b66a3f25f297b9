/**
 * Automatic failover end to end: real PostgreSQL pairs with sync rep, the catalog in
 * DynamoDB Local, the prober service in-process and PromoteMirror executed from the
 * synthesized ASL by aws-local-stepfunctions, its Task states bound to the real step code.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { isRunning, killInstance } from '../../lambdas/adapters/local/host';
import { SegmentUnreachableError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { LocalProber } from '../../cli/local-prober';
import { killAndMeasure, Timeline, Workload } from '../../cli/failover-drill';
import { startBackgroundProber } from '../../cli/local-cluster';
import { TEST_SETTINGS, testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { crashBackend, throttleRecovery, writeWalSinceCheckpoint } from '../../cli/faults/slow-recovery';
import { waitFor } from '../support/pg-pair';
import { startTcpProxy, type TcpProxy } from '../../cli/faults/tcp-proxy';

jest.setTimeout(180_000);

// dbids of the default test layout: primaries 2 (content 0, sdw1) and 3 (content 1, sdw2),
// mirrors 4 (content 0, on sdw2) and 5 (content 1, on sdw1).
const PRIMARY = 2;
const MIRROR = 4;

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

const executionsOf = (...probers: LocalProber[]) => probers.flatMap((p) => p.workflows.list());
const allDone = async (...probers: LocalProber[]) =>
  waitFor('PromoteMirror executions to end', async () => (executionsOf(...probers).every((e) => e.outcome) ? true : undefined), 60_000);

test('primary killed under a write workload: mirror promoted, catalog and history right, no acknowledged commit lost', async () => {
  cluster = await testCluster('kill-primary');
  const prober = cluster.startProber();
  const workload = new Workload(cluster.catalog, cluster.clusterId, 0);
  await workload.prepare();
  workload.start();
  await sleep(1000);
  const m = await killAndMeasure(cluster.catalog, cluster.clusterId, workload, cluster.timeline);
  await sleep(500);
  await workload.stop();
  await allDone(prober);

  expect(m).toMatchObject({ killedDbid: PRIMARY, newPrimaryDbid: MIRROR });
  const count = await workload.lostCommits();
  expect(count.acknowledged).toBeGreaterThan(100);
  expect(count.lost).toEqual([]);
  expect(workload.acks.filter((a) => a.dbid === MIRROR).length).toBeGreaterThan(0);

  const snapshot = await cluster.catalog.load(cluster.clusterId);
  expect(snapshot.status).toBe('degraded');
  expect(snapshot.pendingPromotions).toEqual([]);
  expect(snapshot.segments.find((r) => r.dbid === PRIMARY)).toMatchObject({ role: 'm', preferredRole: 'p', status: 'd', mode: 'n' });
  expect(snapshot.segments.find((r) => r.dbid === MIRROR)).toMatchObject({ role: 'p', preferredRole: 'm', status: 'u', mode: 'n' });
  // The other content is untouched.
  expect(snapshot.segments.find((r) => r.dbid === 3)).toMatchObject({ role: 'p', status: 'u', mode: 's' });

  const history = await cluster.catalog.history(cluster.clusterId);
  const texts = history.map((h) => `${h.dbid}: ${h.description}`);
  expect(texts).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^2: FTS: update role, status, and mode for dbid 2 with contentid 0 to m, d, and n/),
      expect.stringMatching(/^4: FTS: update role, status, and mode for dbid 4 with contentid 0 to p, u, and n/),
      expect.stringMatching(/^4: FTS: promotion of dbid 4 to acting primary of content 0 complete/),
    ]),
  );
  const executions = executionsOf(prober);
  expect(executions).toHaveLength(1);
  expect(executions[0].outcome?.status).toBe('SUCCEEDED');
  // The promoted mirror is a primary with sync rep off: writes do not wait for a mirror.
  const probe = await cluster.probe.probe(await cluster.row(MIRROR), await cluster.catalog.loadSettings(cluster.clusterId));
  expect(probe).toMatchObject({ ok: true, inRecovery: false, syncRepOn: false });
});

test('mirror killed: pair marked not in sync, sync rep off on the primary, writes continue', async () => {
  cluster = await testCluster('kill-mirror');
  const prober = cluster.startProber();
  const workload = new Workload(cluster.catalog, cluster.clusterId, 0);
  await workload.prepare();
  workload.start();
  await sleep(500);
  await killInstance((await cluster.row(MIRROR)).datadir);
  const c = cluster;
  await waitFor('mirror marked down', async () => ((await c.row(MIRROR)).status === 'd' ? true : undefined), 30_000);
  const markedAt = Date.now();
  await sleep(1500);
  await workload.stop();

  expect(await cluster.row(MIRROR)).toMatchObject({ role: 'm', status: 'd', mode: 'n' });
  expect(await cluster.row(PRIMARY)).toMatchObject({ role: 'p', status: 'u', mode: 'n' });
  expect((await cluster.catalog.load(cluster.clusterId)).status).toBe('degraded');
  const probe = await cluster.probe.probe(await cluster.row(PRIMARY), await cluster.catalog.loadSettings(cluster.clusterId));
  expect(probe).toMatchObject({ ok: true, syncRepOn: false });
  expect(workload.acks.filter((a) => a.dbid === PRIMARY && a.at > markedAt).length).toBeGreaterThan(10);
  expect((await workload.lostCommits()).lost).toEqual([]);
  expect(executionsOf(prober)).toHaveLength(0);
  const history = await cluster.catalog.history(cluster.clusterId);
  expect(history.some((h) => h.dbid === MIRROR && /to m, d, and n: mirror dbid 4 of content 0 not streaming/.test(h.description))).toBe(true);
});

test('double fault: mirror down, then the primary fails: no promotion, content unavailable, status, history and alarm say so', async () => {
  cluster = await testCluster('double-fault');
  const prober = cluster.startProber();
  await killInstance((await cluster.row(MIRROR)).datadir);
  const c = cluster;
  await waitFor('mirror marked down', async () => ((await c.row(MIRROR)).status === 'd' ? true : undefined), 30_000);
  await killInstance((await cluster.row(PRIMARY)).datadir);
  await waitFor('cluster unavailable', async () => ((await c.catalog.load(c.clusterId)).status === 'unavailable' ? true : undefined), 30_000);
  await sleep(2000); // more rounds: nothing else may happen

  expect(await cluster.row(PRIMARY)).toMatchObject({ role: 'p', status: 'd', mode: 'n' });
  expect(await cluster.row(MIRROR)).toMatchObject({ role: 'm', status: 'd', mode: 'n' });
  expect(executionsOf(prober)).toHaveLength(0);
  expect(cluster.timeline.events.some((e) => e.level === 'metric' && e.message === 'DoubleFault')).toBe(true);
  const history = await cluster.catalog.history(cluster.clusterId);
  const doubleFault = history.filter((h) => /double fault/.test(h.description));
  expect(doubleFault).toHaveLength(1); // written once, not every round
  expect(doubleFault[0]).toMatchObject({ dbid: PRIMARY, description: expect.stringMatching(/to p, d, and n: double fault: .*content 0 is unavailable/) });
});

test('primary in crash recovery that makes progress: no failover', async () => {
  cluster = await testCluster('crash-recovery');
  const primary = await cluster.row(PRIMARY);
  await writeWalSinceCheckpoint(primary, 240);
  const prober = cluster.startProber();
  const c = cluster;
  await waitFor('3 rounds', async () => (prober.rounds() >= 3 ? true : undefined), 30_000);
  const crashedAt = Date.now();
  await crashBackend(primary);
  const throttle = throttleRecovery(primary.datadir, 10, 150);
  try {
    await waitFor('3 rounds that saw recovery progress', async () => {
      const seen = c.timeline.events.filter((e) => e.decision === 'recovery-in-progress' && e.at >= crashedAt);
      return seen.length >= 3 ? true : undefined;
    }, 60_000);
  } finally {
    await throttle.stop();
  }
  await waitFor('the primary to answer again', async () => {
    const r = await c.probe.probe(primary, await c.catalog.loadSettings(c.clusterId));
    return r.ok && !r.inRecovery ? true : undefined;
  }, 60_000);
  const recoveredAt = Date.now();
  await sleep(2000); // more rounds on the recovered primary

  // The recovery outlasted a failed probe's retries (TEST_SETTINGS: 2 attempts 0.2 s apart) many times over.
  expect(recoveredAt - crashedAt).toBeGreaterThan(2000);
  const during = c.timeline.events.filter((e) => e.at >= crashedAt && e.decision);
  expect(during.filter((e) => e.decision === 'fail-over')).toEqual([]);
  expect(during.filter((e) => e.decision === 'recovery-in-progress').map((e) => e.reason)).toEqual(
    expect.arrayContaining([expect.stringMatching(/primary dbid 2 of content 0 is in crash recovery and replaying \(at [0-9A-F]+\/[0-9A-F]+/)]),
  );
  expect(executionsOf(prober)).toHaveLength(0);
  expect(await c.row(PRIMARY)).toMatchObject({ role: 'p', status: 'u' });
  expect(await c.row(MIRROR)).toMatchObject({ role: 'm' });
});

test('after a failover the old primary is fenced: a restart by hand comes up read-only; one forced up writable is fenced at once as a zombie', async () => {
  cluster = await testCluster('zombie');
  const prober = cluster.startProber();
  const old = await cluster.row(PRIMARY);
  await killInstance(old.datadir);
  const c = cluster;
  await waitFor('failover complete', async () => ((await c.row(MIRROR)).role === 'p' && (await c.catalog.load(c.clusterId)).pendingPromotions.length === 0 ? true : undefined), 60_000);
  await allDone(prober);
  expect((await c.catalog.load(c.clusterId)).pendingFences).toEqual([]);
  expect((await c.catalog.history(c.clusterId)).some((h) => h.dbid === PRIMARY && /fenced \(stopped; a restart comes up read-only\)/.test(h.description))).toBe(true);

  // systemd or an operator starts it again: it comes up as a standby of the new primary,
  // or, when its WAL went past the point the new primary's timeline forked off, it refuses
  // to start at all. Either way nothing commits on it.
  await expectNoLocalCommit(c, old);

  // Someone removes standby.signal and starts it: a second writable primary, until the prober fences it.
  await c.host.stop(old, 'fast');
  await rm(join(old.datadir, 'standby.signal'), { force: true });
  await c.host.start(old);
  await waitFor('the zombie fenced', async () => (!isRunning(old.datadir) ? true : undefined), 30_000);
  expect(c.timeline.events.some((e) => e.level === 'metric' && e.message === 'ZombieFenced')).toBe(true);
  const history = await c.catalog.history(c.clusterId);
  expect(history.some((h) => h.dbid === PRIMARY && /answered as a writable primary while marked down/.test(h.description))).toBe(true);
  await waitFor('the zombie fence cleared', async () => ((await c.catalog.load(c.clusterId)).pendingFences.length === 0 ? true : undefined), 30_000);
  // And it stays fenced: another restart commits nothing again.
  await expectNoLocalCommit(c, old);
  expect(await c.row(MIRROR)).toMatchObject({ role: 'p', status: 'u' });
});

/** Starts a fenced instance by hand: it either refuses to start or is a standby that refuses a local commit. */
async function expectNoLocalCommit(c: TestCluster, row: SegmentRow): Promise<void> {
  const started = await c.host.start(row).then(
    () => true,
    (e: Error) => {
      expect(e.message).toMatch(/startup process failure|forked off|not a child of this server's history/);
      return false;
    },
  );
  if (started) {
    expect(await c.probe.probe(row, await c.catalog.loadSettings(c.clusterId))).toMatchObject({ ok: true, inRecovery: true });
    await expect(writeLocally(row)).rejects.toThrow(/read-only transaction/);
  } else {
    expect(isRunning(row.datadir)).toBe(false);
  }
}

/** A commit with `synchronous_commit = local`: what a client that never heard of the failover could do. */
async function writeLocally(row: { address: string; port: number }): Promise<void> {
  const client = new Client({ host: row.address, port: row.port, user: 'postgres', database: 'postgres' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('SET synchronous_commit = local');
    await client.query('CREATE TABLE IF NOT EXISTS zombie_writes (at timestamptz); INSERT INTO zombie_writes VALUES (now())');
  } finally {
    await client.end().catch(() => undefined);
  }
}

test('two probers at once: one holds the lease and acts; the failover happens exactly once', async () => {
  cluster = await testCluster('two-probers');
  const a = cluster.startProber({ owner: 'prober-a' });
  const b = cluster.startProber({ owner: 'prober-b' });
  await sleep(2500);
  expect([a.rounds(), b.rounds()].filter((n) => n > 0)).toHaveLength(1);
  await killInstance((await cluster.row(PRIMARY)).datadir);
  const c = cluster;
  await waitFor('promotion', async () => ((await c.row(MIRROR)).role === 'p' ? true : undefined), 30_000);
  await allDone(a, b);
  await sleep(2000);
  const executions = executionsOf(a, b);
  expect(executions).toHaveLength(1);
  expect(executions[0].outcome?.status).toBe('SUCCEEDED');
  const flips = (await cluster.catalog.history(cluster.clusterId)).filter((h) => /to p, u, and n: mirror promoted/.test(h.description));
  expect(flips).toHaveLength(1);
});

test('a prober killed mid-failover: the next one finishes it, with exactly one promotion', async () => {
  cluster = await testCluster('killed-prober');
  const pid = await startBackgroundProber(cluster);
  const daemonLog = new Timeline(cluster.proberLog);
  const killedAt = Date.now();
  await killInstance((await cluster.row(PRIMARY)).datadir);
  await daemonLog.waitFor('the daemon to start PromoteMirror', (e) => e.decision === 'fail-over', killedAt, 30_000);
  process.kill(-pid, 'SIGKILL'); // the prober and its in-process workflow die mid-round
  const next = cluster.startProber({ owner: 'next' });
  const c = cluster;
  await waitFor('promotion finished', async () => {
    const s = await c.catalog.load(c.clusterId);
    return s.segments.find((r) => r.dbid === MIRROR)?.role === 'p' && s.pendingPromotions.length === 0 ? true : undefined;
  }, 150_000, 250);
  await allDone(next);
  const probe = await cluster.probe.probe(await cluster.row(MIRROR), await cluster.catalog.loadSettings(cluster.clusterId));
  expect(probe).toMatchObject({ ok: true, inRecovery: false });
  const flips = (await cluster.catalog.history(cluster.clusterId)).filter((h) => /to p, u, and n: mirror promoted/.test(h.description));
  expect(flips).toHaveLength(1);
}, 240_000);

test('a promotion step that fails once is retried and completes', async () => {
  cluster = await testCluster('step-retry');
  let promoteCalls = 0;
  const prober = cluster.startProber({
    wrapStep: async (event, run) => {
      if (event.step === 'promote' && ++promoteCalls === 1) throw new SegmentUnreachableError('connection reset while promoting (injected)');
      return run();
    },
  });
  await killInstance((await cluster.row(PRIMARY)).datadir);
  await waitFor('an execution', async () => (executionsOf(prober).length ? true : undefined), 30_000);
  await allDone(prober);
  expect(promoteCalls).toBe(2);
  expect(executionsOf(prober).map((e) => e.outcome?.status)).toEqual(['SUCCEEDED']);
  expect(await cluster.row(MIRROR)).toMatchObject({ role: 'p', status: 'u' });
});

test('bad workflow input fails validation and changes nothing', async () => {
  cluster = await testCluster('bad-input');
  const prober = cluster.startProber();
  const before = await cluster.catalog.load(cluster.clusterId);
  const inputs: unknown[] = [
    { clusterId: cluster.clusterId, content: 0, failedPrimaryDbid: PRIMARY, mirrorDbid: PRIMARY, catalogVersion: before.version, reason: 'same dbid' },
    { clusterId: cluster.clusterId, content: 0, failedPrimaryDbid: PRIMARY, mirrorDbid: MIRROR, catalogVersion: before.version, reason: 'extra key', force: true },
    { clusterId: cluster.clusterId, content: 1, failedPrimaryDbid: PRIMARY, mirrorDbid: MIRROR, catalogVersion: before.version, reason: 'wrong content' },
    { clusterId: 'no such cluster!', content: 0, failedPrimaryDbid: PRIMARY, mirrorDbid: MIRROR, catalogVersion: 1 },
  ];
  for (const [i, input] of inputs.entries()) {
    // As the console starts it: the input as given, the workflow validates it.
    const outcome = await prober.workflows.runExecution('PromoteMirror', `bad-input-${i}`, input);
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
  }
  const after = await cluster.catalog.load(cluster.clusterId);
  expect(after.version).toBe(before.version);
  expect(after.segments).toEqual(before.segments);
  const probe = await cluster.probe.probe(await cluster.row(MIRROR), await cluster.catalog.loadSettings(cluster.clusterId));
  expect(probe).toMatchObject({ ok: true, inRecovery: true });
});

describe('the prober\'s path to a primary', () => {
  let proxy: TcpProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  /** Clients (the prober among them) reach the primary through the proxy; its mirror still streams directly. */
  async function routeThroughProxy(c: TestCluster, dbid: number): Promise<TcpProxy> {
    const row = await c.row(dbid);
    const p = await startTcpProxy(row.port);
    const snapshot = await c.catalog.load(c.clusterId);
    await c.catalog.apply(c.clusterId, snapshot.version, {
      rows: [{ ...row, port: p.port }],
      history: [{ time: new Date().toISOString(), dbid, description: `test: clients reach dbid ${dbid} through port ${p.port}` }],
    });
    return p;
  }

  test('probes slower than normal but within the timeout: no failover', async () => {
    cluster = await testCluster('slow-probes');
    proxy = await routeThroughProxy(cluster, PRIMARY);
    proxy.connectDelayMs = 600; // the probe timeout is 1 s
    const prober = cluster.startProber();
    const c = cluster;
    await waitFor('8 rounds', async () => (prober.rounds() >= 8 ? true : undefined), 60_000);
    // Content 0's probes (through the proxy) took the delay; content 1's did not and were not held up by them.
    const rounds = c.timeline.events.filter((e) => e.message === 'ContentRoundMs').map((e) => Number(e.value));
    expect(rounds.filter((ms) => ms >= 600).length).toBeGreaterThanOrEqual(6);
    expect(rounds.filter((ms) => ms < 600).length).toBeGreaterThanOrEqual(6);
    expect(c.timeline.events.filter((e) => e.decision === 'fail-over')).toEqual([]);
    expect(executionsOf(prober)).toHaveLength(0);
    expect(await c.row(PRIMARY)).toMatchObject({ role: 'p', status: 'u', mode: 's' });
    expect((await c.catalog.load(c.clusterId)).status).toBe('up');
  });

  test('the prober cut off from a primary that still streams to its mirror: no failover, an unreachable-primary alarm', async () => {
    cluster = await testCluster('unreachable');
    const direct = await cluster.row(PRIMARY);
    proxy = await routeThroughProxy(cluster, PRIMARY);
    proxy.blackhole = true;
    const before = await cluster.catalog.load(cluster.clusterId);
    const prober = cluster.startProber();
    const c = cluster;
    await waitFor('PromoteMirror to start', async () => (executionsOf(prober).length ? true : undefined), 30_000);
    await allDone(prober);
    await sleep(3000); // more rounds: still nothing may happen

    const [execution] = executionsOf(prober);
    expect(execution.outcome).toMatchObject({ status: 'SUCCEEDED', output: { recordAbort: { aborted: true } } });
    expect(String((execution.outcome?.output as { recordAbort: { cause: string } }).recordAbort.cause)).toMatch(/PrimaryAliveError: .*still streams from primary dbid 2/);
    expect(c.timeline.events.some((e) => e.level === 'metric' && e.message === 'UnreachablePrimary')).toBe(true);
    const after = await c.catalog.load(c.clusterId);
    expect(after.segments).toEqual(before.segments);
    expect(after.pendingPromotions).toEqual([]);
    // The primary is alive and still the only primary; its mirror still follows it.
    const settings = await c.catalog.loadSettings(c.clusterId);
    expect(await c.probe.probe(direct, settings, await c.row(MIRROR))).toMatchObject({ ok: true, inRecovery: false, mirror: { state: 'streaming' } });
    const mirrorProbe = await c.probe.probe(await c.row(MIRROR), await c.catalog.loadSettings(c.clusterId));
    expect(mirrorProbe).toMatchObject({ ok: true, inRecovery: true });
    // The abort is on record (a history row: the next failure is a new episode).
    expect((await c.catalog.history(c.clusterId)).some((h) => h.dbid === PRIMARY && /failover of content 0 from dbid 2 to dbid 4 aborted: PrimaryAliveError/.test(h.description))).toBe(true);
    expect(after.version).toBeGreaterThan(before.version);
    expect(c.timeline.events.some((e) => e.level === 'metric' && e.message === 'PromotionAborted')).toBe(true);
  });

  test('an aborted promotion never blocks a later one: the black-holed primary then really dies and is failed over', async () => {
    cluster = await testCluster('abort-then-kill', { settings: { ...TEST_SETTINGS, failoverRetrySeconds: 2 } });
    const direct = await cluster.row(PRIMARY);
    proxy = await routeThroughProxy(cluster, PRIMARY);
    proxy.blackhole = true;
    const prober = cluster.startProber();
    const c = cluster;
    await waitFor('a first promotion attempt aborted', async () => (executionsOf(prober).some((e) => e.outcome?.output && 'recordAbort' in (e.outcome.output as object)) ? true : undefined), 60_000);
    await killInstance(direct.datadir);
    await waitFor('the mirror to be the acting primary', async () => ((await c.row(MIRROR)).role === 'p' && (await c.catalog.load(c.clusterId)).pendingPromotions.length === 0 ? true : undefined), 60_000);
    await allDone(prober);
    const names = executionsOf(prober).map((e) => e.name);
    expect(new Set(names).size).toBe(names.length); // every attempt its own execution
    expect(executionsOf(prober).some((e) => e.outcome?.status === 'SUCCEEDED' && (e.outcome.output as { notify?: unknown }).notify)).toBe(true);
    expect(await c.row(PRIMARY)).toMatchObject({ role: 'm', status: 'd' });
  });
});
