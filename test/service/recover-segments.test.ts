/**
 * The RecoverSegments steps (gprecoverseg) on the in-memory fakes: no PostgreSQL, no
 * DynamoDB, milliseconds per test. Each step runs through `runRecoverSegmentsStepEvent`
 * with a state document built as the state machine builds it: the input, the plan at
 * `$.plan`, Map iterations of `{ clusterId, pollSeconds, stallSeconds, item }` that
 * accumulate each step's result under its camelCase name, a Catch's `{ Error, Cause }` at
 * `$.error`, and the iterations' final documents at `$.results`. Time is the test's clock:
 * pauses inside a step (`deps.sleep`) and Wait states move it on and take no real time.
 * The same steps run on real PostgreSQL in test/e2e.
 */
import { performance } from 'node:perf_hooks';
import { planFailover } from '../../lambdas/core/decide';
import { ContentBusyError, RebuildFailedError, ValidationError } from '../../lambdas/core/errors';
import type { CatalogChange, PendingOperation, SegmentRow } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import type { HostJobStatus } from '../../lambdas/ports/segments';
import type { Telemetry } from '../../lambdas/ports/telemetry';
import { HOLD_TTL_SECONDS, MAX_BUSY_STARTS, MAX_REBUILD_STARTS, STREAM_WAIT_SECONDS, UNMEASURED_PHASE_FACTOR } from '../../lambdas/service/rebuild-steps';
import { runRecoverSegmentsStepEvent } from '../../lambdas/service/recover-segments';
import type { WorkflowDeps } from '../../lambdas/service/steps';
import { DEFAULT_STALL_SECONDS, RECOVER_SEGMENTS_SPEC } from '../../lambdas/workflows/recover-segments';
import type { MapSpec } from '../../lambdas/workflows/spec';
import { iterateMap, iterationDoc as mapIterationDoc, lambdaError, type Doc } from '../support/map-driver';
import { FakeCatalog, FakeSegments } from '../support/fakes';

