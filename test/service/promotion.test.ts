/**
 * The PromoteMirror steps against the real catalog (DynamoDB Local), with scripted
 * probe, control and host ports: input checked against the catalog whoever sent it,
 * each failure kind confirmed its own way, the fence of the old primary, and the abort
 * record. The same steps run end to end on real PostgreSQL in test/e2e.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { createCatalogTables, type CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import { planFailover } from '../../lambdas/core/decide';
import { MirrorNotPromotableError, PrimaryAliveError, ValidationError, WrongInstanceError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeResult } from '../../lambdas/core/probe';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import type { FenceReport, SegmentControl, SegmentHost, SegmentProbe, WalReceiverStatus } from '../../lambdas/ports/segments';
import type { MetricName } from '../../lambdas/ports/telemetry';
import { runPromoteStep, type PromoteStep, type PromotionDeps } from '../../lambdas/service/promotion';

const suffix = randomUUID().slice(0, 8);
const tables: CatalogTableNames = { segments: `p-segments-${suffix}`, history: `p-history-${suffix}`, clusters: `p-clusters-${suffix}` };
const catalog = new DynamoDbCatalog({ client: new DynamoDBClient({}), tables });
const NOW = new Date('2026-11-23T10:00:00.000Z');
let seq = 0;

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: host, datadir: `/data/${role}/gpseg${content}`,
});
/** Content 0: primary 2, mirror 4; content 1: primary 3, mirror 5; coordinator 1. */
const rows = (): SegmentRow[] => [row(1, -1, 'p', 'cdw', 5432), row(2, 0, 'p', 'sdw1', 6000), row(3, 1, 'p', 'sdw2', 6000), row(4, 0, 'm', 'sdw2', 7000), row(5, 1, 'm', 'sdw1', 7000)];

beforeAll(async () => {
  await createCatalogTables(new DynamoDBClient({}), tables);
});

/** A cluster of its own, scripted ports, and what the steps did to them. */
async function setup(script: { probe?: ProbeResult; receiver?: Partial<WalReceiverStatus>; fence?: () => FenceReport } = {}) {
  const clusterId = `promo-${suffix}-${++seq}`;
  await catalog.initialize(clusterId, rows(), DEFAULT_SETTINGS, NOW.toISOString());
  const metrics: MetricName[] = [];
  const fenced: [number, number | undefined][] = [];
  const promoted: number[] = [];
  const probe: SegmentProbe = {
    probe: async (segment) => script.probe ?? { ok: false, dbid: segment.dbid, kind: 'refused', message: 'refused', attempts: 1, durationMs: 1 },
    probeAll: async () => [],
  };
  const control = {
    walReceiver: async () => ({ inRecovery: true, state: 'waiting', ...script.receiver }),
    promote: async (segment: SegmentRow) => void promoted.push(segment.dbid),
  } as unknown as SegmentControl;
  const host = {
    fence: async (segment: SegmentRow, newPrimary?: SegmentRow) => {
      fenced.push([segment.dbid, newPrimary?.dbid]);
      return script.fence ? script.fence() : { wasRunning: false, killed: false, missing: false };
    },
  } as unknown as SegmentHost;
  const deps: PromotionDeps = {
    catalog,
    probe,
    control,
    host,
    telemetry: { info() {}, warn() {}, error() {}, metric: (name) => void metrics.push(name), flush() {} },
    now: () => NOW,
  };
  const input = { clusterId, content: 0, failedPrimaryDbid: 2, mirrorDbid: 4, catalogVersion: 1, reason: 'test' };
  const step = (name: PromoteStep, doc: unknown = input) => runPromoteStep(deps, name, doc);
  const flip = async () => {
    const snapshot = await catalog.load(clusterId);
    await catalog.apply(clusterId, snapshot.version, planFailover(snapshot, 0, 2, 4, NOW));
  };
  return { clusterId, input, step, flip, metrics, fenced, promoted };
}

