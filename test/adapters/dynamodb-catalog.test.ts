/**
 * The DynamoDB catalog against a real DynamoDB Local (started by the jest global setup,
 * reached through AWS_ENDPOINT_URL_DYNAMODB). Tables get a suffix unique to this run and
 * each test its own cluster id.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { catalogTableNames, createCatalogTables, historySeq } from '../../lambdas/adapters/dynamodb/tables';
import type { CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import { planFailover } from '../../lambdas/core/decide';
import { CatalogConflictError, ClusterNotFoundError, ContentBusyError, LeaseLostError, NotLeaseHolderError, ValidationError } from '../../lambdas/core/errors';
import type { CatalogChange, PendingOperation, ProberMemory, SegmentRow } from '../../lambdas/core/model';
import { emptyMemory } from '../../lambdas/core/model';
import { DEFAULT_SETTINGS, parseSettings } from '../../lambdas/core/settings';

const suffix = randomUUID().slice(0, 8);
const tables: CatalogTableNames = { segments: `segments-${suffix}`, history: `history-${suffix}`, clusters: `clusters-${suffix}` };
const client = new DynamoDBClient({});
const catalog = new DynamoDbCatalog({ client, tables });
const T0 = '2024-05-01T10:00:00.000Z';
const T1 = '2024-05-01T10:01:00.000Z';
let clusterSeq = 0;
/** A cluster id no other test uses. */
const newClusterId = (name: string) => `${name}-${suffix}-${++clusterSeq}`;

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number, over: Partial<SegmentRow> = {}): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: `${host}.internal`, datadir: `/data/${role}/gpseg${content}`, ...over,
});

/** Coordinator 1 + standby 6; content 0: primary 2, mirror 4; content 1: primary 3, mirror 5; placement on some rows. */
const segments = (): SegmentRow[] => [
  row(1, -1, 'p', 'cdw', 5432, { instanceId: 'i-0c0', availabilityZone: 'us-east-1a' }),
  row(6, -1, 'm', 'scdw', 5432, { instanceId: 'i-0c1', availabilityZone: 'us-east-1b' }),
  row(2, 0, 'p', 'sdw1', 6000, { instanceId: 'i-0a1', availabilityZone: 'us-east-1a', placementGroup: 'fts-spread', partitionNumber: 1 }),
  row(3, 1, 'p', 'sdw2', 6000, { instanceId: 'i-0a2', availabilityZone: 'us-east-1a', placementGroup: 'fts-spread', partitionNumber: 2 }),
  row(4, 0, 'm', 'sdw2', 7000),
  row(5, 1, 'm', 'sdw1', 7000),
];
const settings = parseSettings({ probeIntervalSeconds: 3, mirrorDownGracePeriodSeconds: 15 });

async function initialized(name: string): Promise<string> {
  const clusterId = newClusterId(name);
  await catalog.initialize(clusterId, segments(), settings, T0);
  return clusterId;
}

/** Mirror `mirrorDbid` of the pair with primary `primaryDbid` is down: mirror m/d/n, primary p/u/n, a history row each. */
function mirrorDown(primaryDbid: number, mirrorDbid: number): CatalogChange {
  const byDbid = new Map(segments().map((r) => [r.dbid, r]));
  const primary = { ...byDbid.get(primaryDbid)!, mode: 'n' as const };
  const mirror = { ...byDbid.get(mirrorDbid)!, status: 'd' as const, mode: 'n' as const };
  return {
    rows: [primary, mirror],
    history: [
      { time: T1, dbid: mirrorDbid, description: `FTS: mirror dbid ${mirrorDbid} down past the grace period` },
      { time: T1, dbid: primaryDbid, description: `FTS: primary dbid ${primaryDbid} runs without synchronous replication` },
    ],
    status: 'degraded',
  };
}

beforeAll(async () => {
  await createCatalogTables(client, tables);
  await createCatalogTables(client, tables); // idempotent
});

afterAll(() => client.destroy());

