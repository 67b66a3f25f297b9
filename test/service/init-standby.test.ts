/**
 * InitStandby (gpinitstandby, gpinitstandby -r) on the in-memory fakes: the plan's
 * refusals (nothing changed), whole runs through the synthesized state machine
 * (LocalWorkflows, the real step code, Retry and Catch as deployed) that add a standby,
 * retry a step that fails once, undo a failed copy, and remove the standby; and single
 * steps where a state document is at fault. The same steps run on real PostgreSQL in
 * test/e2e/initstandby.test.ts.
 */
import { ContentBusyError, HostCommandError, SegmentUnreachableError, ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS, type Settings } from '../../lambdas/core/settings';
import type { Telemetry } from '../../lambdas/ports/telemetry';
import { runInitStandbyStepEvent } from '../../lambdas/service/init-standby';
import { HOLD_TTL_SECONDS } from '../../lambdas/service/rebuild-steps';
import type { WorkflowDeps } from '../../lambdas/service/steps';
import { INIT_STANDBY_SPEC } from '../../lambdas/workflows/init-standby';
import { localWorkflows } from '../../lib/local-definition';
import { FakeCatalog, FakeSegments } from '../support/fakes';

const CLUSTER = 'c1';
const EXEC = 'initstandby-c1-v1-0a1b2c3d';
const NOW = new Date('2026-11-23T10:00:00.000Z');
const COORDINATOR_DIR = '/data/coordinator/gpseg-1';

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number, over: Partial<SegmentRow> = {}): SegmentRow => ({
  dbid,
  content,
  role,
  preferredRole: role,
  mode: 's',
  status: 'u',
  port,
  hostname: host,
  address: `${host}.internal`,
  datadir: content === -1 ? COORDINATOR_DIR : `/data/${role === 'p' ? 'primary' : 'mirror'}/gpseg${content}`,
  ...over,
});

/** Coordinator dbid 1 on cdw (no standby); content 0: 2 on sdw1, 4 on sdw2; content 1: 3 on sdw2, 5 on sdw1. */
function baseRows(coordinator: Partial<SegmentRow> = {}): SegmentRow[] {
  return [
    row(1, -1, 'p', 'cdw', 5432, { mode: 'n', ...coordinator }),
    row(2, 0, 'p', 'sdw1', 6000),
    row(3, 1, 'p', 'sdw2', 6000),
    row(4, 0, 'm', 'sdw2', 7000),
    row(5, 1, 'm', 'sdw1', 7000),
  ];
}

/** The same with a standby dbid 6 on scdw, in sync. */
const withStandby = (): SegmentRow[] => [...baseRows({ mode: 's' }), row(6, -1, 'm', 'scdw', 5432)];

async function setup(rows: SegmentRow[] = baseRows(), settings: Settings = DEFAULT_SETTINGS) {
  let clock = NOW;
  const catalog = new FakeCatalog();
  catalog.clock = () => clock;
  await catalog.initialize(CLUSTER, rows, settings, NOW.toISOString());
  const world = FakeSegments.fromRows(rows, { now: () => clock });
  const warnings: string[] = [];
  const telemetry: Telemetry = { info() {}, warn: (m) => void warnings.push(m), error() {}, metric() {}, flush() {} };
  const deps: WorkflowDeps = {
    catalog,
    probe: world,
    control: world,
    host: world,
    telemetry,
    now: () => clock,
    sleep: async (ms) => {
      clock = new Date(clock.getTime() + ms);
    },
  };
  const step = (name: string, input: unknown, execution = EXEC) => runInitStandbyStepEvent(deps, { step: name, input, execution });
  const load = () => catalog.load(CLUSTER);
  const history = async () => (await catalog.history(CLUSTER)).map((h) => h.description);
  /** A whole execution of the synthesized state machine: retries without pauses, Wait states of 0 ms. */
  const execute = (input: Record<string, unknown>, execution = EXEC) =>
    localWorkflows({ InitStandby: (event) => runInitStandbyStepEvent(deps, event) }, { retryIntervalMs: 0, waitMs: 0 }).runExecution('InitStandby', execution, input);
  const advance = (seconds: number) => {
    clock = new Date(clock.getTime() + seconds * 1000);
  };
  return { catalog, world, deps, step, load, history, execute, warnings, advance };
}