describe('input is checked against the catalog, whoever sent it', () => {
  test.each<[string, Record<string, unknown>, RegExp]>([
    ['dbids swapped on a healthy cluster', { failedPrimaryDbid: 4, mirrorDbid: 2 }, /failedPrimaryDbid 4 is not the acting primary of content 0 \(the catalog names dbid 2\) and no promotion of dbid 2 is pending/],
    ['a dbid of another content', { mirrorDbid: 5 }, /dbid 5 is not an instance of content 0/],
    ['an unknown dbid', { failedPrimaryDbid: 42 }, /dbid 42 is not an instance of content 0/],
    ['a catalog version from the future', { catalogVersion: 9 }, /catalogVersion 9 is newer than the catalog/],
    ['an unknown key', { force: true }, /Unrecognized key/],
    ['a negative content', { content: -1 }, /content/],
  ])('%s: ValidationError, nothing changed', async (_name, over, message) => {
    const { clusterId, input, step } = await setup();
    const before = await catalog.load(clusterId);
    await expect(step('validate', { ...input, ...over })).rejects.toThrow(ValidationError);
    await expect(step('validate', { ...input, ...over })).rejects.toThrow(message);
    expect(await catalog.load(clusterId)).toEqual(before);
  });

  test('a finished failover run again is refused (the promoted mirror is no longer "the mirror")', async () => {
    const { clusterId, step, flip } = await setup();
    await flip();
    const v = (await catalog.load(clusterId)).version;
    await catalog.apply(clusterId, v, { rows: [], history: [], clearPending: [0] });
    await expect(step('validate')).rejects.toThrow(/failedPrimaryDbid 2 is not the acting primary of content 0 \(the catalog names dbid 4\)/);
    await expect(step('promote')).rejects.toThrow(MirrorNotPromotableError);
  });

  test('a recorded promotion resumes: valid, and confirm says already flipped', async () => {
    const { input, step, flip } = await setup();
    await flip();
    await expect(step('validate')).resolves.toEqual({ valid: true });
    await expect(step('confirm-failure', input)).resolves.toMatchObject({ alreadyFlipped: true });
  });
});

describe('confirm-failure', () => {
  const alive: ProbeResult = { ok: true, dbid: 2, inRecovery: false, mirror: { state: 'streaming', syncState: 'sync' }, syncRepOn: true, attempts: 1, durationMs: 1 };

  test('unreachable: a primary that answers again aborts', async () => {
    const { step } = await setup({ probe: alive });
    await expect(step('confirm-failure')).rejects.toThrow(PrimaryAliveError);
  });

  test("unreachable: the mirror heard from the primary recently, by the mirror's own clock: abort", async () => {
    // lastMessageAt far in the past by the caller's clock: only heardSecondsAgo may count.
    const { step } = await setup({ receiver: { state: 'streaming', heardSecondsAgo: 1, lastMessageAt: 0 } });
    await expect(step('confirm-failure')).rejects.toThrow(/still streams from primary dbid 2 \(last message 1.0 s ago\)/);
  });

  test('unreachable: the mirror has not heard from it for long: confirmed', async () => {
    const { step } = await setup({ receiver: { state: 'streaming', heardSecondsAgo: 30 } });
    await expect(step('confirm-failure')).resolves.toMatchObject({ alreadyFlipped: false, probe: 'refused' });
  });

  test('the address answers as another instance: WrongInstanceError, never a failover', async () => {
    const { step } = await setup({ probe: { ok: false, dbid: 2, kind: 'wrong-instance', message: 'fts.dbid is 3', attempts: 1, durationMs: 1 } });
    await expect(step('confirm-failure')).rejects.toThrow(WrongInstanceError);
  });

  test('out of connection slots is alive', async () => {
    const { step } = await setup({ probe: { ok: false, dbid: 2, kind: 'too-many-connections', message: 'too many clients', attempts: 1, durationMs: 1 } });
    await expect(step('confirm-failure')).rejects.toThrow(PrimaryAliveError);
  });

  test('disk: a primary that still fails to write with an I/O error is failed even though its mirror streams from it', async () => {
    const { input, step } = await setup({ probe: { ok: false, dbid: 2, kind: 'disk', diskError: 'io', message: 'could not write', attempts: 1, durationMs: 1 }, receiver: { state: 'streaming', heardSecondsAgo: 0.5 } });
    await expect(step('confirm-failure', { ...input, failure: 'disk' })).resolves.toMatchObject({ probe: 'disk' });
  });

  test('disk: a write that only timed out gets the second opinion: a mirror that still hears the primary aborts', async () => {
    const { input, step } = await setup({ probe: { ok: false, dbid: 2, kind: 'disk', diskError: 'timeout', message: 'did not finish', attempts: 1, durationMs: 1 }, receiver: { state: 'streaming', heardSecondsAgo: 0.5 } });
    await expect(step('confirm-failure', { ...input, failure: 'disk' })).rejects.toThrow(PrimaryAliveError);
  });

  test('disk: a primary that writes again aborts', async () => {
    const { input, step } = await setup({ probe: alive });
    await expect(step('confirm-failure', { ...input, failure: 'disk' })).rejects.toThrow(/answers again and writes/);
  });

  test('reset-loop: a primary that reset recently is failed; one quiet for the whole window aborts', async () => {
    const recent = await setup({ probe: { ...alive, initializedAt: new Date(NOW.getTime() - 5000).toISOString() }, receiver: { state: 'streaming', heardSecondsAgo: 0.5 } });
    await expect(recent.step('confirm-failure', { ...recent.input, failure: 'reset-loop' })).resolves.toMatchObject({ alreadyFlipped: false });
    const quiet = await setup({ probe: { ...alive, initializedAt: new Date(NOW.getTime() - 3_600_000).toISOString() } });
    await expect(quiet.step('confirm-failure', { ...quiet.input, failure: 'reset-loop' })).rejects.toThrow(/has not reset for 3600 s/);
  });

  test('a mirror out of recovery is not promotable', async () => {
    const { step } = await setup({ receiver: { inRecovery: false } });
    await expect(step('confirm-failure')).rejects.toThrow(MirrorNotPromotableError);
  });
});

