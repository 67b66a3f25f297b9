/**
 * The Rebalance steps (gprecoverseg -r) on the in-memory fakes: no PostgreSQL, no
 * DynamoDB, milliseconds per test. Each step runs through `runRebalanceStepEvent` with a
 * state document built as the state machine builds it: the input, the plan at `$.plan`,
 * Map iterations of `{ clusterId, pollSeconds, stallSeconds, receiveSeconds, item }` that
 * accumulate each step's result under its camelCase name, a Catch's `{ Error, Cause }` at
 * `$.error`. The order of what a switchover does (to the segments and the catalog) is
 * recorded in `world.calls`. Time is the test's clock: pauses inside a step and Wait
 * states move it on and take no real time.
 */
import { performance } from 'node:perf_hooks';
import { planFailover } from '../../lambdas/core/decide';
import { CatalogConflictError, ContentBusyError, HostCommandError, SegmentUnreachableError, SwitchoverAbortedError, ValidationError } from '../../lambdas/core/errors';
import type { CatalogChange, PendingOperation, SegmentRow } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import type { Telemetry } from '../../lambdas/ports/telemetry';
import { runRebalanceStepEvent } from '../../lambdas/service/rebalance';
import { HOLD_TTL_SECONDS } from '../../lambdas/service/rebuild-steps';
import type { WorkflowDeps } from '../../lambdas/service/steps';
import { REBALANCE_SPEC } from '../../lambdas/workflows/rebalance';
import type { MapSpec } from '../../lambdas/workflows/spec';
import { iterateMap, iterationDoc as mapIterationDoc, type Doc } from '../support/map-driver';
import { FakeCatalog, FakeSegments } from '../support/fakes';

const CLUSTER = 'c1';
const EXEC = 'rebalance-c1-v1-0a1b2c3d';
const OTHER = 'recoverseg-c1-v1-ffffffff';
/** Another Rebalance request's execution. */
const OTHER_REBALANCE = 'rebalance-c1-v2-12345678';
const NOW = new Date('2026-11-23T10:00:00.000Z');
/** A hold taken at NOW lapses HOLD_TTL_SECONDS later unless a step renews it. */
const HOLD_UNTIL = new Date(NOW.getTime() + HOLD_TTL_SECONDS * 1000).toISOString();
const MB = 1024 * 1024;
const DEFAULT_LIMIT = 10 * 1024 * MB;

type Plan = { switches: (Doc & { content: number })[]; skipped: { content: number; reason: string }[]; upToDate: number[]; parallel: number; pollSeconds: number; stallSeconds: number; receiveSeconds: number };

/**
 * Coordinator 1; content c (0-3): dbid 2+c, a primary by preference, on sdw(c%3+1) port
 * 6000+c, and dbid 6+c, a mirror by preference, on the next host, port 7000+c. Contents
 * 0, 1 and 3 were failed over and recovered, so their mirror by preference is the acting
 * primary: 0 and 1 in sync (switchable), 3 still catching up (not switchable). Content 2
 * is in its preferred roles.
 */