describe('catalogTableNames', () => {
  it('reads the FTS_*_TABLE variables and falls back to defaults', () => {
    expect(catalogTableNames({})).toEqual({ segments: 'fts-segments', history: 'fts-history', clusters: 'fts-clusters' });
    expect(catalogTableNames({ FTS_SEGMENTS_TABLE: 's', FTS_HISTORY_TABLE: 'h', FTS_CLUSTERS_TABLE: 'c' })).toEqual({ segments: 's', history: 'h', clusters: 'c' });
  });

  it('sorts history keys by version, then by index', () => {
    const keys = [historySeq(10, 0), historySeq(9, 11), historySeq(9, 2), historySeq(1, 0)];
    expect([...keys].sort()).toEqual([historySeq(1, 0), historySeq(9, 2), historySeq(9, 11), historySeq(10, 0)]);
  });
});

describe('initialize and load', () => {
  it('round-trips every field of every row, the settings and one history row', async () => {
    const clusterId = await initialized('roundtrip');
    const snapshot = await catalog.load(clusterId);
    expect(snapshot).toEqual({
      clusterId,
      version: 1,
      status: 'up',
      segments: [...segments()].sort((a, b) => a.dbid - b.dbid),
      pendingPromotions: [],
      pendingFences: [],
      pendingOperations: [],
      memory: emptyMemory(),
    });
    expect(await catalog.loadSettings(clusterId)).toEqual(settings);
    expect(settings).not.toEqual(DEFAULT_SETTINGS);
    const history = await catalog.history(clusterId);
    expect(history).toEqual([{ time: T0, dbid: 1, description: expect.stringMatching(/initialized with 6 segment instances \(2 contents\)/) }]);
  });

  it('refuses to initialize a cluster twice and leaves the first one alone', async () => {
    const clusterId = await initialized('twice');
    const other = segments().map((r) => ({ ...r, port: r.port + 1 }));
    await expect(catalog.initialize(clusterId, other, settings, T1)).rejects.toThrow(/already exists/);
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.segments.map((r) => r.port)).toEqual([...segments()].sort((a, b) => a.dbid - b.dbid).map((r) => r.port));
    expect(await catalog.history(clusterId)).toHaveLength(1);
  });

  it('rejects invalid rows and writes nothing', async () => {
    const clusterId = newClusterId('badinit');
    const rows = segments().map((r) => (r.dbid === 4 ? { ...r, role: 'p' as const } : r));
    await expect(catalog.initialize(clusterId, rows, settings, T0)).rejects.toThrow(/content 0 has 2 acting primaries \(dbids 2, 4\)/);
    await expect(catalog.load(clusterId)).rejects.toBeInstanceOf(ClusterNotFoundError);
  });

  it('initializes a cluster too large for one transaction', async () => {
    const clusterId = newClusterId('large');
    const rows: SegmentRow[] = [];
    for (let content = 0; content < 60; content++) {
      rows.push(row(2 + content, content, 'p', `sdw${content % 8}`, 6000 + content), row(100 + content, content, 'm', `sdw${(content + 1) % 8}`, 7000 + content));
    }
    await catalog.initialize(clusterId, rows, settings, T0);
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.segments).toHaveLength(120);
    expect(snapshot.segments).toEqual([...rows].sort((a, b) => a.dbid - b.dbid));
  });

  it('names a corrupt row in the table', async () => {
    const clusterId = await initialized('corrupt');
    const doc = DynamoDBDocumentClient.from(client);
    await doc.send(new PutCommand({ TableName: tables.segments, Item: { clusterId, ...segments()[4], port: 0 } }));
    await expect(catalog.load(clusterId)).rejects.toThrow(/catalog of cluster .* holds invalid data: .*dbid 4: port must be at least 1/);
  });

  it('throws ClusterNotFoundError for an unknown cluster', async () => {
    const clusterId = newClusterId('missing');
    await expect(catalog.load(clusterId)).rejects.toBeInstanceOf(ClusterNotFoundError);
    await expect(catalog.loadSettings(clusterId)).rejects.toBeInstanceOf(ClusterNotFoundError);
    await expect(catalog.history(clusterId)).rejects.toBeInstanceOf(ClusterNotFoundError);
    await expect(catalog.acquireLease(clusterId, 'prober-a', 1000, 0)).rejects.toBeInstanceOf(ClusterNotFoundError);
  });
});