const CLUSTER = 'c1';
const EXEC = 'recoverseg-c1-v1-0a1b2c3d';
const OTHER = 'recoverseg-c1-v1-ffffffff';
/** A later execution of another request. */
const THIRD = 'recoverseg-c1-v2-12345678';
const NOW = new Date('2026-11-23T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
/** A hold taken at NOW lapses HOLD_TTL_SECONDS later unless a step renews it. */
const HOLD_UNTIL = iso(NOW.getTime() + HOLD_TTL_SECONDS * 1000);


/**
 * Coordinator 1 on cdw; content c (0-3): primary dbid 2+c on sdw(c%3+1) port 6000+c,
 * mirror dbid 6+c on the next host, port 7000+c. So content 0 is primary 2 on sdw1 and
 * mirror 6 on sdw2; content 3 is primary 5 on sdw1 and mirror 9 on sdw2.
 */
function baseRows(): SegmentRow[] {
  const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number): SegmentRow => ({
    dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`,
    datadir: content === -1 ? '/data/coordinator/gpseg-1' : `/data/${role === 'p' ? 'primary' : 'mirror'}/gpseg${content}`,
  });
  const rows = [row(1, -1, 'p', 'cdw', 5432)];
  for (let c = 0; c < 4; c++) {
    rows.push(row(2 + c, c, 'p', `sdw${(c % 3) + 1}`, 6000 + c));
    rows.push(row(6 + c, c, 'm', `sdw${((c + 1) % 3) + 1}`, 7000 + c));
  }
  return rows;
}

/** The mirror of each content is down: primary p/u/n, mirror m/d/n. */
const mirrorDown = (...contents: number[]) => (rows: SegmentRow[]): SegmentRow[] =>
  rows.map((r) => (contents.includes(r.content) ? { ...r, mode: 'n' as const, ...(r.role === 'm' ? { status: 'd' as const } : {}) } : r));
/** Both rows of each content are down (double fault). */
const bothDown = (...contents: number[]) => (rows: SegmentRow[]): SegmentRow[] =>
  rows.map((r) => (contents.includes(r.content) ? { ...r, mode: 'n' as const, status: 'd' as const } : r));

const hold = (content: number, execution: string, over: Partial<PendingOperation> = {}): PendingOperation => ({
  content, kind: 'recovery', execution, since: NOW.toISOString(), expiresAt: HOLD_UNTIL, ...over,
});

/** A planned rebuild, its keys in the order `plan` writes them (a hold records it as JSON text). */
type Item = { content: number; dbid: number; sourceDbid: number; method: 'rewind' | 'basebackup'; previous?: Doc };
/** The rewind of content 0's mirror (dbid 6) from its primary (dbid 2), and of content 3's (dbid 9 from dbid 5). */
const REWIND_0: Item = { content: 0, dbid: 6, sourceDbid: 2, method: 'rewind' };
const REWIND_3: Item = { content: 3, dbid: 9, sourceDbid: 5, method: 'rewind' };
/** The hold `plan` takes for `item`: it records the item as the JSON text of its `plan`. */
const held = (item: Item, execution = EXEC, over: Partial<PendingOperation> = {}): PendingOperation => hold(item.content, execution, { plan: JSON.stringify(item), ...over });
/** The warning of a plan run again by the same execution. */
const PLANNED_AGAIN = 'planned again after a retried step: the contents this execution holds, as first planned; contents it left alone then are not listed again';



const MAP = RECOVER_SEGMENTS_SPEC.states.RecoverEach as MapSpec;

async function setup(shape: (rows: SegmentRow[]) => SegmentRow[] = (r) => r, prepare?: (write: (change: CatalogChange) => Promise<number>) => Promise<void>) {
  let clock = NOW;
  const catalog = new FakeCatalog();
  catalog.clock = () => clock;
  await catalog.initialize(CLUSTER, shape(baseRows()), DEFAULT_SETTINGS, NOW.toISOString());
  const write = async (change: CatalogChange) => catalog.apply(CLUSTER, (await catalog.load(CLUSTER)).version, change);
  if (prepare) await prepare(write);
  const world = FakeSegments.fromRows((await catalog.load(CLUSTER)).segments, { now: () => clock });
  const warnings: string[] = [];
  const errors: string[] = [];
  const telemetry: Telemetry = { info() {}, warn: (m) => void warnings.push(m), error: (m) => void errors.push(m), metric() {}, flush() {} };
  // Pauses inside a step advance the test's clock: a wait of seconds takes no time.
  const sleep = async (ms: number) => {
    clock = new Date(clock.getTime() + ms);
  };
  const deps: WorkflowDeps = { catalog, probe: world, control: world, host: world, telemetry, now: () => clock, sleep };
  const step = (name: string, input: unknown, execution = EXEC) => runRecoverSegmentsStepEvent(deps, { step: name, input, execution });
  const load = () => catalog.load(CLUSTER);
  const history = async () => (await catalog.history(CLUSTER)).map((h) => h.description);
  const rowState = async (dbid: number) => {
    const r = (await load()).segments.find((s) => s.dbid === dbid)!;
    return `${r.role}/${r.status}/${r.mode}`;
  };
  const setClock = (to: Date) => {
    clock = to;
  };
  /** Runs `plan` and returns the outer state document with its result at `$.plan`. */
  const planned = async (input: Doc = {}, execution = EXEC): Promise<Doc & { plan: { recoveries: Doc[]; skipped: Doc[]; upToDate: number[]; warnings: string[]; pollSeconds: number; stallSeconds: number } }> => {
    const doc: Doc = { clusterId: CLUSTER, ...input };
    return { ...doc, plan: (await step('plan', doc, execution)) as never };
  };
  const iterationDoc = (outer: Doc, item: unknown): Doc => mapIterationDoc(MAP, outer, item);
  /** One Map iteration through the spec's states (a Wait moves the test clock on; Retry rules are not replayed). */
  const iterate = (outer: Doc, item: unknown, execution = EXEC) =>
    iterateMap(MAP, iterationDoc(outer, item), (name, doc) => step(name, doc, execution), (seconds) => {
      clock = new Date(clock.getTime() + seconds * 1000);
    });
  /** A whole execution: Plan (ValidationError -> InvalidInput), each item in turn (the Map), Summarize, Complete. */
  const execute = async (input: Doc, execution = EXEC) => {
    const doc: Doc = { clusterId: CLUSTER, ...input };
    try {
      doc.plan = await step('plan', doc, execution);
    } catch (e) {
      if (e instanceof ValidationError) return { status: 'InvalidInput', doc };
      doc.error = lambdaError(e as Error);
    }
    if (!doc.error) {
      const results: Doc[] = [];
      for (const item of (doc.plan as { recoveries: unknown[] }).recoveries) results.push((await iterate(doc, item, execution)).doc);
      doc.results = results;
    }
    doc.summarize = await step('summarize', doc, execution);
    return { status: (doc.summarize as { complete: boolean }).complete ? 'Recovered' : 'RecoveryIncomplete', doc };
  };
  return { catalog, world, deps, step, write, load, history, rowState, setClock, planned, iterationDoc, iterate, execute, warnings, errors };
}

describe('plan', () => {
  test('holds exactly the contents it will rebuild, for HOLD_TTL_SECONDS, with a history row each', async () => {
    const { step, load, history, world } = await setup(mirrorDown(0, 3));
    const plan = await step('plan', { clusterId: CLUSTER });
    expect(plan).toEqual({
      recoveries: [
        { content: 0, dbid: 6, sourceDbid: 2, method: 'rewind' },
        { content: 3, dbid: 9, sourceDbid: 5, method: 'rewind' },
      ],
      skipped: [],
      upToDate: [],
      warnings: [],
      parallel: 16,
      pollSeconds: 10,
      stallSeconds: DEFAULT_STALL_SECONDS,
    });
    expect(DEFAULT_STALL_SECONDS).toBe(900);
    const snapshot = await load();
    expect(snapshot.version).toBe(2);
    // Each hold records, as JSON text, the item planned for its content.
    expect(snapshot.pendingOperations).toEqual([held(REWIND_0), held(REWIND_3)]);
    expect(snapshot.pendingOperations.map((op) => JSON.parse(op.plan!) as unknown)).toEqual(plan.recoveries);
    expect(snapshot.segments).toEqual(mirrorDown(0, 3)(baseRows()).sort((a, b) => a.dbid - b.dbid));
    expect((await history()).slice(1)).toEqual([
      `FTS: gprecoverseg (${EXEC}) holds content 0 to rebuild dbid 6 from dbid 2 by rewind`,
      `FTS: gprecoverseg (${EXEC}) holds content 3 to rebuild dbid 9 from dbid 5 by rewind`,
    ]);
    expect(world.calls).toEqual([]);
  });

  test('full mode copies by basebackup; contents, parallel, pollSeconds and stallSeconds are taken as given', async () => {
    const { step, load } = await setup(mirrorDown(0, 3));
    const plan = await step('plan', { clusterId: CLUSTER, mode: 'full', contents: [3], parallel: 2, pollSeconds: 1, stallSeconds: 120 });
    expect(plan).toEqual({ recoveries: [{ content: 3, dbid: 9, sourceDbid: 5, method: 'basebackup' }], skipped: [], upToDate: [], warnings: [], parallel: 2, pollSeconds: 1, stallSeconds: 120 });
    expect((await load()).pendingOperations).toEqual([held({ ...REWIND_3, method: 'basebackup' })]);
  });

  test('stallSeconds reaches every iteration through the Map item selector, and a re-planned execution keeps it', async () => {
    const { planned, iterationDoc } = await setup(mirrorDown(0, 3));
    const outer = await planned({ stallSeconds: 45 });
    expect(outer.plan.recoveries.map((item) => iterationDoc(outer, item))).toEqual([
      { clusterId: CLUSTER, pollSeconds: 10, stallSeconds: 45, item: REWIND_0 },
      { clusterId: CLUSTER, pollSeconds: 10, stallSeconds: 45, item: REWIND_3 },
    ]);
    expect((await planned({ stallSeconds: 45 })).plan).toMatchObject({ warnings: [PLANNED_AGAIN], stallSeconds: 45 });
  });

  test.each<[string, Doc, RegExp]>([
    ['below 10 s', { stallSeconds: 9 }, /stallSeconds/],
    ['over a day', { stallSeconds: 86_401 }, /stallSeconds/],
    ['not whole seconds', { stallSeconds: 30.5 }, /stallSeconds/],
  ])('refuses a stallSeconds %s with ValidationError', async (_name, over, message) => {
    const { step, load } = await setup(mirrorDown(0));
    await expect(step('plan', { clusterId: CLUSTER, ...over })).rejects.toThrow(ValidationError);
    await expect(step('plan', { clusterId: CLUSTER, ...over })).rejects.toThrow(message);
    expect((await load()).version).toBe(1);
  });

  test('-i with a new location: the row is moved first, in the same write as the hold, and the item names its old place', async () => {
    const { step, load, history } = await setup(mirrorDown(0));
    const recoverConfig = '# moved off sdw2\nsdw2.internal|7000|/data/mirror/gpseg0 sdw3.internal|7100|/data/mirror//gpseg0/\n';
    const plan = await step('plan', { clusterId: CLUSTER, recoverConfig });
    expect(plan).toMatchObject({
      recoveries: [{ content: 0, dbid: 6, sourceDbid: 2, method: 'basebackup', previous: { hostname: 'sdw2', address: 'sdw2.internal', port: 7000, datadir: '/data/mirror/gpseg0' } }],
      skipped: [],
      warnings: [],
    });
    const snapshot = await load();
    expect(snapshot.version).toBe(2);
    expect(snapshot.segments.find((r) => r.dbid === 6)).toMatchObject({ hostname: 'sdw3', address: 'sdw3.internal', port: 7100, datadir: '/data/mirror/gpseg0', role: 'm', status: 'd', mode: 'n' });
    // The hold records the old place too: a re-run of the plan reads it back from there.
    expect(snapshot.pendingOperations).toEqual([
      held({ ...REWIND_0, method: 'basebackup', previous: { hostname: 'sdw2', address: 'sdw2.internal', port: 7000, datadir: '/data/mirror/gpseg0' } }),
    ]);
    expect((await history()).slice(1)).toEqual([
      'FTS: dbid 6 with contentid 0 moved for recovery from sdw2 sdw2.internal:7000 /data/mirror/gpseg0 to sdw3 sdw3.internal:7100 /data/mirror/gpseg0',
      `FTS: gprecoverseg (${EXEC}) holds content 0 to rebuild dbid 6 from dbid 2 by basebackup`,
    ]);
  });

  test('-i to an address the cluster does not know: moved, with a warning', async () => {
    const { step, load } = await setup(mirrorDown(0));
    const plan = await step('plan', { clusterId: CLUSTER, recoverConfig: 'sdw2.internal|7000|/data/mirror/gpseg0 10.0.3.7|7000|/data/mirror/gpseg0' });
    expect(plan.warnings).toEqual([expect.stringMatching(/^line 1: 10\.0\.3\.7 is not a host of cluster c1; it becomes the hostname of dbid 6/)]);
    expect((await load()).segments.find((r) => r.dbid === 6)).toMatchObject({ hostname: '10.0.3.7', address: '10.0.3.7' });
  });

  test('-p spare host: same port and directory on the spare, its placement taken, basebackup', async () => {
    const { step, load, history } = await setup(mirrorDown(0));
    const plan = await step('plan', { clusterId: CLUSTER, spareHost: { hostname: 'sdw9', address: '10.0.3.9', availabilityZone: 'us-east-1c' } });
    expect(plan.recoveries).toEqual([{ content: 0, dbid: 6, sourceDbid: 2, method: 'basebackup', previous: { hostname: 'sdw2', address: 'sdw2.internal', port: 7000, datadir: '/data/mirror/gpseg0' } }]);
    expect((await load()).segments.find((r) => r.dbid === 6)).toEqual({ ...baseRows().find((r) => r.dbid === 6), status: 'd', mode: 'n', hostname: 'sdw9', address: '10.0.3.9', availabilityZone: 'us-east-1c' });
    expect((await history()).at(-2)).toBe('FTS: dbid 6 with contentid 0 moved for recovery from sdw2 sdw2.internal:7000 /data/mirror/gpseg0 to sdw9 10.0.3.9:7000 /data/mirror/gpseg0');
  });

  test('skips, each with its reason and without holding it: a double fault, a pending promotion, a content another execution holds; then a fence owed', async () => {
    const { step, load, write, world } = await setup(
      (rows) => bothDown(1)(mirrorDown(0, 3)(rows)),
      async (w) => void (await w({ rows: [], history: [], setOperations: [hold(3, OTHER)] })),
    );
    // Content 2: the prober is failing it over (primary 4 demoted, mirror 8 flipped, promotion pending, fence owed to 4).
    await write(planFailover(await load(), 2, 4, 8, NOW));
    const before = await load();
    const plan = await step('plan', { clusterId: CLUSTER });
    expect(plan.recoveries).toEqual([{ content: 0, dbid: 6, sourceDbid: 2, method: 'rewind' }]);
    expect(plan.skipped).toEqual([
      { content: 1, reason: 'acting primary dbid 3 is down as well as mirror dbid 7 (double fault): no source to recover from' },
      { content: 2, reason: 'a promotion of dbid 8 (replacing dbid 4) is pending: the prober is failing it over; recover once it completes' },
      { content: 3, reason: `content 3 is held by recovery execution ${OTHER} (since ${NOW.toISOString()}, until ${HOLD_UNTIL}): another workflow is working on it` },
    ]);
    const after = await load();
    expect(after.pendingOperations).toEqual([held(REWIND_0), hold(3, OTHER)]);
    expect(after.pendingPromotions).toEqual(before.pendingPromotions);
    expect(after.segments).toEqual(before.segments);

    // The promotion completed, but its fence of dbid 4 is still owed: still skipped (by a
    // new execution; this one would read back what it planned before, see below).
    await write({ rows: [], history: [], clearPending: [2] });
    const again = await step('plan', { clusterId: CLUSTER }, THIRD);
    expect(again.skipped).toContainEqual({ content: 2, reason: 'a fence is still owed to dbid 4 (its host has not answered since it was failed over): it is fenced before it is rebuilt' });
    expect((await load()).pendingOperations.map((o) => o.content)).toEqual([0, 3]);
    expect(world.calls).toEqual([]);
  });

  test('a content held by another execution is never taken, even when named, and even when taken between the read and the write', async () => {
    const { step, load, catalog } = await setup(mirrorDown(0, 3), async (w) => void (await w({ rows: [], history: [], setOperations: [hold(3, OTHER)] })));
    const named = await step('plan', { clusterId: CLUSTER, contents: [3] });
    expect(named).toMatchObject({ recoveries: [], skipped: [{ content: 3, reason: expect.stringContaining(`held by recovery execution ${OTHER}`) }] });
    expect((await load()).version).toBe(2); // nothing to hold: nothing written

    // Another execution takes content 0 after this plan read the catalog: the write conflicts, the re-plan skips it.
    catalog.beforeApply = (id) => {
      catalog.beforeApply = undefined;
      void catalog.apply(id, 2, { rows: [], history: [], setOperations: [hold(0, OTHER)] });
    };
    const raced = await step('plan', { clusterId: CLUSTER, contents: [0] });
    expect(raced).toMatchObject({ recoveries: [], skipped: [{ content: 0, reason: expect.stringContaining(`held by recovery execution ${OTHER}`) }] });
    expect((await load()).pendingOperations).toEqual([hold(0, OTHER), hold(3, OTHER)]);
  });

  test('a hold of another execution that lapsed is taken', async () => {
    const { step, load, setClock } = await setup(mirrorDown(3), async (w) => void (await w({ rows: [], history: [], setOperations: [hold(3, OTHER, { expiresAt: iso(NOW.getTime() + 60_000) })] })));
    setClock(new Date(NOW.getTime() + 60_000));
    const plan = await step('plan', { clusterId: CLUSTER });
    expect(plan.recoveries).toEqual([{ content: 3, dbid: 9, sourceDbid: 5, method: 'rewind' }]);
    expect((await load()).pendingOperations).toEqual([held(REWIND_3, EXEC, { since: iso(NOW.getTime() + 60_000), expiresAt: iso(NOW.getTime() + 60_000 + HOLD_TTL_SECONDS * 1000) })]);
  });

  test('a re-run of the same execution returns the items its holds record: the same recoveries, with a warning, nothing written', async () => {
    const { step, load, history, world } = await setup((rows) => bothDown(1)(mirrorDown(0, 3)(rows)));
    const first = await step('plan', { clusterId: CLUSTER });
    expect(first).toMatchObject({ recoveries: [REWIND_0, REWIND_3], skipped: [{ content: 1, reason: expect.stringContaining('(double fault)') }], upToDate: [], warnings: [] });
    const after = await load();
    const rows = (await history()).length;
    // The Plan step retried after its catalog write committed: what it left alone then is not listed again.
    expect(await step('plan', { clusterId: CLUSTER })).toEqual({ ...first, skipped: [], upToDate: [], warnings: [PLANNED_AGAIN] });
    expect(await load()).toEqual(after); // its holds kept as they were
    expect(await history()).toHaveLength(rows);
    expect(world.calls).toEqual([]);
  });

  test('a re-run of the same execution with -p returns the same items: the old place is still named, the row not moved again', async () => {
    const { step, load } = await setup(mirrorDown(0));
    const input = { clusterId: CLUSTER, spareHost: { hostname: 'sdw9', address: '10.0.3.9' } };
    const first = await step('plan', input);
    expect(first.recoveries).toEqual([{ ...REWIND_0, method: 'basebackup', previous: { hostname: 'sdw2', address: 'sdw2.internal', port: 7000, datadir: '/data/mirror/gpseg0' } }]);
    const after = await load();
    expect(await step('plan', input)).toEqual({ ...first, skipped: [], upToDate: [], warnings: [PLANNED_AGAIN] });
    expect(await load()).toEqual(after);
  });

  test('a re-run of the same execution with -i returns the same items (no ValidationError about the old place), and the run recovers the moved row', async () => {
    const s = await setup(mirrorDown(0));
    const input = { recoverConfig: 'sdw2.internal|7000|/data/mirror/gpseg0 sdw3.internal|7100|/data/mirror/gpseg0' };
    const first = await s.step('plan', { clusterId: CLUSTER, ...input });
    const after = await s.load();
    const again = await s.step('plan', { clusterId: CLUSTER, ...input });
    expect(again).toEqual({ ...first, skipped: [], upToDate: [], warnings: [PLANNED_AGAIN] });
    expect(again.recoveries).toEqual([{ ...REWIND_0, method: 'basebackup', previous: { hostname: 'sdw2', address: 'sdw2.internal', port: 7000, datadir: '/data/mirror/gpseg0' } }]);
    expect(await s.load()).toEqual(after);

    // The whole execution from its (third) Plan on: it goes on with what was first planned.
    const { status, doc } = await s.execute(input);
    expect(status).toBe('Recovered');
    expect(doc.summarize).toMatchObject({ warnings: [PLANNED_AGAIN], message: '1 content(s) recovered (0)' });
    expect(await s.rowState(6)).toBe('m/u/n');
    expect(s.world.instance(6)).toMatchObject({ hostname: 'sdw3', port: 7100, running: true, inRecovery: true, upstreamDbid: 2 });
    expect((await s.load()).pendingOperations).toEqual([]);
  });

  test('a hold of this execution whose plan it cannot read: ValidationError, nothing written; the plans of other executions are not read', async () => {
    const unreadable = hold(0, EXEC, { plan: JSON.stringify({ content: 0, dbid: 6, method: 'copy' }) });
    const theirs = hold(3, OTHER, { plan: JSON.stringify({ anything: true }) });
    const { step, load, world } = await setup(mirrorDown(0, 3), async (w) => void (await w({ rows: [], history: [], setOperations: [unreadable, theirs] })));
    const before = await load();
    const error = await step('plan', { clusterId: CLUSTER }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toBe(`the hold of content 0 by execution ${EXEC} records a plan this version cannot read: ${unreadable.plan}`);
    expect(await load()).toEqual(before);
    expect(world.calls).toEqual([]);

    // Another execution's plan is its own business: a new execution plans as usual and leaves both contents alone.
    expect(await step('plan', { clusterId: CLUSTER }, THIRD)).toMatchObject({ recoveries: [], skipped: [{ content: 0 }, { content: 3 }] });
  });

  // A plan text that is not JSON at all is refused like one of the wrong shape (the Plan
  // state sends ValidationError to InvalidInput with the "cannot read" message).
  test('a hold of this execution whose plan is not JSON: ValidationError too', async () => {
    const unreadable = hold(0, EXEC, { plan: 'rebuild dbid 6 from dbid 2' });
    const { step } = await setup(mirrorDown(0), async (w) => void (await w({ rows: [], history: [], setOperations: [unreadable] })));
    const error = await step('plan', { clusterId: CLUSTER }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toBe(`the hold of content 0 by execution ${EXEC} records a plan this version cannot read: ${unreadable.plan}`);
  });

  test('contents named that need nothing (both rows up) are up to date, not skipped; nothing is held or written for them', async () => {
    const { step, load } = await setup((rows) => bothDown(1)(mirrorDown(0)(rows)));
    const plan = await step('plan', { clusterId: CLUSTER, contents: [0, 1, 2, 3] });
    expect(plan).toEqual({
      recoveries: [REWIND_0],
      skipped: [{ content: 1, reason: 'acting primary dbid 3 is down as well as mirror dbid 7 (double fault): no source to recover from' }],
      upToDate: [2, 3],
      warnings: [],
      parallel: 16,
      pollSeconds: 10,
      stallSeconds: 900,
    });
    expect((await load()).pendingOperations).toEqual([held(REWIND_0)]);

    // Only contents that need nothing: nothing to hold, nothing written.
    const version = (await load()).version;
    expect(await step('plan', { clusterId: CLUSTER, contents: [2, 3] }, THIRD)).toEqual({ recoveries: [], skipped: [], upToDate: [2, 3], warnings: [], parallel: 16, pollSeconds: 10, stallSeconds: 900 });
    expect((await load()).version).toBe(version);
  });

  test.each<[string, Doc, RegExp]>([
    ['an unknown key', { dbid: 2 }, /invalid RecoverSegments input: Unrecognized key: "dbid"/],
    ['an unknown mode', { mode: 'fast' }, /mode: Invalid option/],
    ['an unknown content', { contents: [99] }, /cannot plan the recovery of cluster c1: content 99 is not in the catalog of cluster c1/],
    ['a catalog version from the future', { catalogVersion: 9 }, /catalogVersion 9 is newer than the catalog of cluster c1 \(version 1\)/],
    ['a -i line that does not parse', { recoverConfig: 'sdw1|x|/data' }, /invalid recover config: line 1: the failed port "x" is not a port \(1-65535\)/],
    ['-i naming a mirror that is up', { recoverConfig: 'sdw3.internal|7001|/data/mirror/gpseg1' }, /line 1: sdw3\.internal\|7001\|\/data\/mirror\/gpseg1 is dbid 7, the mirror of content 1, and it is up: nothing to recover/],
    ['-i and -p together', { recoverConfig: 'sdw2.internal|7000|/data/mirror/gpseg0', spareHost: { hostname: 'sdw9', address: '10.0.3.9' } }, /recoverConfig and spareHost exclude each other/],
    ['-p onto the host of the primary', { spareHost: { hostname: 'sdw1', address: 'sdw1.internal' } }, /the recovery of cluster c1 would break its placement: moving dbid 6: .*is on host sdw1, the host of .*dbid 2/],
    ['-i into the data directory of another instance', { recoverConfig: 'sdw2.internal|7000|/data/mirror/gpseg0 sdw3.internal|7100|/data/primary/gpseg2/sub' }, /would use data directory \/data\/primary\/gpseg2\/sub on host sdw3, inside the data directory \/data\/primary\/gpseg2 of dbid 4/],
  ])('refuses %s with ValidationError and writes nothing', async (_name, over, message) => {
    const { step, load, history, world } = await setup(mirrorDown(0));
    const before = await load();
    const error = await step('plan', { clusterId: CLUSTER, ...over }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(message);
    expect(await load()).toEqual(before);
    expect(before.version).toBe(1);
    expect(await history()).toHaveLength(1);
    expect(world.calls).toEqual([]);
  });
});

describe('start-rebuild', () => {
  test('refuses (ContentBusyError) a content another execution holds now, touching nothing', async () => {
    const { planned, step, iterationDoc, write, setClock, world, load } = await setup(mirrorDown(0));
    const outer = await planned();
    const doc = iterationDoc(outer, outer.plan.recoveries[0]);
    setClock(new Date(Date.parse(HOLD_UNTIL) + 1000)); // the hold lapsed ...
    const theirs = hold(0, OTHER, { expiresAt: iso(Date.parse(HOLD_UNTIL) + 3_600_000) });
    await write({ rows: [], history: [], setOperations: [theirs] }); // ... and another execution took it
    const before = await load();
    const error = await step('start-rebuild', doc).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContentBusyError);
    expect((error as Error).message).toBe(`content 0 is no longer held by execution ${EXEC} (held by recovery execution ${OTHER}): not touching it`);
    expect(await load()).toEqual(before);
    expect(world.calls).toEqual([]);
    expect(world.jobsStarted).toEqual([]);
  });

  test('takes its own lapsed hold again when nobody else took it, and goes on', async () => {
    const { planned, step, iterationDoc, setClock, load, world } = await setup(mirrorDown(0));
    const outer = await planned();
    const later = new Date(Date.parse(HOLD_UNTIL) + 1000);
    setClock(later);
    expect(await step('start-rebuild', iterationDoc(outer, outer.plan.recoveries[0]))).toMatchObject({ job: { dbid: 6 }, starts: 1 });
    expect((await load()).pendingOperations).toEqual([held(REWIND_0, EXEC, { expiresAt: iso(later.getTime() + HOLD_TTL_SECONDS * 1000) })]); // renewed: taken when it was first taken, its plan kept
    expect(world.jobsStarted).toHaveLength(1);
  });

  test('fences an instance that answers as a writable primary where the mirror is rebuilt, then starts one job', async () => {
    const { planned, step, iterationDoc, world, warnings } = await setup(mirrorDown(0));
    Object.assign(world.instance(6), { running: true, inRecovery: false, upstreamDbid: undefined }); // restarted without its standby config
    const outer = await planned();
    const result = await step('start-rebuild', iterationDoc(outer, outer.plan.recoveries[0]));
    expect(result).toEqual({ job: { id: 'job-1-dbid-6', dbid: 6, startedAt: NOW.toISOString() }, starts: 1, busyStarts: 0 });
    expect(world.calls).toEqual(['probe 6', 'fence 6', 'rebuild 6 from 2 (rewind)']);
    expect(world.jobsStarted).toHaveLength(1);
    expect(warnings).toEqual(['dbid 6 answered at sdw2.internal:7000 before its rebuild: fenced']);
    expect(world.instance(6)).toMatchObject({ running: true, inRecovery: true, upstreamDbid: 2 });
  });

  test('does not fence an instance that answers in recovery where the mirror is rebuilt', async () => {
    const { planned, step, iterationDoc, world, warnings } = await setup(mirrorDown(0));
    Object.assign(world.instance(6), { running: true, inRecovery: true, needsRewind: true }); // a standby that cannot stream
    const outer = await planned();
    await step('start-rebuild', iterationDoc(outer, outer.plan.recoveries[0]));
    expect(world.calls.filter((c) => !c.startsWith('rebuild'))).toEqual(['probe 6']);
    expect(world.calls.filter((c) => c.startsWith('rebuild'))).toEqual(['rebuild 6 from 2 (rewind)']);
    expect(world.jobsStarted).toHaveLength(1);
    expect(warnings).toEqual([]);
  });

  test('after a move, fences whatever of the instance still answers at its old place, and copies to the new one', async () => {
    const { planned, step, iterationDoc, world, warnings } = await setup(mirrorDown(0));
    const old = world.instance(6);
    old.running = true; // came back as a standby at the old place
    const outer = await planned({ spareHost: { hostname: 'sdw9', address: '10.0.3.9' } });
    const result = await step('start-rebuild', iterationDoc(outer, outer.plan.recoveries[0]));
    expect(result).toMatchObject({ job: { dbid: 6 }, starts: 1 });
    // First the new place (nothing there), then the old one: fenced.
    expect(world.calls).toEqual(['probe 6', 'probe 6', 'fence 6', 'rebuild 6 from 2 (basebackup)']);
    expect(old).toMatchObject({ hostname: 'sdw2', running: false, fenced: true });
    expect(world.instance(6)).toMatchObject({ hostname: 'sdw9', address: '10.0.3.9', running: true, inRecovery: true, upstreamDbid: 2 });
    expect(warnings).toEqual(['dbid 6 answered at sdw2.internal:7000 before its rebuild: fenced']);
  });

  test('counts its starts from the previous start in the document', async () => {
    const { planned, step, iterationDoc } = await setup(mirrorDown(0));
    const outer = await planned();
    const doc = { ...iterationDoc(outer, outer.plan.recoveries[0]), startRebuild: { job: { id: 'job-0', dbid: 6, startedAt: NOW.toISOString() }, starts: 2 } };
    expect(await step('start-rebuild', doc)).toMatchObject({ starts: 3 });
  });

  test('a row already up returns job null, starts nothing, and its poll says succeeded', async () => {
    const { planned, step, iterationDoc, world, write, load } = await setup(mirrorDown(0));
    const outer = await planned();
    const row = (await load()).segments.find((r) => r.dbid === 6)!;
    await write({ rows: [{ ...row, status: 'u' }], history: [{ time: NOW.toISOString(), dbid: 6, description: 'up meanwhile' }] });
    const doc = iterationDoc(outer, outer.plan.recoveries[0]);
    doc.startRebuild = await step('start-rebuild', doc);
    expect(doc.startRebuild).toEqual({ job: null, starts: 1, busyStarts: 0, already: true });
    expect(await step('poll-rebuild', doc)).toEqual({ state: 'succeeded' });
    expect(world.calls).toEqual([]);
    expect(world.jobsStarted).toEqual([]);
  });
});

describe('poll-rebuild', () => {
  /** Plans content 0 (with `input`) and starts its rebuild at NOW with the job scripted to report `status`. */
  async function started(status?: HostJobStatus, input: Doc = {}) {
    const s = await setup(mirrorDown(0));
    if (status) s.world.scriptedJobs.push(status);
    const outer = await s.planned(input);
    const doc = s.iterationDoc(outer, outer.plan.recoveries[0]);
    doc.startRebuild = await s.step('start-rebuild', doc);
    return { ...s, doc };
  }
  const progress = { bytes: 1024, total: 4096, tool: 'pg_basebackup' };

  test('running, with its progress and the watch on its bytes; then succeeded', async () => {
    const { doc, step, world } = await started({ state: 'running', progress });
    expect(await step('poll-rebuild', doc)).toEqual({ state: 'running', watch: { bytes: 1024, at: NOW.toISOString() }, progress });
    world.setJobStatus(world.jobsStarted[0].id, { state: 'succeeded', exitCode: 0, progress: { ...progress, bytes: 4096 } });
    expect(await step('poll-rebuild', doc)).toEqual({ state: 'succeeded', progress: { ...progress, bytes: 4096 } });
    expect(world.calls.filter((c) => c.startsWith('job-status'))).toEqual(['job-status job-1-dbid-6', 'job-status job-1-dbid-6']);
  });

  test(`a lost process is started again, ${MAX_REBUILD_STARTS} starts in all, then RebuildFailedError is recorded and the content released`, async () => {
    const lost: HostJobStatus = { state: 'failed', lost: true, message: 'the rebuild process is gone (host restarted)' };
    const s = await setup(mirrorDown(0));
    for (let i = 0; i < MAX_REBUILD_STARTS; i++) s.world.scriptedJobs.push(lost);
    const outer = await s.planned();
    const { doc, visited } = await s.iterate(outer, outer.plan.recoveries[0]);
    const loop = ['StartRebuild', 'WaitForRebuild', 'PollRebuild'];
    expect(visited).toEqual([...Array.from({ length: MAX_REBUILD_STARTS - 1 }, () => [...loop, 'RebuildDone']).flat(), ...loop, 'RecordContentFailure']);
    expect(s.world.jobsStarted).toHaveLength(MAX_REBUILD_STARTS);
    expect(doc.startRebuild).toMatchObject({ starts: MAX_REBUILD_STARTS });
    const cause = 'RebuildFailedError: the rebuild of dbid 6 of content 0 failed: the rebuild process is gone (host restarted)';
    expect(doc.recordContentFailure).toEqual({ content: 0, dbid: 6, failed: true, cause });
    expect(s.world.calls.at(-1)).toBe(`cancel-job ${s.world.jobsStarted.at(-1)!.id}`);
    expect((await s.history()).at(-1)).toBe(`FTS: gprecoverseg of dbid 6 with contentid 0 failed: ${cause}`);
    expect(await s.load()).toMatchObject({ pendingOperations: [] });
    expect(await s.rowState(6)).toBe('m/d/n');
  });

  test('a job that failed without an exit status but was not lost (timed out, cancelled) is not started again', async () => {
    const s = await setup(mirrorDown(0));
    const outer = await s.planned();
    s.world.scriptedJobs.push({ state: 'failed', message: 'TimedOut after its executionTimeout' });
    const { visited } = await s.iterate(outer, outer.plan.recoveries[0]);
    expect(visited).toEqual(['StartRebuild', 'WaitForRebuild', 'PollRebuild', 'RecordContentFailure']);
  });

  test('a lost process started again that then succeeds: the mirror is marked recovered', async () => {
    const s = await setup(mirrorDown(0));
    s.world.scriptedJobs.push({ state: 'failed', lost: true, message: 'process lost' });
    const outer = await s.planned();
    const { doc, visited } = await s.iterate(outer, outer.plan.recoveries[0]);
    expect(visited).toEqual(['StartRebuild', 'WaitForRebuild', 'PollRebuild', 'RebuildDone', 'StartRebuild', 'WaitForRebuild', 'PollRebuild', 'RebuildDone', 'MarkRecovered']);
    expect(doc.startRebuild).toMatchObject({ starts: 2 });
    expect(await s.rowState(6)).toBe('m/u/n');
  });

  test('renews every hold of its execution once half used, queued contents included, and not before; leaves other holds alone', async () => {
    const s = await setup(mirrorDown(0, 1, 3), async (w) => void (await w({ rows: [], history: [], setOperations: [hold(1, OTHER)] })));
    s.world.scriptedJobs.push({ state: 'running' });
    const outer = await s.planned(); // holds 0 and 3 (1 is the other's)
    const doc = s.iterationDoc(outer, outer.plan.recoveries[0]);
    doc.startRebuild = await s.step('start-rebuild', doc);
    const version = (await s.load()).version;

    s.setClock(new Date(NOW.getTime() + (HOLD_TTL_SECONDS / 2 - 1) * 1000));
    const watch = { bytes: -1, at: NOW.toISOString() }; // no progress report: watched from the job's start
    expect(await s.step('poll-rebuild', doc)).toEqual({ state: 'running', watch });
    expect((await s.load()).version).toBe(version); // more than half left: nothing written

    const later = new Date(NOW.getTime() + (HOLD_TTL_SECONDS / 2 + 1) * 1000);
    s.setClock(later);
    expect(await s.step('poll-rebuild', doc)).toEqual({ state: 'running', watch });
    const renewed = iso(later.getTime() + HOLD_TTL_SECONDS * 1000);
    expect(await s.load()).toMatchObject({ version: version + 1, pendingOperations: [held(REWIND_0, EXEC, { expiresAt: renewed }), hold(1, OTHER), held(REWIND_3, EXEC, { expiresAt: renewed })] });
  });

  test('a content another execution took while its copy ran: ContentBusyError, and RecordContentFailure cancels the copy without touching their hold', async () => {
    const s = await setup(mirrorDown(0));
    s.world.scriptedJobs.push({ state: 'running' });
    const outer = await s.planned();
    const doc = s.iterationDoc(outer, outer.plan.recoveries[0]);
    doc.startRebuild = await s.step('start-rebuild', doc);
    s.setClock(new Date(Date.parse(HOLD_UNTIL) + 1000));
    const theirs = hold(0, OTHER, { expiresAt: iso(Date.parse(HOLD_UNTIL) + 3_600_000) });
    await s.write({ rows: [], history: [], setOperations: [theirs] });
    const error = (await s.step('poll-rebuild', doc).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(ContentBusyError);
    expect(s.world.calls.filter((c) => c.startsWith('job-status'))).toEqual([]);
    doc.error = lambdaError(error);
    expect(await s.step('record-content-failure', doc)).toMatchObject({ failed: true, cause: `ContentBusyError: ${error.message}` });
    expect(s.world.calls.at(-1)).toBe('cancel-job job-1-dbid-6');
    expect((await s.load()).pendingOperations).toEqual([theirs]);
  });

  // A copy whose bytes stop growing (a frozen host, a SIGSTOPped tool, a dead peer) must
  // not keep its content held for good: past stallSeconds without growth on the deps
  // clock it is cancelled and the content fails. The watch is { bytes, at }: the most
  // bytes seen and when they were first seen; a job starts with { -1, its start }.
  describe('stallSeconds', () => {
    const STALL = 60;
    const after = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);
    /** One poll at `seconds` after NOW, its result kept in the document as the state machine keeps it. */
    const pollAt = async (s: Awaited<ReturnType<typeof started>>, seconds: number) => {
      s.setClock(after(seconds));
      s.doc.pollRebuild = await s.step('poll-rebuild', s.doc);
      return s.doc.pollRebuild;
    };
    const report = (bytes: number): HostJobStatus => ({ state: 'running', progress: { ...progress, bytes } });

    test('bytes that grow move the watch on: a copy that takes far longer than stallSeconds is never cancelled while it progresses', async () => {
      const s = await started(report(0), { stallSeconds: STALL });
      const id = s.world.jobsStarted[0].id;
      expect(await pollAt(s, 10)).toEqual({ state: 'running', watch: { bytes: 0, at: after(10).toISOString() }, progress: { ...progress, bytes: 0 } });
      s.world.setJobStatus(id, report(1024));
      expect(await pollAt(s, 10 + STALL)).toMatchObject({ state: 'running', watch: { bytes: 1024, at: after(10 + STALL).toISOString() } });
      s.world.setJobStatus(id, report(2048));
      expect(await pollAt(s, 10 + 2 * STALL)).toMatchObject({ state: 'running', watch: { bytes: 2048, at: after(10 + 2 * STALL).toISOString() } });
      // Exactly stallSeconds without growth is not yet more than stallSeconds.
      expect(await pollAt(s, 10 + 3 * STALL)).toMatchObject({ state: 'running', watch: { bytes: 2048, at: after(10 + 2 * STALL).toISOString() } });
      s.world.setJobStatus(id, { state: 'succeeded', exitCode: 0, progress: { ...progress, bytes: 4096 } });
      expect(await pollAt(s, 10 + 4 * STALL)).toEqual({ state: 'succeeded', progress: { ...progress, bytes: 4096 } });
      expect(s.world.calls.filter((c) => c.startsWith('cancel-job'))).toEqual([]);
    });

    test('a poll without a progress report (its read timed out) or with fewer bytes keeps the watch as it was', async () => {
      const s = await started(report(2048), { stallSeconds: STALL });
      const id = s.world.jobsStarted[0].id;
      const watch = { bytes: 2048, at: after(10).toISOString() };
      expect(await pollAt(s, 10)).toMatchObject({ watch });
      s.world.setJobStatus(id, { state: 'running' });
      expect(await pollAt(s, 20)).toEqual({ state: 'running', watch });
      s.world.setJobStatus(id, report(1024));
      expect(await pollAt(s, 30)).toMatchObject({ state: 'running', watch });
      s.world.setJobStatus(id, { state: 'running' });
      const error = await pollAt(s, 11 + STALL).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RebuildFailedError);
      expect((error as Error).message).toBe(`the rebuild of dbid 6 of content 0 made no progress for ${STALL + 1} s (limit ${STALL} s from stallSeconds ${STALL}): cancelled`);
    });

    test('bytes that do not grow for more than stallSeconds: the job is cancelled, and the step fails with RebuildFailedError', async () => {
      const s = await started(report(1024), { stallSeconds: STALL });
      await pollAt(s, 10);
      await pollAt(s, 10 + STALL);
      const before = await s.load();
      s.world.calls.splice(0);
      const error = await pollAt(s, 10 + STALL + 1).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RebuildFailedError);
      expect((error as Error).message).toBe(`the rebuild of dbid 6 of content 0 made no progress for ${STALL + 1} s (limit ${STALL} s from stallSeconds ${STALL}): cancelled`);
      expect(s.world.calls).toEqual(['job-status job-1-dbid-6', 'cancel-job job-1-dbid-6']);
      expect(await s.load()).toEqual(before); // the failure step records it
    });

    test('a job that never reports progress is watched from its start, not from its first poll, with the longer limit of phases that report no bytes', async () => {
      const limit = UNMEASURED_PHASE_FACTOR * STALL;
      const s = await started({ state: 'running' }, { stallSeconds: STALL });
      expect(s.world.jobsStarted[0].startedAt).toBe(NOW.toISOString());
      expect(await pollAt(s, limit)).toEqual({ state: 'running', watch: { bytes: -1, at: NOW.toISOString() } });
      const fresh = await started({ state: 'running' }, { stallSeconds: STALL });
      const error = await pollAt(fresh, limit + 1).catch((e: unknown) => e); // its first poll
      expect(error).toBeInstanceOf(RebuildFailedError);
      expect((error as Error).message).toBe(`the rebuild of dbid 6 of content 0 made no progress for ${limit + 1} s (limit ${limit} s from stallSeconds ${STALL}): cancelled`);
      expect(fresh.world.calls.at(-1)).toBe('cancel-job job-1-dbid-6');
    });

    test('without stallSeconds in the document (an execution of an earlier version) the default of 900 s applies', async () => {
      const s = await started({ state: 'running' });
      delete s.doc.stallSeconds;
      const limit = UNMEASURED_PHASE_FACTOR * DEFAULT_STALL_SECONDS; // it never reported bytes
      expect(await pollAt(s, limit)).toMatchObject({ state: 'running' });
      await expect(pollAt(s, limit + 1)).rejects.toThrow(`made no progress for ${limit + 1} s (limit ${limit} s from stallSeconds ${DEFAULT_STALL_SECONDS}): cancelled`);
    });

    test('the whole loop on the Wait states\' clock: polled until stalled, cancelled, recorded as failed, the content released, not started again', async () => {
      const s = await setup(mirrorDown(0, 3));
      s.world.scriptedJobs.push(report(1024));
      const outer = await s.planned({ pollSeconds: 10, stallSeconds: 30 });
      const { doc, visited } = await s.iterate(outer, outer.plan.recoveries[0]);
      // Polls at 10 s (1024 bytes first seen), 20, 30, 40 (30 s without growth: not more), 50: cancelled.
      const loop = ['WaitForRebuild', 'PollRebuild', 'RebuildDone'];
      expect(visited).toEqual(['StartRebuild', ...loop, ...loop, ...loop, ...loop, 'WaitForRebuild', 'PollRebuild', 'RecordContentFailure']);
      const cause = 'RebuildFailedError: the rebuild of dbid 6 of content 0 made no progress for 40 s (limit 30 s from stallSeconds 30): cancelled';
      expect(doc.recordContentFailure).toEqual({ content: 0, dbid: 6, failed: true, cause });
      expect(s.world.jobsStarted).toHaveLength(1);
      // Cancelled by the poll, and again (best effort) by the failure step.
      expect(s.world.calls.filter((c) => c.startsWith('cancel-job'))).toEqual(['cancel-job job-1-dbid-6', 'cancel-job job-1-dbid-6']);
      expect((await s.history()).at(-1)).toBe(`FTS: gprecoverseg of dbid 6 with contentid 0 failed: ${cause}`);
      expect((await s.load()).pendingOperations).toEqual([held(REWIND_3, EXEC)]); // content 0 released, content 3 still held
      expect(await s.rowState(6)).toBe('m/d/n');
    });

    test('a lost job started again is watched from its own start', async () => {
      const s = await setup(mirrorDown(0));
      s.world.scriptedJobs.push({ state: 'failed', lost: true, message: 'process lost' }, { state: 'running' });
      const outer = await s.planned({ pollSeconds: 10, stallSeconds: 30 });
      const { doc } = await s.iterate(outer, outer.plan.recoveries[0]);
      // The second job started at 10 s and never reports bytes: 4 x 30 s, first over it at the poll 130 s after its start.
      expect(s.world.jobsStarted.map((j) => j.startedAt)).toEqual([NOW.toISOString(), after(10).toISOString()]);
      expect(doc.recordContentFailure).toMatchObject({ cause: 'RebuildFailedError: the rebuild of dbid 6 of content 0 made no progress for 130 s (limit 120 s from stallSeconds 30): cancelled' });
    });
  });

  test(`a start refused because an earlier copy holds the directory's lock is tried again, at most ${MAX_BUSY_STARTS} times`, async () => {
    const s = await setup(mirrorDown(0));
    const outer = await s.planned();
    for (let i = 0; i <= MAX_BUSY_STARTS + 1; i++) s.world.scriptedJobs.push({ state: 'failed', exitCode: 12, busy: true, message: 'another rebuild is running' });
    const { doc, visited } = await s.iterate(outer, outer.plan.recoveries[0]);
    expect(visited.filter((v) => v === 'StartRebuild')).toHaveLength(MAX_BUSY_STARTS + 2); // the first start, the tries again, and the one that gives up
    expect(doc.recordContentFailure).toMatchObject({ cause: `RebuildFailedError: an earlier rebuild of dbid 6's data directory still holds its lock after ${MAX_BUSY_STARTS} tries: stop it on the host, then run the recovery again` });
  });

  test('stallSeconds must be more than twice pollSeconds', async () => {
    const { step } = await setup(mirrorDown(0));
    await expect(step('plan', { clusterId: CLUSTER, pollSeconds: 60, stallSeconds: 100 })).rejects.toThrow(/stallSeconds must be more than twice pollSeconds/);
  });

  test('pg_rewind cannot work: RebuildFailedError that says to run a full recovery, no restart', async () => {
    const { doc, step } = await started({ state: 'failed', exitCode: 12, incrementalImpossible: 'wal-missing', message: 'could not find previous WAL record' });
    const error = await step('poll-rebuild', doc).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RebuildFailedError);
    expect((error as Error).message).toBe('pg_rewind cannot rebuild dbid 6 of content 0 incrementally (wal-missing); run a full recovery (gprecoverseg -F, mode "full")');
  });

  test('the full copy refuses to empty the directory: RebuildFailedError "refusing the full copy"', async () => {
    const { doc, step } = await started({ state: 'failed', exitCode: 11, wipeRefused: true, message: 'refusing to wipe /data/mirror/gpseg0: it is not a data directory of content 0' });
    const error = await step('poll-rebuild', doc).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RebuildFailedError);
    expect((error as Error).message).toBe("refusing the full copy into dbid 6's data directory: refusing to wipe /data/mirror/gpseg0: it is not a data directory of content 0; nothing was deleted");
  });

  test('a rebuild that failed with an exit code is not started again', async () => {
    const s = await setup(mirrorDown(0));
    s.world.instance(6).systemIdentifier = '42'; // the directory holds another database system
    const outer = await s.planned();
    const { doc, visited } = await s.iterate(outer, outer.plan.recoveries[0]);
    expect(visited).toEqual(['StartRebuild', 'WaitForRebuild', 'PollRebuild', 'RecordContentFailure']);
    expect(doc.recordContentFailure).toMatchObject({ cause: 'RebuildFailedError: the rebuild of dbid 6 of content 0 failed (exit 1): pg_rewind: source and target clusters are from different systems' });
  });
});