/** The standby added on scdw2 (another host, a free port, the coordinator's directory there). */
const ADD = { clusterId: CLUSTER, hostname: 'scdw2', port: 5433 };

describe('plan refuses bad requests and changes nothing', () => {
  const refused = async (input: unknown, message: RegExp, rows = baseRows(), error: new (...args: never[]) => Error = ValidationError) => {
    const t = await setup(rows);
    const before = await t.load();
    const historyBefore = await t.history();
    const attempt = t.step('plan', input);
    await expect(attempt).rejects.toBeInstanceOf(error);
    await expect(t.step('plan', input)).rejects.toThrow(message);
    const after = await t.load();
    expect(after.version).toBe(before.version);
    expect(after.segments).toEqual(before.segments);
    expect(after.pendingOperations).toEqual(before.pendingOperations);
    expect(await t.history()).toEqual(historyBefore);
    expect(t.world.calls).toEqual([]);
  };

  test.each<[string, unknown, RegExp]>([
    ['an unknown key', { ...ADD, dbid: 9 }, /Unrecognized key.*"dbid"/],
    ['a port of the wrong type', { ...ADD, port: '5433' }, /port: Invalid input: expected number/],
    ['a port out of range', { ...ADD, port: 70000 }, /port: Too big/],
    ['a relative data directory', { ...ADD, datadir: 'data/standby' }, /datadir: must be an absolute path/],
    ['the root directory', { ...ADD, datadir: '/' }, /datadir: must not be the root directory/],
    ['a directory with a newline', { ...ADD, datadir: '/data/x\ny' }, /datadir: must not contain control characters/],
    ['no host and no -r', { clusterId: CLUSTER }, /hostname: is required to add a standby \(gpinitstandby -s <host>\); to remove the standby give remove: true/],
    ['-r with a host', { clusterId: CLUSTER, remove: true, hostname: 'scdw2' }, /remove: removes the standby the catalog names \(gpinitstandby -r\): give no hostname/],
    ['a host name with a space', { ...ADD, hostname: 'scdw 2' }, /hostname: must be a host name/],
    ['stallSeconds not above twice pollSeconds', { ...ADD, pollSeconds: 10, stallSeconds: 15 }, /stallSeconds must be more than twice pollSeconds/],
    ['a cluster id of the wrong type', { clusterId: 7, hostname: 'scdw2' }, /clusterId/],
  ])('%s', async (_name, input, message) => refused(input, message));

  test('an unknown cluster', () => refused({ ...ADD, clusterId: 'nope' }, /cluster nope is not in the catalog/));
  test('a catalogVersion newer than the catalog', () => refused({ ...ADD, catalogVersion: 99 }, /catalogVersion 99 is newer than the catalog/));
  test('no coordinator row', () => refused(ADD, /has no coordinator row/, baseRows().filter((r) => r.content !== -1)));
  test('a standby exists already: remove it first with -r', () => refused(ADD, /has a standby already: dbid 6 on scdw:5432.*remove it first with gpinitstandby -r \(ftsctl initstandby -r/, withStandby()));
  test('-r without a standby', () => refused({ clusterId: CLUSTER, remove: true }, /has no standby \(content -1, role m\): nothing to remove/));
  test("the coordinator's host", () => refused({ ...ADD, hostname: 'cdw' }, /standby host cdw is the coordinator's host \(dbid 1\); the standby must not be in the coordinator's failure domain/));
  test("the coordinator's EC2 instance under another name", () =>
    refused({ ...ADD, instanceId: 'i-coord' }, /is EC2 instance i-coord, the coordinator's/, baseRows({ instanceId: 'i-coord' })));
  test("the coordinator's partition", () =>
    refused({ ...ADD, instanceId: 'i-s', placementGroup: 'pg1', partitionNumber: 2 }, /partition 2 of placement group pg1, the coordinator's/, baseRows({ instanceId: 'i-c', placementGroup: 'pg1', partitionNumber: 2 })));
  test("the coordinator's availability zone, unless allowSameZone", async () => {
    const rows = baseRows({ instanceId: 'i-c', availabilityZone: 'us-east-1a' });
    await refused({ ...ADD, instanceId: 'i-s', availabilityZone: 'us-east-1a' }, /availability zone us-east-1a, the coordinator's: a zone outage takes both; .*allowSameZone \(ftsctl initstandby --allow-same-zone\)/, rows);
    const t = await setup(rows);
    const plan = await t.step('plan', { ...ADD, instanceId: 'i-s', availabilityZone: 'us-east-1a', allowSameZone: true });
    expect(plan.warnings).toEqual([expect.stringMatching(/availability zone us-east-1a, the coordinator's.*allowed by allowSameZone/)]);
  });
  test('a coordinator on EC2 and a standby host the catalog does not know, without instanceId', () =>
    refused(ADD, /give its instanceId, so FTS can run commands on it/, baseRows({ instanceId: 'i-c' })));
  test('a port another instance listens on at that address', () => refused({ ...ADD, hostname: 'sdw1', port: 7000 }, /port 7000 at sdw1 \(host sdw1\) is taken by dbid 5/));
  test("another instance's data directory on that host, or one inside it", async () => {
    await refused({ ...ADD, hostname: 'sdw1', datadir: '/data/primary/gpseg0' }, /data directory \/data\/primary\/gpseg0 on host sdw1 is dbid 2's/);
    await refused({ ...ADD, hostname: 'sdw1', datadir: '/data/primary/gpseg0/standby' }, /is inside dbid 2's data directory/);
  });
  test('the same directory at the same address under another host name (one machine)', () =>
    refused({ ...ADD, address: 'cdw.internal', port: 5433 }, /data directory \/data\/coordinator\/gpseg-1 on host scdw2 is dbid 1's \(cdw, same address cdw.internal\)/));
  test('content -1 held by another workflow', async () => {
    const hold = { content: -1, kind: 'activation' as const, execution: 'activate-c1-x', since: NOW.toISOString(), expiresAt: new Date(NOW.getTime() + HOLD_TTL_SECONDS * 1000).toISOString() };
    const t = await setup();
    await t.catalog.apply(CLUSTER, 1, { rows: [], history: [], setOperations: [hold] });
    const before = await t.load();
    await expect(t.step('plan', ADD)).rejects.toBeInstanceOf(ContentBusyError);
    await expect(t.step('plan', ADD)).rejects.toThrow(/content -1 \(the coordinator\) is held by activation execution activate-c1-x/);
    expect((await t.load()).version).toBe(before.version);
  });
});

describe('plan', () => {
  test('adds the row m/d/n with the next dbid, the defaults of gpinitstandby, a history row and the hold, in one write', async () => {
    const t = await setup(baseRows({ systemIdentifier: '7001' }));
    const plan = await t.step('plan', { clusterId: CLUSTER, hostname: 'scdw2' });
    expect(plan).toMatchObject({ action: 'add', dbid: 6, coordinatorDbid: 1, hostname: 'scdw2', address: 'scdw2', port: 5432, datadir: COORDINATOR_DIR, remove: false, pollSeconds: 10, stallSeconds: 900, resumed: false });
    const s = await t.load();
    expect(s.version).toBe(2);
    expect(s.segments.find((r) => r.dbid === 6)).toEqual({ dbid: 6, content: -1, role: 'm', preferredRole: 'm', mode: 'n', status: 'd', port: 5432, hostname: 'scdw2', address: 'scdw2', datadir: COORDINATOR_DIR, systemIdentifier: '7001' });
    expect(s.pendingOperations).toEqual([expect.objectContaining({ content: -1, kind: 'standby-init', execution: EXEC })]);
    expect((await t.history()).at(-1)).toBe(`gpinitstandby: add standby dbid 6 on scdw2:5432 datadir ${COORDINATOR_DIR} of coordinator dbid 1 (execution ${EXEC})`);
  });

  test('a re-run by the same execution finds its hold and row: the same plan, nothing written again', async () => {
    const t = await setup();
    const first = await t.step('plan', ADD);
    const version = (await t.load()).version;
    const again = await t.step('plan', ADD);
    expect(again).toEqual({ ...first, resumed: true, warnings: ['planned again after a retried step: the plan this execution recorded in its hold'] });
    expect((await t.load()).version).toBe(version);
    expect((await t.load()).segments.filter((r) => r.content === -1)).toHaveLength(2);
  });

  test('equal addresses under different host names (a local cluster) are allowed, with a warning', async () => {
    const rows = baseRows({ address: '127.0.0.1' });
    const t = await setup(rows);
    const plan = await t.step('plan', { ...ADD, address: '127.0.0.1', datadir: '/tmp/c/scdw2/coordinator/gpseg-1' });
    expect(plan.warnings).toEqual([expect.stringMatching(/the standby's address 127.0.0.1 is the coordinator's: both run on one machine \(a local cluster\)/)]);
  });

  test('a known host brings its EC2 placement', async () => {
    const rows = baseRows({ instanceId: 'i-c', availabilityZone: 'az1' }).map((r) => (r.hostname === 'sdw2' ? { ...r, instanceId: 'i-2', availabilityZone: 'az2' } : r));
    const t = await setup(rows);
    await t.step('plan', { ...ADD, hostname: 'sdw2', port: 5433 });
    expect((await t.load()).segments.find((r) => r.dbid === 6)).toMatchObject({ hostname: 'sdw2', instanceId: 'i-2', availabilityZone: 'az2' });
  });
});

describe('a whole run through the synthesized state machine', () => {
  test('adds a standby: copied, streaming, marked m/u/n, sync rep on, released; the steps in order', async () => {
    const t = await setup();
    const run = await t.execute({ ...ADD, pollSeconds: 1, stallSeconds: 10 });
    expect(run).toMatchObject({ status: 'SUCCEEDED' });
    const s = await t.load();
    expect(s.segments.find((r) => r.dbid === 6)).toMatchObject({ role: 'm', status: 'u', mode: 'n', hostname: 'scdw2', port: 5433 });
    expect(s.pendingOperations).toEqual([]);
    expect(t.world.instance(1).syncStandbyDbid).toBe(6);
    expect(t.world.instance(1).slots).toContain(6);
    expect(t.world.streaming(t.world.instance(6))).toBe(true);
    expect((run.output as { finish: { message: string } }).finish.message).toMatch(/standby dbid 6 on scdw2:5433 .* streams from coordinator dbid 1; sync rep is on/);
    expect(await t.history()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^gpinitstandby: add standby dbid 6 on scdw2:5433/),
        'FTS: update role, status, and mode for dbid 6 with contentid -1 to m, u, and n: gpinitstandby: standby on scdw2:5433 datadir /data/coordinator/gpseg-1 copied and streaming from coordinator dbid 1',
      ]),
    );
    // The copy went through the host job (pg_basebackup into the new directory), then sync rep.
    const calls = t.world.calls.filter((c) => /^(rebuild|sync-rep|job-status|wal-receiver)/.test(c));
    expect(calls).toEqual(['rebuild 6 from 1 (basebackup)', 'job-status job-1-dbid-6', 'wal-receiver 6', 'sync-rep on 1']);
  });

  test('asynchronous mode (standbySynchronous false): the standby is added, sync rep stays off', async () => {
    const t = await setup(baseRows(), { ...DEFAULT_SETTINGS, standbySynchronous: false });
    const run = await t.execute(ADD);
    expect(run.status).toBe('SUCCEEDED');
    expect(t.world.instance(1).syncStandbyDbid).toBeUndefined();
    expect((run.output as { finish: { message: string } }).finish.message).toMatch(/asynchronous mode \(standbySynchronous false\): sync rep stays off/);
  });

  test('a step that fails once is retried: the run succeeds as if nothing happened', async () => {
    const t = await setup();
    const walReceiver = t.world.walReceiver.bind(t.world);
    let failures = 0;
    t.world.walReceiver = async (segment) => {
      if (failures++ === 0) throw new SegmentUnreachableError(`dbid ${segment.dbid}: connect ECONNREFUSED (a blip)`);
      return walReceiver(segment);
    };
    const startRebuild = t.world.startRebuild.bind(t.world);
    let starts = 0;
    t.world.startRebuild = async (...args) => {
      if (starts++ === 0) throw new HostCommandError('SSM did not deliver the command (a blip)');
      return startRebuild(...args);
    };
    const run = await t.execute(ADD);
    expect(run.status).toBe('SUCCEEDED');
    expect(starts).toBe(2);
    expect(failures).toBe(2);
    expect((await t.load()).segments.find((r) => r.dbid === 6)).toMatchObject({ status: 'u', mode: 'n' });
    // One row, one hold taken and released: the retries changed nothing twice.
    expect((await t.load()).segments.filter((r) => r.content === -1)).toHaveLength(2);
    expect((await t.load()).pendingOperations).toEqual([]);
  });

  test('a failed copy is undone: the copy cancelled, the slot dropped, the row removed with a history row, the hold released', async () => {
    const t = await setup();
    t.world.scriptedJobs.push({ state: 'failed', exitCode: 1, message: 'pg_basebackup: error: could not connect to server' });
    const run = await t.execute(ADD);
    expect(run).toMatchObject({ status: 'FAILED', error: 'InitStandbyFailed' });
    expect(run.cause).toMatch(/gpinitstandby of standby dbid 6 on scdw2:5433 .* failed: RebuildFailedError: the copy into standby dbid 6 .* failed \(exit 1\): pg_basebackup: error: could not connect to server\. Its row was removed from the catalog and content -1 released; its data directory \/data\/coordinator\/gpseg-1 on scdw2 is left for the next attempt/);
    const s = await t.load();
    expect(s.segments.map((r) => r.dbid)).toEqual([1, 2, 3, 4, 5]);
    expect(s.pendingOperations).toEqual([]);
    expect(s.segments[0]).toMatchObject({ role: 'p', status: 'u', mode: 'n' });
    expect(t.world.calls).toEqual(expect.arrayContaining(['cancel-job job-1-dbid-6', 'drop-slot 1 6']));
    expect(t.world.instance(1).slots).not.toContain(6);
    expect((await t.history()).at(-1)).toMatch(/^gpinitstandby: standby dbid 6 on scdw2:5433 .* removed: its init failed: RebuildFailedError/);
    // Another attempt can start at once.
    t.world.calls.length = 0;
    expect((await t.execute(ADD, 'initstandby-c1-v3-again')).status).toBe('SUCCEEDED');
  });

  test('a copy that never streams is undone too, the standby stopped', async () => {
    const t = await setup();
    const startRebuild = t.world.startRebuild.bind(t.world);
    t.world.startRebuild = async (...args) => {
      const job = await startRebuild(...args);
      t.world.instance(6).stuckReceiver = 'waiting';
      return job;
    };
    const run = await t.execute(ADD);
    expect(run).toMatchObject({ status: 'FAILED', error: 'InitStandbyFailed' });
    expect(run.cause).toMatch(/runs but does not stream from coordinator dbid 1 \(its WAL receiver is waiting\) 60 s after its copy/);
    expect(t.world.calls).toEqual(expect.arrayContaining(['sync-rep off 1', 'stop 6', 'drop-slot 1 6']));
    expect(t.world.instance(6).running).toBe(false);
    expect((await t.load()).segments.some((r) => r.dbid === 6)).toBe(false);
  });

  test('bad console input ends in InvalidInput, nothing changed', async () => {
    const t = await setup(withStandby());
    const run = await t.execute(ADD);
    expect(run).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(JSON.parse(run.cause as string).errorMessage).toMatch(/has a standby already: dbid 6/);
    expect((await t.load()).version).toBe(1);
  });

  test('-r: the pair marked n, sync rep off first, the standby stopped, its slot dropped, its row removed; the coordinator runs alone', async () => {
    const t = await setup(withStandby());
    const run = await t.execute({ clusterId: CLUSTER, remove: true });
    expect(run).toMatchObject({ status: 'SUCCEEDED' });
    const order = t.world.calls.filter((c) => /^(sync-rep|stop|drop-slot)/.test(c));
    expect(order).toEqual(['sync-rep off 1', 'stop 6', 'drop-slot 1 6']);
    const s = await t.load();
    expect(s.segments.map((r) => r.dbid)).toEqual([1, 2, 3, 4, 5]);
    expect(s.segments[0]).toMatchObject({ role: 'p', status: 'u', mode: 'n' });
    expect(s.pendingOperations).toEqual([]);
    expect(t.world.instance(1).slots).not.toContain(6);
    expect(await t.history()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^gpinitstandby -r: removing standby dbid 6 on scdw:5432/),
        'FTS: update role, status, and mode for dbid 1 with contentid -1 to p, u, and n: gpinitstandby -r: synchronous replication to standby dbid 6 turned off before it is removed',
        expect.stringMatching(/^gpinitstandby -r: standby dbid 6 on scdw:5432 datadir \/data\/coordinator\/gpseg-1 removed/),
      ]),
    );
    expect((run.output as { removeStandby: { message: string } }).removeStandby.message).toMatch(/standby dbid 6 .* removed; its replication slot fts_mirror_dbid_6 on coordinator dbid 1 dropped/);
  });

  test('-r with the standby host down: reported, and the row goes (it does not stream)', async () => {
    const t = await setup(withStandby());
    t.world.crashHost('scdw');
    const run = await t.execute({ clusterId: CLUSTER, remove: true });
    expect(run.status).toBe('SUCCEEDED');
    expect((run.output as { stopStandby: { warning: string } }).stopStandby.warning).toMatch(/the stop of standby dbid 6 .* failed \(host scdw does not answer\); it does not stream from the coordinator, so it is removed anyway/);
    expect((await t.load()).segments.some((r) => r.dbid === 6)).toBe(false);
  });

  test('-r with the standby unreachable but still streaming: refused after its retries, the row stays, the hold is released', async () => {
    const t = await setup(withStandby());
    t.world.isolateHost('scdw');
    const run = await t.execute({ clusterId: CLUSTER, remove: true });
    expect(run).toMatchObject({ status: 'FAILED', error: 'RemoveStandbyFailed' });
    expect(run.cause).toMatch(/still streams from the coordinator \(streaming\): stop it by hand, then run gpinitstandby -r again/);
    expect(t.world.calls.filter((c) => c === 'stop 6')).toHaveLength(4); // the step and its 3 retries; the host never answered
    const s = await t.load();
    expect(s.segments.find((r) => r.dbid === 6)).toBeDefined();
    expect(s.pendingOperations).toEqual([]);
  });

  test('after -r, a new standby can be added', async () => {
    const t = await setup(withStandby());
    expect((await t.execute({ clusterId: CLUSTER, remove: true })).status).toBe('SUCCEEDED');
    const run = await t.execute(ADD, 'initstandby-c1-v5-add');
    expect(run.status).toBe('SUCCEEDED');
    expect((await t.load()).segments.find((r) => r.content === -1 && r.role === 'm')).toMatchObject({ dbid: 6, hostname: 'scdw2', status: 'u' });
  });
});

describe('single steps check their state document against the catalog', () => {
  const planned = async (t: Awaited<ReturnType<typeof setup>>) => ({ ...ADD, plan: await t.step('plan', ADD) });

  test('a plan naming another row, or a step of the other action, is refused with nothing done', async () => {
    const t = await setup();
    const doc = await planned(t);
    const calls = t.world.calls.length;
    await expect(t.step('start-copy', { ...doc, plan: { ...(doc.plan as object), dbid: 2 } })).rejects.toThrow(/dbid 2 of cluster c1 is not the standby this execution planned/);
    await expect(t.step('stop-standby', doc)).rejects.toThrow(/this step is for removing a standby, but the plan adds one/);
    await expect(t.step('start-copy', { ...doc, plan: 'x' })).rejects.toThrow(/the state document has no InitStandby plan/);
    await expect(t.step('start-copy', { ...doc, surprise: 1 })).resolves.toBeDefined(); // step results are not input keys
    expect(t.world.calls.length).toBeGreaterThan(calls);
  });

  test('a copy that makes no progress for stallSeconds is cancelled', async () => {
    const t = await setup();
    const doc = await planned(t);
    t.world.scriptedJobs.push({ state: 'running', progress: { bytes: 100, total: 1000, tool: 'pg_basebackup' } });
    const startCopy = await t.step('start-copy', doc);
    const first = await t.step('poll-copy', { ...doc, startCopy });
    expect(first).toMatchObject({ state: 'running' });
    t.advance(901);
    await expect(t.step('poll-copy', { ...doc, startCopy, pollCopy: first })).rejects.toThrow(/made no progress for 901 s \(limit 900 s from stallSeconds 900\): cancelled/);
    expect(t.world.calls).toContain('cancel-job job-1-dbid-6');
  });

  test('a directory that is not safe to empty is refused with a clear message', async () => {
    const t = await setup();
    const doc = await planned(t);
    t.world.scriptedJobs.push({ state: 'failed', exitCode: 11, wipeRefused: true, message: 'it is the data directory of dbid 1, not of dbid 6' });
    const startCopy = await t.step('start-copy', doc);
    await expect(t.step('poll-copy', { ...doc, startCopy })).rejects.toThrow(/refusing to copy into \/data\/coordinator\/gpseg-1 on scdw2: it is the data directory of dbid 1, not of dbid 6; nothing was deleted/);
  });

  test('finish run again after it committed changes nothing', async () => {
    const t = await setup();
    const run = await t.execute(ADD);
    const doc = { ...ADD, plan: (run.output as { plan: unknown }).plan };
    const version = (await t.load()).version;
    await expect(t.step('finish', doc)).resolves.toMatchObject({ already: true });
    expect((await t.load()).version).toBe(version);
  });

  test('record-failure before any plan says nothing was changed', async () => {
    const t = await setup();
    const out = await t.step('record-failure', { ...ADD, error: { Error: 'States.Timeout', Cause: 'timed out' } });
    expect(out).toEqual({ remove: false, message: 'gpinitstandby failed before it planned anything: States.Timeout: timed out; nothing was changed' });
    expect((await t.load()).version).toBe(1);
  });
});

test('the spec: every Task has a step, the execution name follows the request', () => {
  const input = INIT_STANDBY_SPEC.input.parse({ ...ADD, catalogVersion: 7 });
  expect(INIT_STANDBY_SPEC.executionName(input)).toMatch(/^initstandby-c1-v7-[0-9a-f]{8}$/);
  expect(INIT_STANDBY_SPEC.executionName(INIT_STANDBY_SPEC.input.parse({ clusterId: CLUSTER, remove: true, catalogVersion: 7 }))).not.toBe(INIT_STANDBY_SPEC.executionName(input));
});