describe('fence of the old primary', () => {
  test('before the flip: the fence is recorded as owed, done towards the new primary, cleared; the flip then owes none', async () => {
    const { clusterId, input, step, fenced } = await setup();
    const result = await step('fence-old-primary');
    expect(result).toMatchObject({ fenced: true });
    expect(fenced).toEqual([[2, 4]]);
    expect((await catalog.load(clusterId)).pendingFences).toEqual([]);
    expect((await catalog.history(clusterId)).at(-1)?.description).toMatch(/^FTS: dbid 2 with contentid 0 fenced .*failing over to dbid 4/);
    await step('flip-catalog', { ...input, fenceOldPrimary: result });
    const flippedSnapshot = await catalog.load(clusterId);
    expect(flippedSnapshot.segments.find((r) => r.dbid === 4)?.role).toBe('p');
    expect(flippedSnapshot.pendingFences).toEqual([]);
    await expect(step('fence-old-primary')).resolves.toEqual({ fenced: false, owed: false }); // a re-run after the flip: nothing owed
  });

  test('a host that does not answer leaves the fence owed (alarm); the flip keeps it owed and the promotion goes on', async () => {
    const { clusterId, input, step, metrics } = await setup({
      fence: () => {
        throw new Error('SendCommand failed: instance not connected');
      },
    });
    const result = await step('fence-old-primary');
    expect(result).toMatchObject({ fenced: false, owed: true, cause: expect.stringMatching(/not connected/) });
    expect(metrics).toContain('FencePending');
    await step('flip-catalog', { ...input, fenceOldPrimary: result });
    expect((await catalog.load(clusterId)).pendingFences.map((f) => f.dbid)).toEqual([2]);
  });

  test('a failed promotion that never flipped drops the fence it owed the still acting primary', async () => {
    const { clusterId, input, step } = await setup({
      fence: () => {
        throw new Error('unreachable');
      },
    });
    await step('fence-old-primary');
    expect((await catalog.load(clusterId)).pendingFences.map((f) => f.dbid)).toEqual([2]);
    await step('record-failure', { ...input, error: { Error: 'CatalogConflictError', Cause: 'x' } });
    expect((await catalog.load(clusterId)).pendingFences).toEqual([]);
  });

  test('promote refuses before the flip', async () => {
    const { step, promoted } = await setup();
    await expect(step('promote')).rejects.toThrow(/does not record the promotion of dbid 4/);
    expect(promoted).toEqual([]);
  });
});

test('an aborted attempt writes a history row (a new catalog version, so the next attempt is a new episode) and a metric', async () => {
  const { clusterId, input, step, metrics } = await setup();
  const cause = JSON.stringify({ errorType: 'PrimaryAliveError', errorMessage: 'primary dbid 2 answers again' });
  await expect(step('record-abort', { ...input, error: { Error: 'PrimaryAliveError', Cause: cause } })).resolves.toMatchObject({ aborted: true });
  const snapshot = await catalog.load(clusterId);
  expect(snapshot.version).toBe(2);
  expect((await catalog.history(clusterId)).at(-1)).toMatchObject({ dbid: 2, description: 'FTS: failover of content 0 from dbid 2 to dbid 4 aborted: PrimaryAliveError: primary dbid 2 answers again' });
  expect(metrics).toEqual(expect.arrayContaining(['PromotionAborted', 'UnreachablePrimary']));
});