describe('mark-recovered', () => {
  /** Plans content 0 and rebuilds it (the fake's job is over at once). */
  async function rebuilt() {
    const s = await setup(mirrorDown(0, 3));
    const outer = await s.planned();
    const doc = s.iterationDoc(outer, outer.plan.recoveries[0]);
    doc.startRebuild = await s.step('start-rebuild', doc);
    doc.pollRebuild = await s.step('poll-rebuild', doc);
    return { ...s, doc };
  }

  test('m/d/n -> m/u/n with a history row, the cluster status recomputed, the hold released, a fence owed to it cleared', async () => {
    const { doc, step, write, load, history } = await rebuilt();
    // A fence owed to dbid 6, and a stale cluster status: both are what the step must put right.
    await write({ rows: [], history: [], status: 'up', setFences: [{ dbid: 6, content: 0, newPrimaryDbid: 2, since: NOW.toISOString(), reason: 'test' }] });
    const version = (await load()).version;
    expect(await step('mark-recovered', doc)).toEqual({ content: 0, dbid: 6, recovered: true, method: 'rewind', receiver: 'streaming', version: version + 1 });
    const snapshot = await load();
    expect(snapshot.segments.find((r) => r.dbid === 6)).toMatchObject({ role: 'm', status: 'u', mode: 'n' });
    expect(snapshot.status).toBe('degraded'); // content 3's mirror is still down, content 0 is not in sync yet
    expect(snapshot.pendingFences).toEqual([]);
    expect(snapshot.pendingOperations).toEqual([held(REWIND_3)]);
    expect((await history()).at(-1)).toBe('FTS: update role, status, and mode for dbid 6 with contentid 0 to m, u, and n: gprecoverseg rebuilt it (rewind); it streams from dbid 2');
  });

  test('refuses an instance that is not a standby: RebuildFailedError, the row stays down and held', async () => {
    const { doc, step, world, load } = await rebuilt();
    world.instance(6).inRecovery = false;
    const before = await load();
    const error = await step('mark-recovered', doc).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RebuildFailedError);
    expect((error as Error).message).toBe('dbid 6 answers but is not a standby after its rebuild; leaving it down');
    expect(await load()).toEqual(before);
  });

  // A rebuilt standby must stream from its primary before it counts as recovered: the
  // step polls its WAL receiver every 500 ms on the deps clock (deps.sleep) for up to
  // STREAM_WAIT_SECONDS.
  test('waits, polling every 500 ms, until the rebuilt instance streams; then marks it up', async () => {
    const { doc, step, world, deps, rowState } = await rebuilt();
    Object.assign(world.instance(6), { stuckReceiver: 'startup', stuckReceiverPolls: 3 });
    world.calls.splice(0);
    const started = deps.now().getTime();
    expect(await step('mark-recovered', doc)).toMatchObject({ content: 0, dbid: 6, recovered: true, receiver: 'streaming' });
    expect(world.calls).toEqual(['wal-receiver 6', 'wal-receiver 6', 'wal-receiver 6', 'wal-receiver 6']);
    expect(deps.now().getTime() - started).toBe(3 * 500);
    expect(await rowState(6)).toBe('m/u/n');
  });

  test(`a standby that does not stream within STREAM_WAIT_SECONDS: RebuildFailedError that says to run a full recovery, nothing written, in no real time`, async () => {
    const { doc, step, world, deps, load, history } = await rebuilt();
    world.instance(6).stuckReceiver = 'waiting';
    const before = await load();
    const rows = (await history()).length;
    world.calls.splice(0);
    const started = deps.now().getTime();
    const real = performance.now();
    const error = await step('mark-recovered', doc).catch((e: unknown) => e);
    expect(performance.now() - real).toBeLessThan(1000);
    expect(error).toBeInstanceOf(RebuildFailedError);
    expect((error as Error).message).toBe(
      `dbid 6 runs as a standby but does not stream from dbid 2 (its WAL receiver is waiting) ${STREAM_WAIT_SECONDS} s after its rebuild; run a full recovery (mode "full", gprecoverseg -F)`,
    );
    // A look at once, then one every 500 ms until STREAM_WAIT_SECONDS have passed.
    const waited = deps.now().getTime() - started;
    expect(waited).toBeGreaterThan(STREAM_WAIT_SECONDS * 1000);
    expect(waited).toBeLessThanOrEqual(STREAM_WAIT_SECONDS * 1000 + 500);
    expect(world.calls).toEqual(Array.from({ length: waited / 500 + 1 }, () => 'wal-receiver 6'));
    expect(await load()).toEqual(before);
    expect(await history()).toHaveLength(rows);
  });

  test('a rewound mirror that never streams: the content fails and is released; the full recovery the error asks for then recovers it', async () => {
    const s = await setup(mirrorDown(0));
    s.world.instance(6).stuckReceiver = 'startup'; // its WAL does not follow its primary's; a rewind keeps it so
    const first = await s.execute({ contents: [0] });
    expect(first.status).toBe('RecoveryIncomplete');
    expect((first.doc.results as Doc[])[0]).toMatchObject({
      recordContentFailure: { content: 0, dbid: 6, failed: true, cause: expect.stringMatching(/^RebuildFailedError: dbid 6 runs as a standby but does not stream from dbid 2 \(its WAL receiver is startup\).*run a full recovery/) },
    });
    expect(await s.load()).toMatchObject({ pendingOperations: [], pendingFences: [] });
    expect(await s.rowState(6)).toBe('m/d/n');

    const full = await s.execute({ contents: [0], mode: 'full' }, THIRD);
    expect(full.status).toBe('Recovered');
    expect(await s.rowState(6)).toBe('m/u/n');
    expect(s.world.instance(6)).toMatchObject({ running: true, inRecovery: true, upstreamDbid: 2 });
    expect(s.world.instance(6).stuckReceiver).toBeUndefined();
  });

  test('is idempotent: run again, it writes nothing', async () => {
    const { doc, step, load, history } = await rebuilt();
    const first = await step('mark-recovered', doc);
    const after = await load();
    const rows = (await history()).length;
    expect(await step('mark-recovered', doc)).toEqual({ ...first, version: undefined });
    expect(await load()).toEqual(after);
    expect(await history()).toHaveLength(rows);
  });

  test('refuses (ContentBusyError) a content another execution holds now while the row is still down, touching nothing', async () => {
    const { doc, step, write, load, setClock, world } = await rebuilt();
    setClock(new Date(Date.parse(HOLD_UNTIL) + 1000));
    await write({ rows: [], history: [], setOperations: [hold(0, OTHER, { expiresAt: iso(Date.parse(HOLD_UNTIL) + 3_600_000) })] });
    const before = await load();
    world.calls.splice(0);
    const error = await step('mark-recovered', doc).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContentBusyError);
    expect((error as Error).message).toBe(`content 0 is no longer held by execution ${EXEC} (held by recovery execution ${OTHER}): not touching it`);
    expect(await load()).toEqual(before);
    expect(world.calls).toEqual([]); // refused before it asks the instance anything
  });

  test('a re-run after it marked the row up, once another execution holds the content: writes nothing and does not fail', async () => {
    const { doc, step, write, load, setClock } = await rebuilt();
    const first = await step('mark-recovered', doc);
    setClock(new Date(Date.parse(HOLD_UNTIL) + 1000));
    await write({ rows: [], history: [], setOperations: [hold(0, OTHER, { expiresAt: iso(Date.parse(HOLD_UNTIL) + 3_600_000) })] });
    const before = await load();
    expect(await step('mark-recovered', doc)).toEqual({ ...first, version: undefined });
    expect(await load()).toEqual(before);
  });
});