describe('apply', () => {
  it('writes rows, history and status with version + 1', async () => {
    const clusterId = await initialized('apply');
    const change = mirrorDown(2, 4);
    expect(await catalog.apply(clusterId, 1, change)).toBe(2);
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.version).toBe(2);
    expect(snapshot.status).toBe('degraded');
    const byDbid = new Map(snapshot.segments.map((r) => [r.dbid, r]));
    expect(byDbid.get(4)).toEqual(change.rows[1]);
    expect(byDbid.get(2)).toEqual(change.rows[0]);
    expect(byDbid.get(3)).toEqual(segments().find((r) => r.dbid === 3));
    const history = await catalog.history(clusterId);
    expect(history).toHaveLength(3);
    expect(history.slice(1)).toEqual(change.history);
    expect(await catalog.history(clusterId, 2)).toEqual(change.history);
    expect(await catalog.history(clusterId, 1)).toEqual([change.history[1]]);
  });

  it('lets exactly one of two writers from the same version win, with no partial write', async () => {
    const clusterId = await initialized('race');
    const changes = [mirrorDown(2, 4), mirrorDown(3, 5)];
    const results = await Promise.allSettled(changes.map((c) => catalog.apply(clusterId, 1, c)));
    const won = results.findIndex((r) => r.status === 'fulfilled');
    expect(results.filter((r) => r.status === 'fulfilled')).toEqual([{ status: 'fulfilled', value: 2 }]);
    const lost = results[1 - won];
    expect(lost.status === 'rejected' && lost.reason).toBeInstanceOf(CatalogConflictError);

    const snapshot = await catalog.load(clusterId);
    expect(snapshot.version).toBe(2);
    const byDbid = new Map(snapshot.segments.map((r) => [r.dbid, r]));
    for (const r of changes[won].rows) expect(byDbid.get(r.dbid)).toEqual(r);
    for (const r of changes[1 - won].rows) expect(byDbid.get(r.dbid)).toEqual(segments().find((s) => s.dbid === r.dbid));
    expect((await catalog.history(clusterId)).slice(1)).toEqual(changes[won].history);
  });

  it('rejects a writer whose version is stale', async () => {
    const clusterId = await initialized('stale');
    await catalog.apply(clusterId, 1, mirrorDown(2, 4));
    await expect(catalog.apply(clusterId, 1, mirrorDown(3, 5))).rejects.toEqual(new CatalogConflictError(clusterId, 1));
    expect((await catalog.load(clusterId)).segments.find((r) => r.dbid === 5)?.status).toBe('u');
  });

  it('relies on the version condition of the transaction, not only on the read before it', async () => {
    const clusterId = await initialized('condition');
    await catalog.apply(clusterId, 1, mirrorDown(2, 4));
    // A writer whose read raced the other write: its snapshot still says version 1.
    class StaleRead extends DynamoDbCatalog {
      override async load(id: string) {
        return { ...(await super.load(id)), version: 1 };
      }
    }
    const stale = new StaleRead({ client, tables });
    await expect(stale.apply(clusterId, 1, mirrorDown(3, 5))).rejects.toEqual(new CatalogConflictError(clusterId, 1));
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.version).toBe(2);
    expect(snapshot.segments.find((r) => r.dbid === 5)).toEqual(segments().find((r) => r.dbid === 5));
    expect(await catalog.history(clusterId)).toHaveLength(3);
  });

  const base = () => segments();
  const at = (dbid: number, over: Partial<SegmentRow>) => ({ ...base().find((r) => r.dbid === dbid)!, ...over });
  const hist = (dbid: number) => ({ time: T1, dbid, description: `change of dbid ${dbid}` });
  it.each<[string, CatalogChange, RegExp]>([
    ['two primaries for a content', { rows: [at(4, { role: 'p' })], history: [hist(4)] }, /content 0 has 2 acting primaries \(dbids 2, 4\)/],
    ['a pair with different modes', { rows: [at(4, { mode: 'n' })], history: [hist(4)] }, /content 0: dbid 2 has mode s, dbid 4 has mode n/],
    ['a bad port', { rows: [at(4, { port: 0 })], history: [hist(4)] }, /dbid 4: port must be at least 1/],
    ['an unknown dbid', { rows: [row(99, 1, 'm', 'sdw3', 7000)], history: [hist(99)] }, /dbid 99 is not in the catalog/],
    ['a dbid moved to another content', { rows: [at(4, { content: 1, role: 'm' })], history: [hist(4)] }, /dbid 4 belongs to content 0, not 1/],
    ['a row change without a history row', { rows: [at(2, { mode: 'n' }), at(4, { mode: 'n' })], history: [hist(4)] }, /dbid 2 changes without a history row/],
    ['a history row with a bad time', { rows: [], history: [{ time: 'now', dbid: 2, description: 'x' }] }, /history dbid 2: time/],
    ['a pending promotion naming another content', { rows: [], history: [], setPending: [{ content: 0, mirrorDbid: 5, failedPrimaryDbid: 2, version: 2, startedAt: T1 }] }, /names dbid 5, not a row of that content/],
    ['more than 100 items', { rows: [at(4, { status: 'd', mode: 'n' }), at(2, { mode: 'n' })], history: Array.from({ length: 99 }, () => hist(4)) }, /exceeds the 100 of one transaction/],
  ])('rejects %s before writing anything', async (_name, change, message) => {
    const clusterId = await initialized('invalid');
    const error = await catalog.apply(clusterId, 1, change).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(message);
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.version).toBe(1);
    expect(snapshot.segments).toEqual([...segments()].sort((a, b) => a.dbid - b.dbid));
    expect(await catalog.history(clusterId)).toHaveLength(1);
  });

  it('records and clears a pending promotion with the failover flip', async () => {
    const clusterId = await initialized('failover');
    const flip = planFailover(await catalog.load(clusterId), 0, 2, 4, new Date(T1));
    expect(await catalog.apply(clusterId, 1, flip)).toBe(2);
    const after = await catalog.load(clusterId);
    expect(after.pendingPromotions).toEqual(flip.setPending);
    expect(after.segments.find((r) => r.dbid === 4)).toMatchObject({ role: 'p', status: 'u', mode: 'n' });
    expect(after.segments.find((r) => r.dbid === 2)).toMatchObject({ role: 'm', status: 'd', mode: 'n' });
    expect(await catalog.apply(clusterId, 2, { rows: [], history: [], clearPending: [0] })).toBe(3);
    const cleared = await catalog.load(clusterId);
    expect(cleared.pendingPromotions).toEqual([]);
    expect(cleared.segments).toEqual(after.segments);
  });

  it('records the fence owed to the old primary with the flip, and clears it', async () => {
    const clusterId = await initialized('fence');
    const flip = planFailover(await catalog.load(clusterId), 0, 2, 4, new Date(T1));
    await catalog.apply(clusterId, 1, flip);
    expect((await catalog.load(clusterId)).pendingFences).toEqual([{ dbid: 2, content: 0, newPrimaryDbid: 4, since: T1, reason: 'failed over to dbid 4' }]);
    await catalog.apply(clusterId, 2, { rows: [], history: [{ time: T1, dbid: 2, description: 'FTS: dbid 2 fenced' }], clearFences: [2] });
    expect((await catalog.load(clusterId)).pendingFences).toEqual([]);
  });

  it('rejects a fence naming a dbid not in the catalog or of another content, writing nothing', async () => {
    const clusterId = await initialized('bad-fence');
    await expect(catalog.apply(clusterId, 1, { rows: [], history: [], setFences: [{ dbid: 99, content: 0, since: T1, reason: 'x' }] })).rejects.toThrow(/dbid 99, which is not in the catalog/);
    await expect(catalog.apply(clusterId, 1, { rows: [], history: [], setFences: [{ dbid: 2, content: 1, since: T1, reason: 'x' }] })).rejects.toThrow(/the row is of content 0/);
    expect((await catalog.load(clusterId)).version).toBe(1);
  });
});