function baseRows(): SegmentRow[] {
  const row = (dbid: number, content: number, preferredRole: 'p' | 'm', host: string, port: number): SegmentRow => ({
    dbid, content, role: preferredRole, preferredRole, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`,
    datadir: content === -1 ? '/data/coordinator/gpseg-1' : `/data/${preferredRole === 'p' ? 'primary' : 'mirror'}/gpseg${content}`,
  });
  const rows = [row(1, -1, 'p', 'cdw', 5432)];
  for (let c = 0; c < 4; c++) {
    rows.push(row(2 + c, c, 'p', `sdw${(c % 3) + 1}`, 6000 + c));
    rows.push(row(6 + c, c, 'm', `sdw${((c + 1) % 3) + 1}`, 7000 + c));
  }
  const swapped = [0, 1, 3];
  return rows.map((r) => (swapped.includes(r.content) ? { ...r, role: r.preferredRole === 'p' ? 'm' : 'p', ...(r.content === 3 ? { mode: 'n' as const } : {}) } : r));
}

const hold = (content: number, execution: string, over: Partial<PendingOperation> = {}): PendingOperation => ({
  content, kind: 'rebalance', execution, since: NOW.toISOString(), expiresAt: HOLD_UNTIL, ...over,
});

/** A planned switch, its keys in the order `plan` writes them (a hold records it as JSON text). */
type Item = { content: number; dbid: number; sourceDbid: number; method: 'rewind'; maxReplayLagBytes: number | null };
/** The switch of content 0 (old primary dbid 6 back to mirror, dbid 2 back to primary) and of content 1 (7 and 3), under the default limit. */
const SWITCH_0: Item = { content: 0, dbid: 6, sourceDbid: 2, method: 'rewind', maxReplayLagBytes: DEFAULT_LIMIT };
const SWITCH_1: Item = { content: 1, dbid: 7, sourceDbid: 3, method: 'rewind', maxReplayLagBytes: DEFAULT_LIMIT };
/** The hold `plan` takes for `item`: it records the item as the JSON text of its `plan`. */
const held = (item: Item, execution = EXEC, over: Partial<PendingOperation> = {}): PendingOperation => hold(item.content, execution, { plan: JSON.stringify(item), ...over });



const MAP = REBALANCE_SPEC.states.SwitchEach as MapSpec;

async function setup(prepare?: (write: (change: CatalogChange) => Promise<number>, catalog: FakeCatalog) => Promise<void>) {
  let clock = NOW;
  const catalog = new FakeCatalog();
  catalog.clock = () => clock;
  await catalog.initialize(CLUSTER, baseRows(), DEFAULT_SETTINGS, NOW.toISOString());
  const write = async (change: CatalogChange) => catalog.apply(CLUSTER, (await catalog.load(CLUSTER)).version, change);
  if (prepare) await prepare(write, catalog);
  const world = FakeSegments.fromRows((await catalog.load(CLUSTER)).segments, { now: () => clock });
  // Every successful catalog write lands in the same call log as the segment calls, so the order of the two is checked.
  const apply = catalog.apply.bind(catalog);
  catalog.apply = async (...args: Parameters<FakeCatalog['apply']>) => {
    const version = await apply(...args);
    world.calls.push(`catalog v${version}`);
    return version;
  };
  const errors: string[] = [];
  const telemetry: Telemetry = { info() {}, warn() {}, error: (m) => void errors.push(m), metric() {}, flush() {} };
  // Pauses inside a step advance the test's clock: a wait of seconds takes no time.
  const sleep = async (ms: number) => {
    clock = new Date(clock.getTime() + ms);
  };
  const deps: WorkflowDeps = { catalog, probe: world, control: world, host: world, telemetry, now: () => clock, sleep };
  const step = (name: string, input: unknown, execution = EXEC) => runRebalanceStepEvent(deps, { step: name, input, execution });
  const load = () => catalog.load(CLUSTER);
  const history = async () => (await catalog.history(CLUSTER)).map((h) => h.description);
  const states = async (content: number) => (await load()).segments.filter((r) => r.content === content).map((r) => `${r.dbid} ${r.role}/${r.status}/${r.mode}`);
  const planned = async (input: Doc = {}, execution = EXEC): Promise<Doc & { plan: Plan }> => {
    const doc: Doc = { clusterId: CLUSTER, ...input };
    return { ...doc, plan: (await step('plan', doc, execution)) as unknown as Plan };
  };
  const iterationDoc = (outer: Doc, item: unknown): Doc => mapIterationDoc(MAP, outer, item);
  /** Plans, then returns the iteration document of `content`'s switch; the call log starts empty. */
  const switchDoc = async (content: number, input: Doc = {}) => {
    const outer = await planned(input);
    const item = outer.plan.switches.find((s) => s.content === content);
    if (!item) throw new Error(`content ${content} was not planned: ${JSON.stringify(outer.plan)}`);
    world.calls.splice(0);
    return iterationDoc(outer, item);
  };
  /** One Map iteration through the spec's states (a Wait moves the test clock on; Retry rules are not replayed). */
  const iterate = (outer: Doc, item: unknown, execution = EXEC) =>
    iterateMap(MAP, iterationDoc(outer, item), (name, doc) => step(name, doc, execution), (seconds) => {
      clock = new Date(clock.getTime() + seconds * 1000);
    });
  const setClock = (to: Date) => {
    clock = to;
  };
  return { catalog, world, deps, step, write, load, history, states, planned, switchDoc, iterationDoc, iterate, setClock, errors };
}

describe('plan', () => {
  test('switches every pair out of its preferred roles that is up and in sync, holds it, and says why it leaves the others', async () => {
    const { step, load, history, world } = await setup();
    const plan = await step('plan', { clusterId: CLUSTER });
    expect(plan).toEqual({
      switches: [
        { content: 0, dbid: 6, sourceDbid: 2, method: 'rewind', maxReplayLagBytes: DEFAULT_LIMIT },
        { content: 1, dbid: 7, sourceDbid: 3, method: 'rewind', maxReplayLagBytes: DEFAULT_LIMIT },
      ],
      skipped: [{ content: 3, reason: 'primary dbid 9 is p/u/n and mirror dbid 5 is m/u/n: a pair is switched only when both are up and in sync (recover it, let it catch up)' }],
      upToDate: [],
      parallel: 16,
      pollSeconds: 10,
      stallSeconds: 900,
      receiveSeconds: 10,
    });
    const snapshot = await load();
    // Each hold records, as JSON text, the item planned for its content.
    expect(snapshot.pendingOperations).toEqual([held(SWITCH_0), held(SWITCH_1)]);
    expect(snapshot.pendingOperations.map((op) => JSON.parse(op.plan ?? 'null') as unknown)).toEqual(plan.switches);
    expect(snapshot.segments).toEqual(baseRows().sort((a, b) => a.dbid - b.dbid));
    expect((await history()).slice(1)).toEqual([
      `FTS: gprecoverseg -r (${EXEC}) holds content 0 to switch dbid 2 back to primary (replay lag 0 bytes)`,
      `FTS: gprecoverseg -r (${EXEC}) holds content 1 to switch dbid 3 back to primary (replay lag 0 bytes)`,
    ]);
    // The replay lag of each out-of-place pair is read from its acting primary; nothing else is touched.
    expect([...world.calls].sort()).toEqual(['catalog v2', 'probe 6', 'probe 7', 'probe 9']);
  });

  test('replay-lag guard: a mirror with more WAL to replay than the limit is refused with the reason and not held', async () => {
    const { step, load, world } = await setup();
    world.instance(2).replayLagBytes = 3 * MB;
    const plan = await step('plan', { clusterId: CLUSTER, replayLagMB: 2 });
    expect(plan.switches).toEqual([{ content: 1, dbid: 7, sourceDbid: 3, method: 'rewind', maxReplayLagBytes: 2 * MB }]);
    expect(plan.skipped).toContainEqual({ content: 0, reason: `mirror dbid 2 has ${3 * MB} bytes of WAL still to replay, more than the ${2 * MB} allowed (--replay-lag): let it catch up, then rebalance` });
    expect((await load()).pendingOperations).toEqual([held({ ...SWITCH_1, maxReplayLagBytes: 2 * MB })]);
  });

  test('replay-lag guard: an unknown lag is refused while a limit is set; replayLagMB null switches whatever the lag', async () => {
    const { step, load, history, world } = await setup();
    world.instance(2).replayLagBytes = 3 * MB;
    world.isolateHost('sdw3'); // the acting primary of content 1 (dbid 7) does not answer the plan's probe
    const limited = await step('plan', { clusterId: CLUSTER, contents: [1] });
    expect(limited).toMatchObject({ switches: [], skipped: [{ content: 1, reason: `the replay lag of mirror dbid 3 is unknown and a limit of ${DEFAULT_LIMIT} bytes is set` }] });
    expect((await load()).version).toBe(1);

    const unlimited = await step('plan', { clusterId: CLUSTER, replayLagMB: null });
    expect(unlimited.switches).toEqual([
      { content: 0, dbid: 6, sourceDbid: 2, method: 'rewind', maxReplayLagBytes: null },
      { content: 1, dbid: 7, sourceDbid: 3, method: 'rewind', maxReplayLagBytes: null },
    ]);
    expect((await history()).slice(-2)).toEqual([
      `FTS: gprecoverseg -r (${EXEC}) holds content 0 to switch dbid 2 back to primary (replay lag ${3 * MB} bytes)`,
      `FTS: gprecoverseg -r (${EXEC}) holds content 1 to switch dbid 3 back to primary`,
    ]);
  });

  test('contents: only those are switched and held; one in its preferred roles is up to date, not skipped', async () => {
    const { step, load } = await setup();
    expect(await step('plan', { clusterId: CLUSTER, contents: [1, 2] })).toEqual({
      switches: [SWITCH_1],
      skipped: [],
      upToDate: [2],
      parallel: 16,
      pollSeconds: 10,
      stallSeconds: 900,
      receiveSeconds: 10,
    });
    expect((await load()).pendingOperations).toEqual([held(SWITCH_1)]);
  });

  test('contents: only the pairs of those contents are probed for their replay lag', async () => {
    const { step, load, world } = await setup();
    // The acting primary of content 0 (dbid 6) is down: content 0 is not asked for, so it is never probed.
    world.kill(6);
    expect(await step('plan', { clusterId: CLUSTER, contents: [1, 3] })).toMatchObject({ switches: [SWITCH_1], skipped: [{ content: 3 }], upToDate: [] });
    expect([...world.calls].sort()).toEqual(['catalog v2', 'probe 7', 'probe 9']);

    // Only a content in its preferred roles: nothing probed, nothing held, nothing written.
    world.calls.splice(0);
    const version = (await load()).version;
    expect(await step('plan', { clusterId: CLUSTER, contents: [2] }, OTHER_REBALANCE)).toEqual({ switches: [], skipped: [], upToDate: [2], parallel: 16, pollSeconds: 10, stallSeconds: 900, receiveSeconds: 10 });
    expect(world.calls).toEqual([]);
    expect((await load()).version).toBe(version);
  });

  test('holds: a content another execution holds, or that the prober is failing over, is skipped and left as it is', async () => {
    const theirs: PendingOperation = { ...hold(0, OTHER), kind: 'recovery' };
    const { step, load, write } = await setup(async (w) => void (await w({ rows: [], history: [], setOperations: [theirs] })));
    await write(planFailover(await load(), 2, 4, 8, NOW)); // content 2 out of its preferred roles, promotion pending
    const plan = (await step('plan', { clusterId: CLUSTER })) as unknown as Plan;
    expect(plan.switches.map((s) => s.content)).toEqual([1]);
    expect(plan.skipped).toEqual([
      { content: 0, reason: `content 0 is held by recovery execution ${OTHER} (since ${NOW.toISOString()}, until ${HOLD_UNTIL}): another workflow is working on it` },
      { content: 2, reason: 'a promotion of dbid 8 is pending: the prober is failing it over' },
      { content: 3, reason: expect.stringMatching(/^primary dbid 9 is p\/u\/n and mirror dbid 5 is m\/u\/n/) },
    ]);
    expect((await load()).pendingOperations).toEqual([theirs, held(SWITCH_1)]);
  });

  test('a re-run of the same execution returns the switches its holds record, probing nothing and writing nothing', async () => {
    const { step, load, world } = await setup();
    const first = await step('plan', { clusterId: CLUSTER });
    const after = await load();
    world.calls.splice(0);
    // The Plan step retried after its catalog write committed: what it left alone then (content 3) is not listed again.
    expect(await step('plan', { clusterId: CLUSTER })).toEqual({ ...first, skipped: [], upToDate: [] });
    expect(world.calls).toEqual([]);
    expect(await load()).toEqual(after); // its holds kept as they were
    expect(after.pendingOperations).toEqual([held(SWITCH_0), held(SWITCH_1)]);
  });

  test('a hold of this execution whose plan it cannot read (not a switch): ValidationError, nothing written', async () => {
    // The item of a RecoverSegments hold has no maxReplayLagBytes.
    const unreadable = hold(0, EXEC, { plan: JSON.stringify({ content: 0, dbid: 6, sourceDbid: 2, method: 'rewind' }) });
    const { step, load, world } = await setup(async (w) => void (await w({ rows: [], history: [], setOperations: [unreadable] })));
    const before = await load();
    const error = await step('plan', { clusterId: CLUSTER }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toBe(`the hold of content 0 by execution ${EXEC} records a plan this version cannot read: ${unreadable.plan}`);
    expect(await load()).toEqual(before);
    expect(world.calls).toEqual([]);
  });

  test.each<[string, Doc, RegExp]>([
    ['an unknown key', { dbid: 2 }, /invalid Rebalance input: Unrecognized key: "dbid"/],
    ['a negative replay lag', { replayLagMB: -1 }, /replayLagMB/],
    ['an unknown content', { contents: [99] }, /content 99 is not in the catalog of cluster c1/],
    ['a catalog version from the future', { catalogVersion: 9 }, /catalogVersion 9 is newer than the catalog of cluster c1 \(version 1\)/],
  ])('refuses %s with ValidationError and writes nothing', async (_name, over, message) => {
    const { step, load } = await setup();
    const before = await load();
    const error = await step('plan', { clusterId: CLUSTER, ...over }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(message);
    expect(await load()).toEqual(before);
  });
});

describe('switch-over', () => {
  test('checkpoint, fast stop, mirror past the shutdown checkpoint, fence of the old primary, catalog flip, promote, writable: in that order; no fence owed', async () => {
    const { switchDoc, step, world, load, history, states } = await setup();
    const doc = await switchDoc(0);
    const version = (await load()).version;
    const result = await step('switch-over', doc);
    expect(world.calls).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'wal-receiver 2', 'fence 6', `catalog v${version + 1}`, 'promote 2', 'verify-writable 2']);
    expect(result).toEqual({ checkpointLsn: '0/3000000', receivedLsn: '0/3000028', replayLagBytes: 0, writeGapMs: expect.any(Number), flipMs: expect.any(Number) });

    expect(await states(0)).toEqual(['2 p/u/n', '6 m/d/n']);
    const snapshot = await load();
    expect(snapshot).toMatchObject({ version: version + 1, status: 'degraded', pendingOperations: [hold(0, EXEC), hold(1, EXEC)] });
    // Fenced before the flip (its standby config is written): nothing is owed to it.
    expect(snapshot.pendingFences).toEqual([]);
    expect((await history()).slice(-2)).toEqual([
      'FTS: update role, status, and mode for dbid 6 with contentid 0 to m, d, and n: gprecoverseg -r: stopped cleanly for a planned switchover (shutdown checkpoint 0/3000000, received by dbid 2)',
      'FTS: update role, status, and mode for dbid 2 with contentid 0 to p, u, and n: gprecoverseg -r: back to its preferred role of primary',
    ]);
    expect(world.instance(2)).toMatchObject({ running: true, inRecovery: false });
    expect(world.instance(6)).toMatchObject({ running: false, fenced: true, inRecovery: true, upstreamDbid: 2 });
  });

  /** Runs a switchover expected to abort before the flip; checks nothing changed and returns the error. */
  async function aborted(s: Awaited<ReturnType<typeof setup>>, doc: Doc): Promise<Error> {
    const before = await s.load();
    const historyBefore = await s.history();
    const error = (await s.step('switch-over', doc).catch((e: unknown) => e)) as Error;
    expect(await s.load()).toEqual(before);
    expect(await s.history()).toEqual(historyBefore);
    expect(s.world.calls.filter((c) => /^(catalog|promote|write-mirror-config)/.test(c))).toEqual([]);
    expect(s.world.instance(6)).toMatchObject({ running: true, inRecovery: false }); // still, or again, the acting primary
    return error;
  }

  test('abort: a stop that is not clean starts the old primary again; nothing changed', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    s.world.instance(6).uncleanStop = true;
    const error = await aborted(s, doc);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe('dbid 6 did not shut down cleanly (in production); dbid 6 was started again as the acting primary: nothing changed');
    expect(s.world.calls).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'start 6 as primary']);
  });

  test('abort: a mirror that never receives past the shutdown checkpoint within receiveSeconds (on the deps clock) starts the old primary again', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0, { receiveSeconds: 3 });
    s.world.instance(2).receiveStalled = true;
    const started = performance.now();
    const error = await aborted(s, doc);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe('mirror dbid 2 received WAL up to 0/3000000, not past the shutdown checkpoint 0/3000000 of dbid 6, within 3 s; dbid 6 was started again as the acting primary: nothing changed');
    expect(s.world.calls[0]).toBe('probe 6');
    expect(s.world.calls.slice(1, 3)).toEqual(['checkpoint 6', 'stop 6']);
    const polls = s.world.calls.slice(3, -1);
    expect(polls.every((c) => c === 'wal-receiver 2')).toBe(true);
    expect(polls.length).toBeGreaterThan(3000 / 20 - 2); // every 20 ms for 3 s
    expect(s.world.calls.at(-1)).toBe('start 6 as primary');
  });

  test('abort before the stop: a pair no longer in sync', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    const rows = (await s.load()).segments.filter((r) => r.content === 0).map((r) => ({ ...r, mode: 'n' as const }));
    await s.write({ rows, history: rows.map((r) => ({ time: NOW.toISOString(), dbid: r.dbid, description: 'the mirror fell behind' })) });
    s.world.calls.splice(0);
    const error = await aborted(s, doc);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe('content 0 is no longer an in-sync pair (dbid 6 p/u/n, dbid 2 m/u/n): not switched');
    expect(s.world.calls).toEqual([]);
  });

  test('abort before the stop: more WAL to replay than the limit', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0, { replayLagMB: 1 });
    s.world.instance(2).replayLagBytes = 2 * MB;
    const error = await aborted(s, doc);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe(`mirror dbid 2 has ${2 * MB} bytes of WAL to replay, more than the ${MB} allowed (--replay-lag): not switched`);
    expect(s.world.calls).toEqual(['probe 6']);
  });

  test('abort before the stop: a replay lag that cannot be read while a limit is set', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    const probe = s.world.probe.bind(s.world);
    jest.spyOn(s.world, 'probe').mockImplementation(async (...args) => {
      const result = await probe(...args);
      return result.ok ? { ...result, mirror: { state: result.mirror.state, syncState: result.mirror.syncState } } : result; // no flush or replay LSN
    });
    const error = await aborted(s, doc);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe(`the replay lag of mirror dbid 2 is unknown and a limit of ${DEFAULT_LIMIT} bytes is set (--replay-lag): not switched`);
    expect(s.world.calls).toEqual(['probe 6']);
  });

  test('no lag limit (replayLagMB null): the same lag is switched', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0, { replayLagMB: null });
    s.world.instance(2).replayLagBytes = 2 * MB;
    expect(await s.step('switch-over', doc)).toMatchObject({ replayLagBytes: 2 * MB });
    expect(await s.states(0)).toEqual(['2 p/u/n', '6 m/d/n']);
  });

  test('abort before the stop: the mirror is not the synchronous standby', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    delete s.world.instance(6).syncStandbyDbid; // sync rep off: the mirror streams asynchronously
    const error = await aborted(s, doc);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe('mirror dbid 2 is not the streaming synchronous standby (streaming, async): not switched');
    expect(s.world.calls).toEqual(['probe 6']);
  });

  test('abort before the stop: the acting primary does not answer', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    s.world.kill(6);
    const before = await s.load();
    await expect(s.step('switch-over', doc)).rejects.toThrow('acting primary dbid 6 does not answer as a primary (refused): not switched');
    expect(await s.load()).toEqual(before);
    expect(s.world.calls).toEqual(['probe 6']);
  });

  test('refuses (ContentBusyError) a content this execution no longer holds, touching nothing', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    await s.write({ rows: [], history: [], clearOperations: [{ content: 0, execution: EXEC }] });
    s.world.calls.splice(0);
    await expect(s.step('switch-over', doc)).rejects.toThrow(ContentBusyError);
    expect(s.world.calls).toEqual([]);
  });

  test('a re-run after the flip finishes the promotion without stopping anything again', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    const promote = jest.spyOn(s.world, 'promote').mockRejectedValueOnce(new SegmentUnreachableError('dbid 2 (sdw1.internal:6000): timeout expired'));
    await expect(s.step('switch-over', doc)).rejects.toThrow(SegmentUnreachableError);
    expect(await s.states(0)).toEqual(['2 p/u/n', '6 m/d/n']);
    expect(s.world.instance(2).inRecovery).toBe(true); // flipped in the catalog, not promoted yet
    const flipped = await s.load();

    s.world.calls.splice(0);
    expect(await s.step('switch-over', doc)).toEqual({ alreadyFlipped: true });
    expect(promote).toHaveBeenCalledTimes(2);
    expect(s.world.calls).toEqual(['write-mirror-config 6 -> 2', 'promote 2', 'verify-writable 2']);
    expect(s.world.instance(2)).toMatchObject({ running: true, inRecovery: false });
    expect(await s.load()).toEqual(flipped);
  });

  // The fence before the flip wrote the old primary's standby config already; a re-run
  // after the flip writes it once more (an earlier version flipped first and wrote it
  // last), before it promotes the mirror.
  test("a re-run after the flip writes the old primary's standby config before promoting", async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    jest.spyOn(s.world, 'promote').mockRejectedValueOnce(new SegmentUnreachableError('timeout expired'));
    await expect(s.step('switch-over', doc)).rejects.toThrow(SegmentUnreachableError);
    s.world.calls.splice(0);
    await s.step('switch-over', doc);
    const calls = s.world.calls.filter((c) => /^(write-mirror-config|fence|promote)/.test(c));
    expect(calls[0]).toMatch(/^(write-mirror-config 6 -> 2|fence 6)$/);
  });

  // The flip is written against a fresh read of the catalog (applyFresh), re-checking the
  // hold and both rows: a catalog write in between (the other switchovers of the same Map,
  // `parallel` at once by default; the prober, on any other content) does not make it fail
  // after the stop.
  test('two pairs switched at once: both flip, and each content keeps a running acting primary', async () => {
    const s = await setup();
    const outer = await s.planned();
    const docs = outer.plan.switches.map((item) => s.iterationDoc(outer, item));
    const results = await Promise.allSettled(docs.map((d) => s.step('switch-over', d)));
    const snapshot = await s.load();
    for (const primary of snapshot.segments.filter((r) => r.role === 'p' && r.content >= 0)) expect(s.world.instance(primary.dbid).running).toBe(true);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
  });

  test('a catalog write of the prober during the switchover does not leave the content without a primary', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    // Right before the flip, the prober writes something about content 3 (its mirror caught up).
    const { version, segments } = await s.load();
    const rows = segments.filter((r) => r.content === 3).map((r) => ({ ...r, mode: 's' as const }));
    s.catalog.beforeApply = (id) => {
      s.catalog.beforeApply = undefined;
      void s.catalog.apply(id, version, { rows, history: rows.map((r) => ({ time: NOW.toISOString(), dbid: r.dbid, description: 'in sync' })) });
    };
    const outcome = await s.step('switch-over', doc).catch((e: unknown) => e);
    expect(outcome).not.toBeInstanceOf(CatalogConflictError);
    const primary = (await s.load()).segments.find((r) => r.content === 0 && r.role === 'p')!;
    expect(s.world.instance(primary.dbid)).toMatchObject({ running: true, inRecovery: false });
  });

  // When the old primary cannot be started again, the error says so: the content has no
  // running primary until someone starts it or the prober fails it over.
  test('an abort whose restart of the old primary fails does not claim it was started again', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    s.world.instance(6).uncleanStop = true;
    jest.spyOn(s.world, 'start').mockRejectedValueOnce(new HostCommandError('pg_ctl start failed', 1));
    const error = (await s.step('switch-over', doc).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).not.toMatch(/was started again/);
    expect(error.message).toBe('dbid 6 did not shut down cleanly (in production); starting dbid 6 again FAILED (pg_ctl start failed): the content has no running primary until it is started or failed over');
  });

  // Between the fast stop and the flip, someone (an operator, systemd, a reboot) starts the
  // old primary again: it may take commits its mirror never gets. The fence finds it
  // running (wasRunning): the switch is undone, it serves on as the primary, and the
  // catalog is not touched.
  test('a start by hand between the stop and the fence: the switch is undone, the old primary serves on as the primary, the catalog unchanged', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    const old = (await s.load()).segments.find((r) => r.dbid === 6)!;
    const walReceiver = s.world.walReceiver.bind(s.world);
    jest.spyOn(s.world, 'walReceiver').mockImplementationOnce(async (row) => {
      await s.world.start(old); // by hand, while the step waits for the mirror
      s.world.instance(6).lsn += 100; // and it takes commits
      return walReceiver(row);
    });
    const error = await aborted(s, doc);
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe('dbid 6 ran again during the switchover, started by someone else (it may hold commits its mirror lacks); dbid 6 was started again as the acting primary: nothing changed');
    expect(s.world.calls).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'start 6', 'wal-receiver 2', 'fence 6', 'start 6 as primary']);
    // The pair is as it was: the mirror streams from it synchronously, and it commits.
    const mirror = (await s.load()).segments.find((r) => r.dbid === 2)!;
    expect(await s.world.probe(old, DEFAULT_SETTINGS, mirror)).toMatchObject({ ok: true, inRecovery: false, mirror: { state: 'streaming', syncState: 'sync' } });
    await expect(s.world.verifyWritable(old)).resolves.toBeUndefined();
    expect(s.world.instance(2)).toMatchObject({ running: true, inRecovery: true, upstreamDbid: 6 });
  });

  test('the whole iteration of a switch undone by a start by hand: recorded as failed, the hold released, the rows as they were', async () => {
    const s = await setup();
    const outer = await s.planned({ contents: [0] });
    const old = (await s.load()).segments.find((r) => r.dbid === 6)!;
    const fence = s.world.fence.bind(s.world);
    jest.spyOn(s.world, 'fence').mockImplementationOnce(async (row, newPrimary) => {
      await s.world.start(old); // right before the fence
      return fence(row, newPrimary);
    });
    const { doc, visited } = await s.iterate(outer, outer.plan.switches[0]);
    expect(visited).toEqual(['SwitchOver', 'RecordContentFailure']);
    expect(doc.recordContentFailure).toMatchObject({ cause: expect.stringMatching(/^SwitchoverAbortedError: dbid 6 ran again during the switchover, started by someone else/) });
    expect(await s.states(0)).toEqual(['2 m/u/s', '6 p/u/s']);
    expect(await s.load()).toMatchObject({ pendingOperations: [], pendingFences: [] });
    expect(s.world.instance(6)).toMatchObject({ running: true, inRecovery: false, fenced: false });
  });

  test('a fence that fails undoes the switch: the old primary is started again as the primary', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    jest.spyOn(s.world, 'fence').mockRejectedValueOnce(new HostCommandError('fence of dbid 6: No space left on device', 1));
    const error = await aborted(s, doc);
    expect(error.message).toBe('HostCommandError: fence of dbid 6: No space left on device; dbid 6 was started again as the acting primary: nothing changed');
    expect(s.world.calls).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'wal-receiver 2', 'start 6 as primary']);
  });

  // After the fence, the old primary's next start is a standby; when the flip is then
  // refused, the undo must start it as the primary the catalog still names.
  test('a flip refused after the fence (the hold was taken away): started again as a writable primary, not as the standby the fence made it', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    const fence = s.world.fence.bind(s.world);
    jest.spyOn(s.world, 'fence').mockImplementationOnce(async (row, newPrimary) => {
      const report = await fence(row, newPrimary);
      await s.write({ rows: [], history: [], clearOperations: [{ content: 0, execution: EXEC }] });
      return report;
    });
    const error = (await s.step('switch-over', doc).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(SwitchoverAbortedError);
    expect(error.message).toBe(`ContentBusyError: content 0 is no longer held by execution ${EXEC}: not touching it; dbid 6 was started again as the acting primary: nothing changed`);
    expect(s.world.calls.filter((c) => !c.startsWith('catalog'))).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'wal-receiver 2', 'fence 6', 'start 6 as primary']);
    expect(await s.states(0)).toEqual(['2 m/u/s', '6 p/u/s']);
    expect(s.world.instance(6)).toMatchObject({ running: true, inRecovery: false });
    await expect(s.world.verifyWritable((await s.load()).segments.find((r) => r.dbid === 6)!)).resolves.toBeUndefined();
  });

  // The flip's write commits, but its answer is lost (the SDK retries the committed
  // transaction and its version condition fails: CatalogConflictError). The re-read finds
  // the rows flipped as intended: that is its own write, not a change by someone else.
  test('a flip whose write committed but whose answer was lost: flipped once, promoted, the old primary not started again', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    const version = (await s.load()).version;
    const rows = (await s.history()).length;
    s.catalog.loseAnswerOnce((change) => change.rows.some((r) => r.dbid === 2 && r.role === 'p'));
    const result = await s.step('switch-over', doc);
    expect(result).toMatchObject({ checkpointLsn: '0/3000000', receivedLsn: '0/3000028' });
    // The lost write is not in the log (its answer never came); nothing else was written.
    expect(s.world.calls).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'wal-receiver 2', 'fence 6', 'promote 2', 'verify-writable 2']);
    expect(s.catalog.afterApply).toBeUndefined(); // the answer was lost, once
    const snapshot = await s.load();
    expect(snapshot).toMatchObject({ version: version + 1, pendingFences: [], pendingOperations: [hold(0, EXEC), hold(1, EXEC)] });
    expect(await s.states(0)).toEqual(['2 p/u/n', '6 m/d/n']);
    expect((await s.history()).slice(rows)).toEqual([
      'FTS: update role, status, and mode for dbid 6 with contentid 0 to m, d, and n: gprecoverseg -r: stopped cleanly for a planned switchover (shutdown checkpoint 0/3000000, received by dbid 2)',
      'FTS: update role, status, and mode for dbid 2 with contentid 0 to p, u, and n: gprecoverseg -r: back to its preferred role of primary',
    ]);
    expect(s.world.instance(2)).toMatchObject({ running: true, inRecovery: false });
    expect(s.world.instance(6)).toMatchObject({ running: false, inRecovery: true, upstreamDbid: 2 });
  });

  // Its own committed flip is recognised before the hold is checked: once flipped, starting
  // the old primary again would give the content two writable primaries.
  test('a lost answer of the flip, and the hold gone by the time it is read again: still its own flip, completed, the old primary not started', async () => {
    const s = await setup();
    const doc = await s.switchDoc(0);
    s.catalog.afterApply = (id, version, change) => {
      if (!change.rows.some((r) => r.dbid === 2 && r.role === 'p')) return;
      s.catalog.afterApply = undefined;
      void s.catalog.apply(id, version, { rows: [], history: [], clearOperations: [{ content: 0, execution: EXEC }] }); // commits at once
      throw new CatalogConflictError(id, version - 1);
    };
    await s.step('switch-over', doc);
    expect(s.world.calls.filter((c) => !c.startsWith('catalog'))).toEqual(['probe 6', 'checkpoint 6', 'stop 6', 'wal-receiver 2', 'fence 6', 'promote 2', 'verify-writable 2']);
    expect(await s.states(0)).toEqual(['2 p/u/n', '6 m/d/n']);
    expect(s.world.instance(6)).toMatchObject({ running: false, inRecovery: true });
  });
});

describe('a whole switch of one pair, and the run', () => {
  test('switch-over, rewind of the old primary, mark-recovered: m/u/n, no fence ever owed, hold released; the summary is complete', async () => {
    const s = await setup();
    const outer = await s.planned({ contents: [0, 1] });
    s.world.calls.splice(0);
    const fencesOwed: unknown[] = [];
    s.catalog.afterApply = (_id, _version, change) => void fencesOwed.push(...(change.setFences ?? []));
    const started = performance.now();
    const results: Doc[] = [];
    for (const item of outer.plan.switches) {
      const { doc, visited } = await s.iterate(outer, item);
      expect(visited).toEqual(['SwitchOver', 'StartRewind', 'WaitForRewind', 'PollRewind', 'RewindDone', 'MarkRewound']);
      results.push(doc);
    }
    expect(s.world.calls.filter((c) => !c.startsWith('catalog') && !c.startsWith('job-status'))).toEqual([
      'probe 6', 'checkpoint 6', 'stop 6', 'wal-receiver 2', 'fence 6', 'promote 2', 'verify-writable 2',
      'probe 6', 'rebuild 6 from 2 (rewind)', 'wal-receiver 6',
      'probe 7', 'checkpoint 7', 'stop 7', 'wal-receiver 3', 'fence 7', 'promote 3', 'verify-writable 3',
      'probe 7', 'rebuild 7 from 3 (rewind)', 'wal-receiver 7',
    ]);
    // No write of the whole switch records a fence: the old primaries were fenced before their flips.
    expect(fencesOwed).toEqual([]);
    expect(results.map((r) => r.markRecovered)).toEqual([
      { content: 0, dbid: 6, recovered: true, method: 'rewind', receiver: 'streaming', version: expect.any(Number) },
      { content: 1, dbid: 7, recovered: true, method: 'rewind', receiver: 'streaming', version: expect.any(Number) },
    ]);
    expect(await s.states(0)).toEqual(['2 p/u/n', '6 m/u/n']);
    expect(await s.states(1)).toEqual(['3 p/u/n', '7 m/u/n']);
    const snapshot = await s.load();
    expect(snapshot).toMatchObject({ pendingFences: [], pendingOperations: [], status: 'degraded' });
    expect((await s.history()).filter((h) => h.includes('dbid 6 with contentid 0'))).toEqual([
      'FTS: update role, status, and mode for dbid 6 with contentid 0 to m, d, and n: gprecoverseg -r: stopped cleanly for a planned switchover (shutdown checkpoint 0/3000000, received by dbid 2)',
      'FTS: update role, status, and mode for dbid 6 with contentid 0 to m, u, and n: gprecoverseg -r rebuilt it (rewind); it streams from dbid 2',
    ]);
    expect(s.world.instance(6)).toMatchObject({ running: true, inRecovery: true, upstreamDbid: 2 });
    expect(await s.step('summarize', { ...outer, results })).toEqual({
      complete: true, done: [{ content: 0, dbid: 6 }, { content: 1, dbid: 7 }], failed: [], skipped: [], upToDate: [], warnings: [], message: '2 content(s) switched back to their preferred roles (0, 1)',
    });
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test('an aborted switchover is recorded, its hold released, the other pair switched; the summary lists both and what was left alone', async () => {
    const s = await setup();
    const outer = await s.planned();
    s.world.instance(6).uncleanStop = true;
    const first = await s.iterate(outer, outer.plan.switches[0]);
    expect(first.visited).toEqual(['SwitchOver', 'RecordContentFailure']);
    const cause = 'SwitchoverAbortedError: dbid 6 did not shut down cleanly (in production); dbid 6 was started again as the acting primary: nothing changed';
    expect(first.doc.recordContentFailure).toEqual({ content: 0, dbid: 6, failed: true, cause });
    expect((await s.history()).at(-1)).toBe(`FTS: gprecoverseg -r of dbid 6 with contentid 0 failed: ${cause}`);
    expect((await s.load()).pendingOperations).toEqual([held(SWITCH_1)]);
    expect(await s.states(0)).toEqual(['2 m/u/s', '6 p/u/s']);

    const second = await s.iterate(outer, outer.plan.switches[1]);
    expect(second.visited).toEqual(['SwitchOver', 'StartRewind', 'WaitForRewind', 'PollRewind', 'RewindDone', 'MarkRewound']);
    const summary = await s.step('summarize', { ...outer, results: [first.doc, second.doc] });
    expect(summary).toMatchObject({
      complete: false,
      message: `1 content(s) switched back to their preferred roles (1); content 0 failed: ${cause}; content 3 left alone: primary dbid 9 is p/u/n and mirror dbid 5 is m/u/n: a pair is switched only when both are up and in sync (recover it, let it catch up)`,
    });
    expect((await s.load()).pendingOperations).toEqual([]);
  });

  test('a rewind of the old primary that makes no progress for stallSeconds (passed to each iteration) is cancelled; the content fails and is released, the new primary serves on', async () => {
    const s = await setup();
    const outer = await s.planned({ contents: [0], pollSeconds: 5, stallSeconds: 20 });
    expect(outer.plan).toMatchObject({ pollSeconds: 5, stallSeconds: 20 });
    s.world.scriptedJobs.push({ state: 'running', progress: { bytes: 0, total: 8192, tool: 'pg_rewind' } });
    const { doc, visited } = await s.iterate(outer, outer.plan.switches[0]);
    expect(doc.stallSeconds).toBe(20);
    // The rewind starts right after the switch; polls at 5 s (0 bytes first seen), 10, 15, 20, 25 (20 s: not more), 30: cancelled.
    const loop = ['WaitForRewind', 'PollRewind', 'RewindDone'];
    expect(visited).toEqual(['SwitchOver', 'StartRewind', ...Array.from({ length: 5 }, () => loop).flat(), 'WaitForRewind', 'PollRewind', 'RecordContentFailure']);
    const cause = 'RebuildFailedError: the rebuild of dbid 6 of content 0 made no progress for 25 s (limit 20 s from stallSeconds 20): cancelled';
    expect(doc.recordContentFailure).toEqual({ content: 0, dbid: 6, failed: true, cause });
    expect(s.world.calls.filter((c) => c.startsWith('cancel-job'))).toEqual(['cancel-job job-1-dbid-6', 'cancel-job job-1-dbid-6']);
    expect(await s.states(0)).toEqual(['2 p/u/n', '6 m/d/n']);
    expect(await s.load()).toMatchObject({ pendingOperations: [], pendingFences: [] });
    expect(s.world.instance(2)).toMatchObject({ running: true, inRecovery: false });
  });

  test('contents in their preferred roles are up to date: the run is complete, and its summary says "nothing to do"', async () => {
    const s = await setup();
    const outer = await s.planned({ contents: [0, 2] });
    expect(outer.plan).toMatchObject({ switches: [SWITCH_0], skipped: [], upToDate: [2] });
    const { doc } = await s.iterate(outer, outer.plan.switches[0]);
    expect(await s.step('summarize', { ...outer, results: [doc] })).toEqual({
      complete: true, done: [{ content: 0, dbid: 6 }], failed: [], skipped: [], upToDate: [2], warnings: [], message: '1 content(s) switched back to their preferred roles (0); content 2: nothing to do',
    });
    expect((await s.load()).pendingOperations).toEqual([]);
  });
});

describe('summarize', () => {
  test('upToDate is listed as "nothing to do" after what was left alone; only failures and skipped contents make it incomplete', async () => {
    const { step } = await setup();
    const plan = { switches: [], skipped: [], upToDate: [2] };
    const done = { markRecovered: { content: 0, dbid: 6, recovered: true } };
    expect(await step('summarize', { clusterId: CLUSTER, plan, results: [done] })).toEqual({
      complete: true, done: [{ content: 0, dbid: 6 }], failed: [], skipped: [], upToDate: [2], warnings: [], message: '1 content(s) switched back to their preferred roles (0); content 2: nothing to do',
    });
    expect(await step('summarize', { clusterId: CLUSTER, plan: { ...plan, skipped: [{ content: 3, reason: 'not in sync' }] }, results: [] })).toMatchObject({
      complete: false,
      message: '0 content(s) switched back to their preferred roles; content 3 left alone: not in sync; content 2: nothing to do',
    });
    // A plan without upToDate (a state document of an earlier version): none.
    expect(await step('summarize', { clusterId: CLUSTER, plan: { switches: [], skipped: [] }, results: [done] })).toMatchObject({ complete: true, upToDate: [] });
  });
});