describe('record-content-failure', () => {
  test('writes a history row with the cause, cancels the job and releases the hold', async () => {
    const s = await setup(mirrorDown(0, 3));
    s.world.scriptedJobs.push({ state: 'running' });
    const outer = await s.planned();
    const doc = s.iterationDoc(outer, outer.plan.recoveries[0]);
    doc.startRebuild = await s.step('start-rebuild', doc);
    doc.error = { Error: 'States.Timeout', Cause: 'the step timed out' }; // a plain-text cause
    expect(await s.step('record-content-failure', doc)).toEqual({ content: 0, dbid: 6, failed: true, cause: 'States.Timeout: the step timed out' });
    expect(s.world.calls.at(-1)).toBe('cancel-job job-1-dbid-6');
    expect((await s.history()).at(-1)).toBe('FTS: gprecoverseg of dbid 6 with contentid 0 failed: States.Timeout: the step timed out');
    expect((await s.load()).pendingOperations).toEqual([held(REWIND_3)]);
    expect(s.errors).toEqual(['gprecoverseg: content 0 not rebuilt']);
  });

  test("never releases another execution's hold", async () => {
    const s = await setup(mirrorDown(0));
    const outer = await s.planned();
    const doc = { ...s.iterationDoc(outer, outer.plan.recoveries[0]), error: lambdaError(new RebuildFailedError('late')) };
    s.setClock(new Date(Date.parse(HOLD_UNTIL) + 1000));
    const theirs = hold(0, OTHER, { expiresAt: iso(Date.parse(HOLD_UNTIL) + 3_600_000) });
    await s.write({ rows: [], history: [], setOperations: [theirs] });
    expect(await s.step('record-content-failure', doc)).toMatchObject({ failed: true, cause: 'RebuildFailedError: late' });
    expect((await s.load()).pendingOperations).toEqual([theirs]);
    expect((await s.history()).at(-1)).toBe('FTS: gprecoverseg of dbid 6 with contentid 0 failed: RebuildFailedError: late');
  });
});