describe('pending operations (the lock per content)', () => {
  // The adapter validates at its own clock: times around the real now.
  const iso = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString();
  const op = (content: number, execution: string, over: Partial<PendingOperation> = {}): PendingOperation => ({
    content, kind: 'recovery', execution, since: iso(-60_000), expiresAt: iso(3_600_000), ...over,
  });

  it('records, replaces and releases an operation by content; loads it back', async () => {
    const clusterId = await initialized('operations');
    const a = op(0, 'recover-A');
    const b = op(1, 'rebalance-B', { kind: 'rebalance' });
    expect(await catalog.apply(clusterId, 1, { rows: [], history: [], setOperations: [b, a] })).toBe(2);
    expect((await catalog.load(clusterId)).pendingOperations).toEqual([a, b]);
    const renewed = { ...a, expiresAt: iso(7_200_000) };
    await catalog.apply(clusterId, 2, { rows: [], history: [], setOperations: [renewed] });
    await catalog.apply(clusterId, 3, { rows: [], history: [], clearOperations: [{ content: 1, execution: 'rebalance-B' }, { content: 9, execution: 'nobody' }] });
    const after = await catalog.load(clusterId);
    expect(after.pendingOperations).toEqual([renewed]);
    expect(after.version).toBe(4);
  });

  it('refuses, writing nothing: a content another execution holds, a promotion on a held content, a release by another execution, an unknown content', async () => {
    const clusterId = await initialized('operations-busy');
    const a = op(0, 'recover-A');
    await catalog.apply(clusterId, 1, { rows: [], history: [], setOperations: [a] });
    const refusals: [CatalogChange, RegExp, boolean][] = [
      [{ rows: [], history: [], setOperations: [op(0, 'rebalance-B', { kind: 'rebalance' })] }, /^change to cluster \S+ refused, a content is held by someone else: content 0 is held by recovery execution recover-A \(since .+, until .+\): rebalance execution rebalance-B cannot take it$/, true],
      [{ rows: [], history: [], setPending: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 3, startedAt: T1 }] }, /content 0 is held by recovery execution recover-A .+: no promotion may start on it$/, true],
      [{ rows: [], history: [], clearOperations: [{ content: 0, execution: 'recover-Z' }] }, /content 0 is held by recovery execution recover-A .+, not by execution recover-Z: a workflow releases only its own hold$/, true],
      [{ rows: [], history: [], setOperations: [op(7, 'recover-A')] }, /^invalid change to cluster \S+: pending operation names content 7, which is not in the catalog/, false],
    ];
    for (const [change, message, busy] of refusals) {
      const error = await catalog.apply(clusterId, 2, change).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(error instanceof ContentBusyError).toBe(busy);
      expect((error as Error).message).toMatch(message);
    }
    const after = await catalog.load(clusterId);
    expect(after.version).toBe(2);
    expect(after.pendingOperations).toEqual([a]);
    expect(after.pendingPromotions).toEqual([]);
  });

  it('refuses to take a content with a pending promotion', async () => {
    const clusterId = await initialized('operations-promotion');
    await catalog.apply(clusterId, 1, planFailover(await catalog.load(clusterId), 0, 2, 4, new Date(T1)));
    await expect(catalog.apply(clusterId, 2, { rows: [], history: [], setOperations: [op(0, 'recover-A')] })).rejects.toThrow(ContentBusyError);
    await expect(catalog.apply(clusterId, 2, { rows: [], history: [], setOperations: [op(0, 'recover-A')] })).rejects.toThrow(/content 0 has a pending promotion of dbid 4/);
    expect((await catalog.load(clusterId)).pendingOperations).toEqual([]);
  });

  it('lets another execution take a content whose operation lapsed', async () => {
    const clusterId = await initialized('operations-lapsed');
    const lapsing = op(0, 'recover-A', { since: iso(-120_000), expiresAt: iso(-1) });
    await catalog.apply(clusterId, 1, { rows: [], history: [], setOperations: [lapsing] });
    expect((await catalog.load(clusterId)).pendingOperations).toEqual([lapsing]);
    // A stranger's release of a lapsed operation is a no-op; taking the content replaces it.
    await catalog.apply(clusterId, 2, { rows: [], history: [], clearOperations: [{ content: 0, execution: 'rebalance-B' }] });
    expect((await catalog.load(clusterId)).pendingOperations).toEqual([lapsing]);
    const b = op(0, 'rebalance-B', { kind: 'rebalance' });
    await catalog.apply(clusterId, 3, { rows: [], history: [], setOperations: [b] });
    expect((await catalog.load(clusterId)).pendingOperations).toEqual([b]);
  });

  it('names a corrupt operation in the cluster item, and reads an item without operations as none', async () => {
    const clusterId = await initialized('operations-corrupt');
    const doc = DynamoDBDocumentClient.from(client);
    const { Item } = await doc.send(new GetCommand({ TableName: tables.clusters, Key: { clusterId } }));
    const { pendingOperations: _ops, ...legacy } = Item!;
    await doc.send(new PutCommand({ TableName: tables.clusters, Item: legacy }));
    expect((await catalog.load(clusterId)).pendingOperations).toEqual([]);
    await doc.send(new PutCommand({ TableName: tables.clusters, Item: { ...legacy, pendingOperations: { '0': { ...op(0, 'recover-A'), kind: 'vacuum' } } } }));
    await expect(catalog.load(clusterId)).rejects.toThrow(/holds invalid data: invalid pending operations: pending operation of content 0: kind must be one of recovery\|rebalance/);
  });
});

