/**
 * The in-memory fakes: FakeCatalog held to the expectations test/adapters/dynamodb-catalog.test.ts
 * holds the DynamoDB adapter to (conflicts, lease-conditioned writes, the validator), and
 * the real PromoteMirror steps run on the fakes for one failover, in milliseconds.
 */
import { performance } from 'node:perf_hooks';
import { planFailover } from '../../lambdas/core/decide';
import { CatalogConflictError, ClusterNotFoundError, ContentBusyError, HostCommandError, LeaseLostError, NotLeaseHolderError, PrimaryAliveError, SegmentUnreachableError, ValidationError, WrongInstanceError } from '../../lambdas/core/errors';
import type { CatalogChange, PendingOperation, ProberMemory, SegmentRow } from '../../lambdas/core/model';
import { emptyMemory } from '../../lambdas/core/model';
import { planRecovery } from '../../lambdas/core/recovery';
import { DEFAULT_SETTINGS, parseSettings } from '../../lambdas/core/settings';
import { silentTelemetry } from '../../lambdas/ports/telemetry';
import { PROMOTE_STEPS, runPromoteStep, type PromoteStep, type PromotionDeps } from '../../lambdas/service/promotion';
import { FakeCatalog, FakeSegments } from './fakes';

const T0 = '2024-05-01T10:00:00.000Z';
const T1 = '2024-05-01T10:01:00.000Z';

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number, over: Partial<SegmentRow> = {}): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`, datadir: `/data/${role}/gpseg${content}`, ...over,
});

/** As in the DynamoDB test: coordinator 1 + standby 6; content 0: primary 2, mirror 4; content 1: primary 3, mirror 5. */
const segments = (): SegmentRow[] => [
  row(1, -1, 'p', 'cdw', 5432, { instanceId: 'i-0c0', availabilityZone: 'us-east-1a' }),
  row(6, -1, 'm', 'scdw', 5432, { instanceId: 'i-0c1', availabilityZone: 'us-east-1b' }),
  row(2, 0, 'p', 'sdw1', 6000, { instanceId: 'i-0a1', availabilityZone: 'us-east-1a', placementGroup: 'fts-spread', partitionNumber: 1 }),
  row(3, 1, 'p', 'sdw2', 6000, { instanceId: 'i-0a2', availabilityZone: 'us-east-1a', placementGroup: 'fts-spread', partitionNumber: 2 }),
  row(4, 0, 'm', 'sdw2', 7000),
  row(5, 1, 'm', 'sdw1', 7000),
];
const settings = parseSettings({ probeIntervalSeconds: 3, mirrorDownGracePeriodSeconds: 15 });
const byDbid = (dbid: number) => segments().find((r) => r.dbid === dbid)!;
const sorted = () => [...segments()].sort((a, b) => a.dbid - b.dbid);

/** Mirror `mirrorDbid` of the pair with primary `primaryDbid` is down: mirror m/d/n, primary p/u/n, a history row each. */
function mirrorDown(primaryDbid: number, mirrorDbid: number): CatalogChange {
  return {
    rows: [{ ...byDbid(primaryDbid), mode: 'n' }, { ...byDbid(mirrorDbid), status: 'd', mode: 'n' }],
    history: [
      { time: T1, dbid: mirrorDbid, description: `FTS: mirror dbid ${mirrorDbid} down past the grace period` },
      { time: T1, dbid: primaryDbid, description: `FTS: primary dbid ${primaryDbid} runs without synchronous replication` },
    ],
    status: 'degraded',
  };
}

async function initialized(clusterId = 'c1'): Promise<FakeCatalog> {
  const catalog = new FakeCatalog();
  await catalog.initialize(clusterId, segments(), settings, T0);
  return catalog;
}

describe('FakeCatalog keeps the DynamoDB catalog contract', () => {
  it('round-trips rows, settings and the first history row', async () => {
    const catalog = await initialized();
    expect(await catalog.load('c1')).toEqual({ clusterId: 'c1', version: 1, status: 'up', segments: sorted(), pendingPromotions: [], pendingFences: [], pendingOperations: [], memory: emptyMemory() });
    expect(await catalog.loadSettings('c1')).toEqual(settings);
    expect(await catalog.history('c1')).toEqual([{ time: T0, dbid: 1, description: expect.stringMatching(/initialized with 6 segment instances \(2 contents\)/) }]);
  });

  it('hands out copies: changing a loaded snapshot changes nothing stored', async () => {
    const catalog = await initialized();
    (await catalog.load('c1')).segments[0].port = 1;
    expect((await catalog.load('c1')).segments).toEqual(sorted());
  });

  it('refuses to initialize twice, refuses invalid rows, and knows no other cluster', async () => {
    const catalog = await initialized();
    await expect(catalog.initialize('c1', segments(), settings, T1)).rejects.toThrow(/already exists/);
    await expect(catalog.initialize('c2', segments().map((r) => (r.dbid === 4 ? { ...r, role: 'p' as const } : r)), settings, T0)).rejects.toThrow(/content 0 has 2 acting primaries \(dbids 2, 4\)/);
    await expect(catalog.load('c2')).rejects.toBeInstanceOf(ClusterNotFoundError);
    await expect(catalog.acquireLease('c2', 'prober-a', 1000, 0)).rejects.toBeInstanceOf(ClusterNotFoundError);
  });

  it('writes rows, history and status with version + 1', async () => {
    const catalog = await initialized();
    const change = mirrorDown(2, 4);
    expect(await catalog.apply('c1', 1, change)).toBe(2);
    const snapshot = await catalog.load('c1');
    expect(snapshot).toMatchObject({ version: 2, status: 'degraded' });
    expect(snapshot.segments.find((r) => r.dbid === 4)).toEqual(change.rows[1]);
    expect(snapshot.segments.find((r) => r.dbid === 3)).toEqual(byDbid(3));
    expect((await catalog.history('c1')).slice(1)).toEqual(change.history);
    expect(await catalog.history('c1', 1)).toEqual([change.history[1]]);
  });

  it('lets exactly one of two writers from the same version win, with no partial write', async () => {
    const catalog = await initialized();
    const changes = [mirrorDown(2, 4), mirrorDown(3, 5)];
    const results = await Promise.allSettled(changes.map((c) => catalog.apply('c1', 1, c)));
    expect(results.filter((r) => r.status === 'fulfilled')).toEqual([{ status: 'fulfilled', value: 2 }]);
    const won = results.findIndex((r) => r.status === 'fulfilled');
    const lost = results[1 - won];
    expect(lost.status === 'rejected' && lost.reason).toEqual(new CatalogConflictError('c1', 1));
    const snapshot = await catalog.load('c1');
    for (const r of changes[1 - won].rows) expect(snapshot.segments.find((s) => s.dbid === r.dbid)).toEqual(byDbid(r.dbid));
  });

  it('rejects a writer whose version moved between its read and its write', async () => {
    const catalog = await initialized();
    catalog.beforeApply = () => {
      catalog.beforeApply = undefined;
      void catalog.apply('c1', 1, mirrorDown(3, 5)); // another writer gets in first
    };
    await expect(catalog.apply('c1', 1, mirrorDown(2, 4))).rejects.toEqual(new CatalogConflictError('c1', 1));
    expect((await catalog.load('c1')).segments.find((r) => r.dbid === 4)?.status).toBe('u');
  });

  const at = (dbid: number, over: Partial<SegmentRow>) => ({ ...byDbid(dbid), ...over });
  const hist = (dbid: number) => ({ time: T1, dbid, description: `change of dbid ${dbid}` });
  it.each<[string, CatalogChange, RegExp]>([
    ['two primaries for a content', { rows: [at(4, { role: 'p' })], history: [hist(4)] }, /content 0 has 2 acting primaries \(dbids 2, 4\)/],
    ['a pair with different modes', { rows: [at(4, { mode: 'n' })], history: [hist(4)] }, /content 0: dbid 2 has mode s, dbid 4 has mode n/],
    ['a bad port', { rows: [at(4, { port: 0 })], history: [hist(4)] }, /dbid 4: port must be at least 1/],
    ['an unknown dbid', { rows: [row(99, 1, 'm', 'sdw3', 7000)], history: [hist(99)] }, /dbid 99 is not in the catalog/],
    ['a dbid moved to another content', { rows: [at(4, { content: 1, role: 'm' })], history: [hist(4)] }, /dbid 4 belongs to content 0, not 1/],
    ['a row change without a history row', { rows: [at(2, { mode: 'n' }), at(4, { mode: 'n' })], history: [hist(4)] }, /dbid 2 changes without a history row/],
    ['a transition not in the table', { rows: [at(4, { status: 'd' })], history: [hist(4)] }, /dbid 4: m\/u\/s -> m\/d\/s is not an allowed transition/],
    ['a history row with a bad time', { rows: [], history: [{ time: 'now', dbid: 2, description: 'x' }] }, /history dbid 2: time/],
    ['a pending promotion naming another content', { rows: [], history: [], setPending: [{ content: 0, mirrorDbid: 5, failedPrimaryDbid: 2, version: 2, startedAt: T1 }] }, /names dbid 5, not a row of that content/],
    ['more than 100 items', { rows: [at(4, { status: 'd', mode: 'n' }), at(2, { mode: 'n' })], history: Array.from({ length: 99 }, () => hist(4)) }, /exceeds the 100 of one transaction/],
  ])('rejects %s before writing anything', async (_name, change, message) => {
    const catalog = await initialized();
    const error = await catalog.apply('c1', 1, change).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(message);
    expect(await catalog.load('c1')).toMatchObject({ version: 1, segments: sorted() });
    expect(await catalog.history('c1')).toHaveLength(1);
  });

  it('records and clears the pending promotion and the fence of a failover flip', async () => {
    const catalog = await initialized();
    const flip = planFailover(await catalog.load('c1'), 0, 2, 4, new Date(T1));
    expect(await catalog.apply('c1', 1, flip)).toBe(2);
    const after = await catalog.load('c1');
    expect(after.pendingPromotions).toEqual(flip.setPending);
    expect(after.pendingFences).toEqual([{ dbid: 2, content: 0, newPrimaryDbid: 4, since: T1, reason: 'failed over to dbid 4' }]);
    expect(await catalog.apply('c1', 2, { rows: [], history: [{ time: T1, dbid: 2, description: 'fenced' }], clearPending: [0], clearFences: [2] })).toBe(3);
    expect(await catalog.load('c1')).toMatchObject({ pendingPromotions: [], pendingFences: [], segments: after.segments });
  });

  describe('pending operations (the lock per content), at the fake\'s clock', () => {
    const NOW = Date.parse('2024-05-01T10:30:00.000Z');
    const op = (content: number, execution: string, over: Partial<PendingOperation> = {}): PendingOperation => ({
      content, kind: 'recovery', execution, since: T0, expiresAt: '2024-05-01T11:00:00.000Z', ...over,
    });
    async function clocked(): Promise<FakeCatalog> {
      const catalog = await initialized();
      catalog.clock = () => new Date(NOW);
      return catalog;
    }

    it('records, replaces and releases an operation by content; hands out copies', async () => {
      const catalog = await clocked();
      const a = op(0, 'recover-A');
      const b = op(1, 'rebalance-B', { kind: 'rebalance' });
      expect(await catalog.apply('c1', 1, { rows: [], history: [], setOperations: [b, a] })).toBe(2);
      const loaded = await catalog.load('c1');
      expect(loaded.pendingOperations).toEqual([a, b]);
      loaded.pendingOperations[0].execution = 'changed';
      const renewed = { ...a, expiresAt: '2024-05-01T12:00:00.000Z' };
      await catalog.apply('c1', 2, { rows: [], history: [], setOperations: [renewed] });
      await catalog.apply('c1', 3, { rows: [], history: [], clearOperations: [{ content: 1, execution: 'rebalance-B' }, { content: 9, execution: 'nobody' }] });
      expect(await catalog.load('c1')).toMatchObject({ version: 4, pendingOperations: [renewed] });
    });

    it('refuses, writing nothing: a content another execution holds, a promotion on a held content, a release by another execution, an unknown content', async () => {
      const catalog = await clocked();
      const a = op(0, 'recover-A');
      await catalog.apply('c1', 1, { rows: [], history: [], setOperations: [a] });
      const held = 'content 0 is held by recovery execution recover-A (since 2024-05-01T10:00:00.000Z, until 2024-05-01T11:00:00.000Z)';
      const refusals: [CatalogChange, string, boolean][] = [
        [{ rows: [], history: [], setOperations: [op(0, 'rebalance-B', { kind: 'rebalance' })] }, `change to cluster c1 refused, a content is held by someone else: ${held}: rebalance execution rebalance-B cannot take it`, true],
        [{ rows: [], history: [], setPending: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 3, startedAt: T1 }] }, `change to cluster c1 refused, a content is held by someone else: ${held}: no promotion may start on it`, true],
        [{ rows: [], history: [], clearOperations: [{ content: 0, execution: 'recover-Z' }] }, `change to cluster c1 refused, a content is held by someone else: ${held}, not by execution recover-Z: a workflow releases only its own hold`, true],
        [{ rows: [], history: [], setOperations: [op(7, 'recover-A')] }, 'invalid change to cluster c1: pending operation names content 7, which is not in the catalog of cluster c1', false],
      ];
      for (const [change, message, busy] of refusals) {
        const error = await catalog.apply('c1', 2, change).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ValidationError);
        expect(error instanceof ContentBusyError).toBe(busy);
        expect((error as Error).message).toBe(message);
      }
      expect(await catalog.load('c1')).toMatchObject({ version: 2, pendingOperations: [a], pendingPromotions: [] });
    });

    it('refuses to take a content with a pending promotion', async () => {
      const catalog = await clocked();
      await catalog.apply('c1', 1, planFailover(await catalog.load('c1'), 0, 2, 4, new Date(T1)));
      await expect(catalog.apply('c1', 2, { rows: [], history: [], setOperations: [op(0, 'recover-A')] })).rejects.toThrow(ContentBusyError);
      expect((await catalog.load('c1')).pendingOperations).toEqual([]);
    });

    it('lets another execution take a content whose operation lapsed by its clock', async () => {
      const catalog = await clocked();
      const lapsing = op(0, 'recover-A', { expiresAt: '2024-05-01T10:40:00.000Z' });
      await catalog.apply('c1', 1, { rows: [], history: [], setOperations: [lapsing] });
      const b = op(0, 'rebalance-B', { kind: 'rebalance' });
      await expect(catalog.apply('c1', 2, { rows: [], history: [], setOperations: [b] })).rejects.toThrow(ContentBusyError);
      catalog.clock = () => new Date('2024-05-01T10:40:00.000Z');
      await catalog.apply('c1', 2, { rows: [], history: [], clearOperations: [{ content: 0, execution: 'rebalance-B' }] });
      expect((await catalog.load('c1')).pendingOperations).toEqual([lapsing]);
      await catalog.apply('c1', 3, { rows: [], history: [], setOperations: [b] });
      expect((await catalog.load('c1')).pendingOperations).toEqual([b]);
    });
  });

  describe('lease', () => {
    const TTL = 10_000;
    const NOW = 1_700_000_000_000;

    it('a prober writes while it holds a live lease, and nothing once it expired or was taken over', async () => {
      const catalog = await initialized();
      const a = (await catalog.acquireLease('c1', 'prober-a', TTL, NOW))!;
      expect(await catalog.apply('c1', 1, mirrorDown(2, 4), { owner: a.owner, token: a.token, now: NOW + 1 })).toBe(2);
      await expect(catalog.apply('c1', 2, mirrorDown(3, 5), { owner: a.owner, token: a.token, now: a.expiresAt + 1 })).rejects.toBeInstanceOf(NotLeaseHolderError);
      const b = (await catalog.acquireLease('c1', 'prober-b', TTL, a.expiresAt + 1))!;
      await expect(catalog.apply('c1', 2, mirrorDown(3, 5), { owner: a.owner, token: a.token, now: NOW + 2 })).rejects.toThrow(/lease \(owner prober-a, token 1\) is no longer held; now held by prober-b/);
      expect((await catalog.load('c1')).version).toBe(2);
      expect(await catalog.apply('c1', 2, mirrorDown(3, 5), { owner: b.owner, token: b.token, now: a.expiresAt + 2 })).toBe(3);
    });

    it('a stale version is still a CatalogConflictError under a live lease', async () => {
      const catalog = await initialized();
      const a = (await catalog.acquireLease('c1', 'prober-a', TTL, NOW))!;
      await catalog.apply('c1', 1, mirrorDown(2, 4));
      await expect(catalog.apply('c1', 1, mirrorDown(3, 5), { owner: a.owner, token: a.token, now: NOW + 1 })).rejects.toBeInstanceOf(CatalogConflictError);
    });

    it('is held by one owner at a time, renewed only by its holder, taken over after expiry with a larger token', async () => {
      const catalog = await initialized();
      const a = (await catalog.acquireLease('c1', 'prober-a', TTL, NOW))!;
      expect(a).toEqual({ clusterId: 'c1', owner: 'prober-a', token: 1, expiresAt: NOW + TTL });
      expect(await catalog.acquireLease('c1', 'prober-b', TTL, NOW + 1000)).toBeNull();
      const renewed = await catalog.renewLease(a, TTL, NOW + 5000);
      expect(await catalog.acquireLease('c1', 'prober-b', TTL, NOW + TTL + 1)).toBeNull();
      await expect(catalog.renewLease({ ...a, owner: 'prober-b' }, TTL, NOW + 6000)).rejects.toBeInstanceOf(LeaseLostError);
      const b = (await catalog.acquireLease('c1', 'prober-b', TTL, renewed.expiresAt + 1))!;
      expect(b.token).toBeGreaterThan(a.token);
      await expect(catalog.renewLease(renewed, TTL, renewed.expiresAt + 2)).rejects.toThrow(/lost: now held by prober-b/);
      await expect(catalog.renewLease(a, TTL, a.expiresAt + 1)).rejects.toBeInstanceOf(LeaseLostError);
    });

    it('is free once released, the token keeps growing, and a released lease writes nothing', async () => {
      const catalog = await initialized();
      const a = (await catalog.acquireLease('c1', 'prober-a', TTL, NOW))!;
      await catalog.releaseLease(a);
      await catalog.releaseLease(a);
      await expect(catalog.apply('c1', 1, mirrorDown(2, 4), { owner: a.owner, token: a.token, now: NOW + 1 })).rejects.toThrow(/the lease was released/);
      expect(await catalog.acquireLease('c1', 'prober-b', TTL, NOW + 1)).toMatchObject({ owner: 'prober-b', token: a.token + 1 });
      await catalog.releaseLease(a); // not the holder: b keeps it
      expect(await catalog.acquireLease('c1', 'prober-c', TTL, NOW + 2)).toBeNull();
    });

    it('stores the prober memory with a renewal, apart from the catalog version', async () => {
      const catalog = await initialized();
      const a = (await catalog.acquireLease('c1', 'prober-a', TTL, NOW))!;
      const memory: ProberMemory = { ...emptyMemory(), mirrorDownSince: { '0': T0 }, recoveryLsn: { '3': '0/3000060' } };
      await catalog.renewLease(a, TTL, NOW + 1, memory);
      expect(await catalog.load('c1')).toMatchObject({ memory, version: 1 });
    });
  });
});

describe('FakeSegments', () => {
  const world = () => FakeSegments.fromRows(segments());

  it('answers probes as the rows describe the world, and says when the instance at an address is another one', async () => {
    const w = world();
    const probe = await w.probe(byDbid(2), settings, byDbid(4), { writeCheck: true });
    expect(probe).toMatchObject({ ok: true, inRecovery: false, syncRepOn: true, wrote: true, mirror: { state: 'streaming', syncState: 'sync' } });
    expect(await w.probe(byDbid(4), settings)).toMatchObject({ ok: true, inRecovery: true });
    w.kill(2);
    expect(await w.probe(byDbid(2), settings)).toMatchObject({ ok: false, kind: 'refused', attempts: settings.probeRetries + 1 });
    expect(await w.probe({ ...byDbid(2), port: 7000, hostname: 'sdw2', address: 'sdw2.internal' }, settings)).toMatchObject({ ok: false, kind: 'wrong-instance' });
    await expect(w.promote({ ...byDbid(4), systemIdentifier: '42' })).rejects.toBeInstanceOf(WrongInstanceError);
    expect(w.instance(4).inRecovery).toBe(true);
  });

  it('a dead mirror blocks commits while sync rep waits for it; sync rep off releases them', async () => {
    const w = world();
    w.kill(4);
    expect(await w.probe(byDbid(2), settings, byDbid(4))).toMatchObject({ ok: true, mirror: { state: 'absent' }, syncRepOn: true });
    await expect(w.verifyWritable(byDbid(2))).rejects.toThrow(/waited for synchronous standby dbid 4/);
    await w.setSyncRep(byDbid(2), byDbid(4), false);
    await expect(w.verifyWritable(byDbid(2))).resolves.toBeUndefined();
  });

  it('host commands fail on a host that is down or cut off; a rewind needs the target stopped', async () => {
    const w = world();
    w.crashHost('sdw1');
    await expect(w.fence(byDbid(2), byDbid(4))).rejects.toBeInstanceOf(HostCommandError);
    w.restoreHost('sdw1');
    w.isolateHost('sdw2');
    await expect(w.walReceiver(byDbid(4))).rejects.toBeInstanceOf(SegmentUnreachableError);
    w.isolateHost('sdw2', false);
    await expect(world().rebuildAsMirror(byDbid(4), byDbid(2), 'rewind')).rejects.toThrow(/must be shut down cleanly/);
  });
});

describe('the real PromoteMirror steps on the fakes', () => {
  const NOW = new Date('2026-11-23T10:00:00.000Z');
  const stepKey = (step: PromoteStep) => step.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

  async function setup() {
    const catalog = new FakeCatalog();
    await catalog.initialize('c1', segments(), DEFAULT_SETTINGS, NOW.toISOString());
    const world = FakeSegments.fromRows(segments(), { now: () => NOW });
    const deps: PromotionDeps = { catalog, probe: world, control: world, host: world, telemetry: silentTelemetry, now: () => NOW };
    const input = { clusterId: 'c1', content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 1, reason: 'primary dbid 2 refused connections' };
    /** Runs steps in the state machine's order, each result at `$.<stepKey>` as the ASL puts it. */
    const run = async (steps: PromoteStep[]) => {
      const doc: Record<string, unknown> = { ...input };
      for (const step of steps) doc[stepKey(step)] = await runPromoteStep(deps, step, doc);
      return doc;
    };
    return { catalog, world, run };
  }
  const HAPPY_PATH: PromoteStep[] = ['validate', 'confirm-failure', 'fence-old-primary', 'flip-catalog', 'promote', 'verify-writable', 'clear-pending', 'notify'];

  it('fails over a dead primary: fenced, flipped, promoted, writable, in milliseconds', async () => {
    expect(HAPPY_PATH.every((s) => PROMOTE_STEPS.includes(s))).toBe(true);
    const { catalog, world, run } = await setup();
    world.kill(2);
    const started = performance.now();
    const doc = await run(HAPPY_PATH);
    const elapsed = performance.now() - started;

    expect(doc).toMatchObject({
      confirmFailure: { alreadyFlipped: false, probe: 'refused', mirrorReceiver: 'waiting' },
      fenceOldPrimary: { fenced: true, wasRunning: false, missing: false },
      flipCatalog: { written: true },
      clearPending: { cleared: true },
    });
    const snapshot = await catalog.load('c1');
    expect(snapshot.segments.filter((r) => r.content === 0).map((r) => [r.dbid, `${r.role}/${r.status}/${r.mode}`])).toEqual([[2, 'm/d/n'], [4, 'p/u/n']]);
    expect(snapshot).toMatchObject({ status: 'degraded', pendingPromotions: [], pendingFences: [] });
    expect((await catalog.history('c1')).map((h) => h.description)).toEqual([
      expect.stringMatching(/initialized/),
      expect.stringMatching(/^FTS: dbid 2 with contentid 0 fenced/),
      expect.stringMatching(/dbid 2 with contentid 0 to m, d, and n/),
      expect.stringMatching(/dbid 4 with contentid 0 to p, u, and n/),
      'FTS: promotion of dbid 4 to acting primary of content 0 complete',
    ]);
    expect(world.instance(4)).toMatchObject({ running: true, inRecovery: false });
    expect(world.instance(4).syncStandbyDbid).toBeUndefined();
    expect(world.instance(2)).toMatchObject({ running: false, fenced: true, inRecovery: true, upstreamDbid: 4, needsRewind: true });
    expect(world.calls).toEqual(['probe 2', 'wal-receiver 4', 'fence 2', 'promote 4', 'verify-writable 4']);
    expect(elapsed).toBeLessThan(1000);

    // The next building block: gprecoverseg's plan rebuilds dbid 2 from dbid 4, and it streams again.
    const plan = planRecovery(snapshot, { mode: 'incremental' });
    expect(plan.recoveries.map((r) => [r.failedDbid, r.actingPrimaryDbid, r.method])).toEqual([[2, 4, 'rewind']]);
    const primary = snapshot.segments.find((r) => r.dbid === 4)!;
    await world.rebuildAsMirror(plan.recoveries[0].target, primary, plan.recoveries[0].method);
    expect(await world.probe(primary, DEFAULT_SETTINGS, plan.recoveries[0].target)).toMatchObject({ ok: true, mirror: { state: 'streaming', syncState: 'async' } });
  });

  it('aborts when the prober is cut off from a primary its mirror still streams from', async () => {
    const { catalog, world, run } = await setup();
    world.isolateHost('sdw1');
    await expect(run(['validate', 'confirm-failure'])).rejects.toThrow(PrimaryAliveError);
    expect((await catalog.load('c1')).version).toBe(1);
    expect(world.calls).toEqual(['probe 2', 'wal-receiver 4']);
  });

  it('a host that does not answer leaves the fence owed, the promotion goes on, and recovery waits for the fence', async () => {
    const { catalog, world, run } = await setup();
    world.crashHost('sdw1');
    const doc = await run(HAPPY_PATH);
    expect(doc.fenceOldPrimary).toMatchObject({ fenced: false, owed: true, cause: expect.stringMatching(/host sdw1 does not answer/) });
    const snapshot = await catalog.load('c1');
    expect(snapshot.pendingFences.map((f) => f.dbid)).toEqual([2]);
    expect(snapshot.segments.find((r) => r.dbid === 4)?.role).toBe('p');
    expect(planRecovery(snapshot, { mode: 'incremental' }).skipped).toEqual([{ content: 0, reason: expect.stringMatching(/fence is still owed to dbid 2/) }]);
  });
});