describe('summarize', () => {
  const done = (content: number, dbid: number) => ({ markRecovered: { content, dbid, recovered: true } });
  const failed = (content: number, dbid: number, cause: string) => ({ recordContentFailure: { content, dbid, failed: true, cause } });

  test('complete only when nothing failed and nothing was skipped', async () => {
    const { step } = await setup();
    const doc = { clusterId: CLUSTER, plan: { recoveries: [], skipped: [], warnings: [] }, results: [done(0, 6), done(3, 9)] };
    expect(await step('summarize', doc)).toEqual({
      complete: true, done: [{ content: 0, dbid: 6 }, { content: 3, dbid: 9 }], failed: [], skipped: [], upToDate: [], warnings: [], message: '2 content(s) recovered (0, 3)',
    });
    const skipped = [{ content: 1, reason: 'double fault' }];
    expect(await step('summarize', { ...doc, plan: { ...doc.plan, skipped } })).toMatchObject({ complete: false, skipped });
    expect(await step('summarize', { ...doc, results: [done(0, 6), failed(3, 9, 'RebuildFailedError: x')] })).toMatchObject({ complete: false, failed: [{ content: 3, dbid: 9, reason: 'RebuildFailedError: x' }] });
    expect(await step('summarize', { ...doc, error: { Error: 'States.TaskFailed', Cause: 'the Map failed' } })).toMatchObject({ complete: false });
  });

  test('its message lists every content: done, failed and why, left alone and why, and a stopped run', async () => {
    const { step } = await setup();
    const doc = {
      clusterId: CLUSTER,
      plan: { recoveries: [], skipped: [{ content: 1, reason: 'no source' }, { content: 2, reason: 'held' }], warnings: ['line 1: w'] },
      results: [done(0, 6), failed(3, 9, 'RebuildFailedError: boom')],
      error: lambdaError(new Error('Map iteration 5 lost')),
    };
    expect(await step('summarize', doc)).toMatchObject({
      complete: false,
      warnings: ['line 1: w'],
      message: '1 content(s) recovered (0); content 3 failed: RebuildFailedError: boom; content 1 left alone: no source; content 2 left alone: held; the run stopped: Error: Map iteration 5 lost',
    });
  });

  test('contents that needed nothing (upToDate) are listed as "nothing to do" and do not make the run incomplete', async () => {
    const { step } = await setup();
    const doc = { clusterId: CLUSTER, plan: { recoveries: [], skipped: [], upToDate: [1, 2], warnings: [] }, results: [done(0, 6)] };
    expect(await step('summarize', doc)).toEqual({
      complete: true, done: [{ content: 0, dbid: 6 }], failed: [], skipped: [], upToDate: [1, 2], warnings: [], message: '1 content(s) recovered (0); content 1: nothing to do; content 2: nothing to do',
    });
    // Nothing to do anywhere: complete.
    expect(await step('summarize', { ...doc, results: [] })).toEqual({
      complete: true, done: [], failed: [], skipped: [], upToDate: [1, 2], warnings: [], message: '0 content(s) recovered; content 1: nothing to do; content 2: nothing to do',
    });
    // They make up for nothing else: after what was left alone, before a stopped run.
    expect(await step('summarize', { ...doc, plan: { ...doc.plan, skipped: [{ content: 3, reason: 'held' }] }, results: [failed(0, 6, 'RebuildFailedError: x')], error: { Error: 'States.TaskFailed', Cause: 'the Map failed' } })).toMatchObject({
      complete: false,
      upToDate: [1, 2],
      message: '0 content(s) recovered; content 0 failed: RebuildFailedError: x; content 3 left alone: held; content 1: nothing to do; content 2: nothing to do; the run stopped: States.TaskFailed: the Map failed',
    });
  });

  test('a plan without upToDate (or no plan at all) summarizes as none up to date', async () => {
    const { step } = await setup();
    expect(await step('summarize', { clusterId: CLUSTER, plan: { recoveries: [], skipped: [], warnings: [] }, results: [done(0, 6)] })).toMatchObject({ complete: true, upToDate: [], message: '1 content(s) recovered (0)' });
    expect(await step('summarize', { clusterId: CLUSTER, error: { Error: 'States.TaskFailed', Cause: 'the plan failed' } })).toMatchObject({ complete: false, skipped: [], upToDate: [] });
  });

  test('releases the holds this execution still has, and only those', async () => {
    const { step, load } = await setup(mirrorDown(0, 1, 3), async (w) => void (await w({ rows: [], history: [], setOperations: [hold(0, EXEC), hold(1, OTHER), hold(3, EXEC)] })));
    await step('summarize', { clusterId: CLUSTER, plan: { skipped: [] }, error: { Error: 'States.TaskFailed', Cause: 'x' } });
    expect(await load()).toMatchObject({ version: 3, pendingOperations: [hold(1, OTHER)] });
    await step('summarize', { clusterId: CLUSTER, plan: { skipped: [] } });
    expect((await load()).version).toBe(3); // nothing left: nothing written
  });

  test('a document without clusterId is refused', async () => {
    const { step } = await setup();
    await expect(step('summarize', {})).rejects.toThrow(ValidationError);
  });
});