describe('lease-conditioned writes', () => {
  const TTL = 10_000;
  const NOW = 1_700_000_000_000;

  it('a prober writes while it holds a live lease, and nothing once the lease expired or was taken over', async () => {
    const clusterId = await initialized('lease-write');
    const a = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW))!;
    expect(await catalog.apply(clusterId, 1, mirrorDown(2, 4), { owner: a.owner, token: a.token, now: NOW + 1 })).toBe(2);
    // Paused past its lease: the write is refused although the version is right.
    await expect(catalog.apply(clusterId, 2, mirrorDown(3, 5), { owner: a.owner, token: a.token, now: a.expiresAt + 1 })).rejects.toBeInstanceOf(NotLeaseHolderError);
    const b = (await catalog.acquireLease(clusterId, 'prober-b', TTL, a.expiresAt + 1))!;
    await expect(catalog.apply(clusterId, 2, mirrorDown(3, 5), { owner: a.owner, token: a.token, now: NOW + 2 })).rejects.toThrow(/lease \(owner prober-a, token 1\) is no longer held; now held by prober-b/);
    expect((await catalog.load(clusterId)).version).toBe(2);
    expect(await catalog.apply(clusterId, 2, mirrorDown(3, 5), { owner: b.owner, token: b.token, now: a.expiresAt + 2 })).toBe(3);
  });

  it('a stale version is still a CatalogConflictError under a live lease', async () => {
    const clusterId = await initialized('lease-conflict');
    const a = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW))!;
    await catalog.apply(clusterId, 1, mirrorDown(2, 4));
    await expect(catalog.apply(clusterId, 1, mirrorDown(3, 5), { owner: a.owner, token: a.token, now: NOW + 1 })).rejects.toBeInstanceOf(CatalogConflictError);
  });
});