describe('a whole run on the fakes', () => {
  test('rebuilds what it can, records what failed, leaves a double fault alone, releases everything, in milliseconds', async () => {
    const s = await setup((rows) => bothDown(1)(mirrorDown(0, 2)(rows)));
    s.world.instance(8).systemIdentifier = '42'; // content 2's mirror directory holds another system: pg_rewind fails
    const started = performance.now();
    const { status, doc } = await s.execute({});
    const elapsed = performance.now() - started;
    expect(status).toBe('RecoveryIncomplete');
    expect((doc.summarize as { message: string }).message).toBe(
      '1 content(s) recovered (0); ' +
        'content 2 failed: RebuildFailedError: the rebuild of dbid 8 of content 2 failed (exit 1): pg_rewind: source and target clusters are from different systems; ' +
        'content 1 left alone: acting primary dbid 3 is down as well as mirror dbid 7 (double fault): no source to recover from',
    );
    const snapshot = await s.load();
    expect(snapshot.segments.filter((r) => r.role === 'm').map((r) => [r.dbid, `${r.status}/${r.mode}`])).toEqual([[6, 'u/n'], [7, 'd/n'], [8, 'd/n'], [9, 'u/s']]);
    expect(snapshot).toMatchObject({ status: 'unavailable', pendingOperations: [], pendingFences: [] });
    expect(s.world.instance(6)).toMatchObject({ running: true, inRecovery: true, upstreamDbid: 2 });
    expect(elapsed).toBeLessThan(1000);
  });

  test('contents named that need nothing do not make the run incomplete: Recovered, and the summary says so', async () => {
    const s = await setup(mirrorDown(0));
    const { status, doc } = await s.execute({ contents: [0, 1] });
    expect(status).toBe('Recovered');
    expect(doc.summarize).toEqual({
      complete: true, done: [{ content: 0, dbid: 6 }], failed: [], skipped: [], upToDate: [1], warnings: [], message: '1 content(s) recovered (0); content 1: nothing to do',
    });
    expect((await s.load()).pendingOperations).toEqual([]);
  });

  test('a request the catalog refuses ends in InvalidInput with nothing written', async () => {
    const s = await setup(mirrorDown(0));
    expect((await s.execute({ contents: [99] })).status).toBe('InvalidInput');
    expect((await s.load()).version).toBe(1);
  });
});