describe('prober lease', () => {
  const TTL = 10_000;
  const NOW = 1_700_000_000_000;

  it('is held by one owner at a time, renewed only by its holder, taken over after expiry with a larger token', async () => {
    const clusterId = await initialized('lease');
    const a = await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW);
    expect(a).toEqual({ clusterId, owner: 'prober-a', token: 1, expiresAt: NOW + TTL });
    expect(await catalog.acquireLease(clusterId, 'prober-b', TTL, NOW + 1000)).toBeNull();

    const renewed = await catalog.renewLease(a!, TTL, NOW + 5000);
    expect(renewed).toEqual({ ...a, expiresAt: NOW + 5000 + TTL });
    // Still live at the old expiry thanks to the renewal.
    expect(await catalog.acquireLease(clusterId, 'prober-b', TTL, NOW + TTL + 1)).toBeNull();
    await expect(catalog.renewLease({ ...a!, owner: 'prober-b' }, TTL, NOW + 6000)).rejects.toBeInstanceOf(LeaseLostError);

    const takeoverAt = renewed.expiresAt + 1;
    const b = await catalog.acquireLease(clusterId, 'prober-b', TTL, takeoverAt);
    expect(b).not.toBeNull();
    expect(b!.token).toBeGreaterThan(a!.token);
    await expect(catalog.renewLease(renewed, TTL, takeoverAt + 1)).rejects.toThrow(/lost: now held by prober-b/);
    expect(await catalog.renewLease(b!, TTL, takeoverAt + 1)).toMatchObject({ owner: 'prober-b', token: b!.token });
  });

  it('does not let a holder renew a lease that already expired', async () => {
    const clusterId = await initialized('expired');
    const a = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW))!;
    await expect(catalog.renewLease(a, TTL, a.expiresAt + 1)).rejects.toBeInstanceOf(LeaseLostError);
  });

  it('gives the same owner a new token when it acquires again', async () => {
    const clusterId = await initialized('reacquire');
    const first = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW))!;
    const second = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW + 1))!;
    expect(second.token).toBe(first.token + 1);
    await expect(catalog.renewLease(first, TTL, NOW + 2)).rejects.toBeInstanceOf(LeaseLostError);
  });

  it('is free for another owner once released, and the token keeps growing', async () => {
    const clusterId = await initialized('release');
    const a = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW))!;
    await catalog.releaseLease(a);
    await catalog.releaseLease(a); // already released: no error
    const b = await catalog.acquireLease(clusterId, 'prober-b', TTL, NOW + 1);
    expect(b).toMatchObject({ owner: 'prober-b', token: a.token + 1 });
    await catalog.releaseLease(a); // not the holder: no error, and b keeps it
    expect(await catalog.acquireLease(clusterId, 'prober-c', TTL, NOW + 2)).toBeNull();
  });

  it('stores the prober memory with a renewal, apart from the catalog version', async () => {
    const clusterId = await initialized('memory');
    const a = (await catalog.acquireLease(clusterId, 'prober-a', TTL, NOW))!;
    const memory: ProberMemory = {
      ...emptyMemory(),
      mirrorDownSince: { '0': T0 },
      mirrorDrops: { '0': { count: 2, since: T0 } },
      recoveryLsn: { '3': '0/3000060' },
    };
    await catalog.renewLease(a, TTL, NOW + 1, memory);
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.memory).toEqual(memory);
    expect(snapshot.version).toBe(1);
  });
});

describe('destroy', () => {
  it('removes the cluster, its rows and history, and lets the id be initialized afresh', async () => {
    const clusterId = await initialized('destroy');
    await catalog.apply(clusterId, 1, mirrorDown(2, 4));
    await catalog.destroy(clusterId);
    await expect(catalog.load(clusterId)).rejects.toBeInstanceOf(ClusterNotFoundError);
    await catalog.destroy(clusterId); // idempotent
    await catalog.initialize(clusterId, segments().filter((r) => r.content !== 1), settings, T1);
    const snapshot = await catalog.load(clusterId);
    expect(snapshot.version).toBe(1);
    expect(snapshot.segments.map((r) => r.dbid)).toEqual([1, 2, 4, 6]);
    expect(await catalog.history(clusterId)).toEqual([expect.objectContaining({ time: T1 })]);
  });
});
