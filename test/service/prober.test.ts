/**
 * The prober service against the real catalog (DynamoDB Local) with scripted probes and
 * a controlled clock: contents are decided independently (a probe that hangs on one
 * content never delays another's), and a prober paused past its lease neither writes
 * nor acts on what it decided.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { createCatalogTables, type CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeResult } from '../../lambdas/core/probe';
import { parseSettings } from '../../lambdas/core/settings';
import type { SegmentControl, SegmentHost, SegmentProbe } from '../../lambdas/ports/segments';
import { silentTelemetry, type Telemetry } from '../../lambdas/ports/telemetry';
import type { PromoteMirrorInput, Workflows } from '../../lambdas/ports/workflows';
import { leaseTtlMs, runProber, type ContentReport, type ProberDeps } from '../../lambdas/service/prober';
import { waitFor } from '../support/pg-pair';

const suffix = randomUUID().slice(0, 8);
const tables: CatalogTableNames = { segments: `pr-segments-${suffix}`, history: `pr-history-${suffix}`, clusters: `pr-clusters-${suffix}` };
const catalog = new DynamoDbCatalog({ client: new DynamoDBClient({}), tables });
const settings = parseSettings({ probeIntervalSeconds: 1, mirrorDownGracePeriodSeconds: 2, probeTimeoutSeconds: 1, probeRetries: 1, probeRetryDelaySeconds: 0.2 });
let seq = 0;

const row = (dbid: number, content: number, role: 'p' | 'm', host: string): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port: 6000 + dbid, hostname: host, address: host, datadir: `/data/${role}/gpseg${content}`,
});
/** Group mirroring on two hosts: sdw1 has primary 2 (content 0) and mirror 5 (content 1). */
const rows = (): SegmentRow[] => [row(2, 0, 'p', 'sdw1'), row(3, 1, 'p', 'sdw2'), row(4, 0, 'm', 'sdw2'), row(5, 1, 'm', 'sdw1')];

beforeAll(async () => {
  await createCatalogTables(new DynamoDBClient({}), tables);
});

const healthy = (dbid: number, over: Partial<ProbeResult> = {}): ProbeResult =>
  ({ ok: true, dbid, inRecovery: false, mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/3000000' }, syncRepOn: true, lsn: '0/3000000', attempts: 1, durationMs: 1, ...over }) as ProbeResult;

/** A clock that moves only when the prober sleeps (or the test says so). */
class Clock {
  now = Date.parse('2026-11-23T10:00:00.000Z');
  readonly read = (): number => this.now;
  /** Sleeps advance the clock and yield to real I/O. */
  readonly sleep = async (ms: number): Promise<void> => {
    this.now += ms;
    await new Promise((r) => setTimeout(r, 5));
  };
}

function deps(clock: Clock, probe: SegmentProbe['probe'], started: PromoteMirrorInput[], syncRepCalls: string[] = []): ProberDeps {
  const workflows: Workflows = {
    start: async (_kind, input) => {
      started.push(input as PromoteMirrorInput);
      return { executionName: 'x', started: true };
    },
  };
  const control = {
    setSyncRep: async (primary: SegmentRow, _mirror: SegmentRow | undefined, on: boolean) => void syncRepCalls.push(`${primary.dbid}:${on ? 'on' : 'off'}`),
  } as unknown as SegmentControl;
  return {
    catalog,
    probe: { probe, probeAll: async () => [] },
    control,
    host: {} as SegmentHost,
    workflows,
    telemetry: silentTelemetry,
    clock: clock.read,
    sleep: clock.sleep,
  };
}

test("a probe that hangs on one content (frozen host) never delays another content's mirror-down handling", async () => {
  const clusterId = `indep-${suffix}-${++seq}`;
  await catalog.initialize(clusterId, rows(), settings, new Date().toISOString());
  const clock = new Clock();
  let release!: (r: ProbeResult) => void;
  const hanging = new Promise<ProbeResult>((resolve) => (release = resolve));
  const syncRep: string[] = [];
  const reports: ContentReport[] = [];
  const run = runProber(
    deps(clock, async (segment) => (segment.dbid === 2 ? hanging : healthy(segment.dbid, { mirror: { state: 'absent', syncState: 'none' } })), [], syncRep),
    { clusterId, owner: 'a', deadline: clock.now + 30_000, onDecided: (r) => reports.push(r) },
  );
  // Content 1's mirror (on the frozen host) is marked down and sync rep turned off while content 0's probe still hangs.
  await waitFor('mirror 5 marked down', async () => ((await catalog.load(clusterId)).segments.find((r) => r.dbid === 5)?.status === 'd' ? true : undefined), 30_000, 20);
  await waitFor('sync rep off on primary 3', async () => (syncRep.includes('3:off') ? true : undefined), 10_000, 10);
  expect(reports.every((r) => r.content === 1)).toBe(true);
  release({ ok: false, dbid: 2, kind: 'timeout', message: 'timeout', attempts: 2, durationMs: 2200 });
  await run;
  expect((await catalog.load(clusterId)).segments.find((r) => r.dbid === 2)).toMatchObject({ role: 'p', status: 'u' });
});

test('a prober paused past its lease writes nothing and starts nothing when it resumes', async () => {
  const clusterId = `frozen-${suffix}-${++seq}`;
  await catalog.initialize(clusterId, rows(), settings, new Date().toISOString());
  const clock = new Clock();
  let thaw!: () => void;
  const frozen = new Promise<void>((resolve) => (thaw = resolve));
  let release!: (r: ProbeResult) => void;
  const hanging = new Promise<ProbeResult>((resolve) => (release = resolve));
  const startedByA: PromoteMirrorInput[] = [];
  const a = deps(clock, async (segment) => (segment.dbid === 2 ? hanging : healthy(segment.dbid)), startedByA);
  let ticks = 0;
  // A freezes in its first sleep (SIGSTOP), with content 0's probe in flight.
  a.sleep = async () => {
    ticks += 1;
    await frozen;
  };
  const runA = runProber(a, { clusterId, owner: 'a', deadline: clock.now + 600_000 });
  await waitFor('A in its first sleep', async () => (ticks > 0 ? true : undefined), 10_000, 10);
  const versionBefore = (await catalog.load(clusterId)).version;

  // Past A's lease, B takes over.
  clock.now += leaseTtlMs(settings) + 1000;
  const startedByB: PromoteMirrorInput[] = [];
  const b = deps(clock, async (segment) => healthy(segment.dbid), startedByB);
  const ranB = await runProber(b, { clusterId, owner: 'b', deadline: clock.now + 1500 });
  expect(ranB).toBeGreaterThan(0);

  // A thaws: its hung probe says the primary failed; A must neither write nor start a failover.
  release({ ok: false, dbid: 2, kind: 'refused', message: 'refused', attempts: 2, durationMs: 1 });
  thaw();
  await runA;
  expect(startedByA).toEqual([]);
  expect(startedByB).toEqual([]);
  const after = await catalog.load(clusterId);
  expect(after.segments.find((r) => r.dbid === 2)).toMatchObject({ role: 'p', status: 'u', mode: 's' });
  expect(after.version).toBe(versionBefore);
});

test('a content under recovery is left alone: its failed primary is not decided, its owed fence waits, the other content goes on', async () => {
  const clusterId = `held-${suffix}-${++seq}`;
  await catalog.initialize(clusterId, rows(), settings, new Date().toISOString());
  const clock = new Clock();
  // Content 0's mirror is down with a fence owed, and a RecoverSegments execution holds content 0.
  const [primary, mirror] = [rows()[0], rows()[2]];
  const time = new Date().toISOString();
  await catalog.apply(clusterId, 1, {
    rows: [{ ...primary, mode: 'n' }, { ...mirror, status: 'd', mode: 'n' }],
    history: [2, 4].map((dbid) => ({ time, dbid, description: `FTS: dbid ${dbid} marked for the test` })),
    status: 'degraded',
    setFences: [{ dbid: 4, content: 0, newPrimaryDbid: 2, since: time, reason: 'test' }],
    setOperations: [{ content: 0, kind: 'recovery', execution: 'recover-1', since: time, expiresAt: new Date(Math.max(Date.now(), clock.now) + 3_600_000).toISOString() }],
  });
  const before = await catalog.load(clusterId);
  const started: PromoteMirrorInput[] = [];
  const syncRep: string[] = [];
  const fenced: number[] = [];
  const reports: ContentReport[] = [];
  // Primary 2 and its down mirror 4 refuse connections; content 1 is healthy.
  const d = deps(clock, async (segment) => (segment.content === 0 ? { ok: false, dbid: segment.dbid, kind: 'refused', message: 'refused', attempts: 2, durationMs: 1 } : healthy(segment.dbid)), started, syncRep);
  d.host = { fence: async (segment: SegmentRow) => (fenced.push(segment.dbid), { wasRunning: false, killed: false, missing: false }) } as unknown as SegmentHost;
  await runProber(d, { clusterId, owner: 'a', deadline: clock.now + 5000, onDecided: (r) => reports.push(r) });

  const content0 = reports.filter((r) => r.content === 0);
  expect(content0.length).toBeGreaterThan(1);
  expect(content0.every((r) => r.probes.length > 0 && r.decisions.length === 0)).toBe(true);
  expect(reports.some((r) => r.content === 1)).toBe(true);
  expect(started).toEqual([]);
  expect(fenced).toEqual([]);
  expect(syncRep.filter((c) => c.startsWith('2:'))).toEqual([]);
  const after = await catalog.load(clusterId);
  expect(after.version).toBe(before.version);
  expect(after.segments).toEqual(before.segments);
  expect(after.pendingFences).toEqual(before.pendingFences);
  expect(after.pendingOperations).toEqual(before.pendingOperations);
  expect(after.memory.mirrorDownSince['0']).toBeUndefined();
});

describe('the coordinator and its standby', () => {
  /** Coordinator dbid 1 and standby dbid 6 (content -1), plus the two segment pairs. */
  const withCoordinator = (): SegmentRow[] => [row(1, -1, 'p', 'cdw'), row(6, -1, 'm', 'scdw'), ...rows()];
  const metrics = () => {
    const seen: { name: string; value: number }[] = [];
    const telemetry: Telemetry = { ...silentTelemetry, metric: (name, value) => void seen.push({ name, value }) };
    return { seen, telemetry, count: (name: string) => seen.filter((m) => m.name === name).length };
  };

  test("a black-holed standby delays nothing: the coordinator's walsender decides (standby marked down, sync rep off, StandbyDown); its probe's outcome is kept for state -f", async () => {
    const clusterId = `standby-${suffix}-${++seq}`;
    await catalog.initialize(clusterId, withCoordinator(), settings, new Date().toISOString());
    const clock = new Clock();
    let release!: (r: ProbeResult) => void;
    const hanging = new Promise<ProbeResult>((resolve) => (release = resolve));
    // The standby's status as the catalog had it at each probe of it: the first one hangs,
    // later ones (once it is marked down: the cycle's zombie check) fail after their one attempt.
    const standbyProbes: string[] = [];
    const syncRep: string[] = [];
    const { seen, telemetry, count } = metrics();
    const d = deps(
      clock,
      async (segment) => {
        if (segment.dbid === 6) {
          standbyProbes.push(segment.status);
          return standbyProbes.length === 1 ? hanging : { ok: false, dbid: 6, kind: 'timeout', message: 'dbid 6 (scdw:6006): timeout expired', attempts: 1, durationMs: 1000 };
        }
        return healthy(segment.dbid, segment.dbid === 1 ? { mirror: { state: 'absent', syncState: 'none' } } : {});
      },
      [],
      syncRep,
    );
    d.telemetry = telemetry;
    const reports: ContentReport[] = [];
    const run = runProber(d, { clusterId, owner: 'a', deadline: clock.now + 30_000, onDecided: (r) => reports.push(r) });
    await waitFor('standby marked down', async () => ((await catalog.load(clusterId)).segments.find((r) => r.dbid === 6)?.status === 'd' ? true : undefined), 30_000, 20);
    await waitFor('sync rep off on the coordinator', async () => (syncRep.includes('1:off') ? true : undefined), 10_000, 10);
    await waitFor('StandbyDown', async () => (count('StandbyDown') > 0 ? true : undefined), 10_000, 10);
    // Content -1 was decided round after round while the standby's first probe hung; no second one was started beside it.
    expect(reports.filter((r) => r.content === -1).length).toBeGreaterThan(2);
    expect(standbyProbes.filter((status) => status === 'u')).toEqual(['u']);
    expect(seen.filter((m) => m.name === 'StandbyLagBytes')).toEqual([]); // nothing streams: no lag to report
    release({ ok: false, dbid: 6, kind: 'timeout', message: 'dbid 6 (scdw:6006): timeout expired', attempts: 1, durationMs: 1000 });
    await run;
    const stored = (await catalog.load(clusterId)).memory.replication?.['-1'];
    expect(stored).toMatchObject({
      primaryDbid: 1,
      mirrorDbid: 6,
      sender: { state: 'absent', syncState: 'none', synchronous: true },
      receiver: { state: 'unreachable', error: 'timeout: dbid 6 (scdw:6006): timeout expired' },
    });
    expect(standbyProbes.length).toBeGreaterThan(1);
    expect(standbyProbes.slice(1).every((status) => status === 'd')).toBe(true);
  });

  test('the standby lag gauge and StandbyLagging; the receiver view is stored with the memory', async () => {
    const clusterId = `lag-${suffix}-${++seq}`;
    await catalog.initialize(clusterId, withCoordinator(), parseSettings({ ...settings, standbyLagAlarmBytes: 1024 }), new Date().toISOString());
    const clock = new Clock();
    const { seen, telemetry, count } = metrics();
    const d = deps(clock, async (segment) =>
      segment.dbid === 6
        ? healthy(6, { inRecovery: true, mirror: { state: 'absent', syncState: 'none' }, receiver: { state: 'streaming', receivedLsn: '0/2FFF000', replayLsn: '0/2FFF000', heardSecondsAgo: 0.5 } })
        : healthy(segment.dbid, segment.dbid === 1 ? { mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/2FFF000' } } : {}),
      [],
    );
    d.telemetry = telemetry;
    await runProber(d, { clusterId, owner: 'a', deadline: clock.now + 3000 });
    expect(seen.filter((m) => m.name === 'StandbyLagBytes').map((m) => m.value)).toContain(4096);
    expect(count('StandbyLagging')).toBeGreaterThan(0);
    expect((await catalog.load(clusterId)).memory.replication?.['-1']).toMatchObject({
      sender: { state: 'streaming', syncState: 'sync', flushLsn: '0/2FFF000', primaryLsn: '0/3000000', lagBytes: 4096 },
      receiver: { state: 'streaming', receivedLsn: '0/2FFF000', heardSecondsAgo: 0.5 },
    });
  });

  test('autoActivateStandby: a failed coordinator starts ActivateStandby once per failoverRetrySeconds; off, only the alarm', async () => {
    for (const autoActivateStandby of [true, false]) {
      const clusterId = `auto-${suffix}-${++seq}`;
      await catalog.initialize(clusterId, withCoordinator(), parseSettings({ ...settings, autoActivateStandby, failoverRetrySeconds: 60 }), new Date().toISOString());
      const clock = new Clock();
      const { telemetry, count } = metrics();
      const started: { kind: string; input: unknown }[] = [];
      const d = deps(clock, async (segment) => (segment.content === -1 ? { ok: false, dbid: segment.dbid, kind: 'refused', message: 'refused', attempts: 2, durationMs: 1 } : healthy(segment.dbid)), []);
      d.workflows = { start: async (kind, input) => (started.push({ kind, input }), { executionName: 'activate-x', started: true }) };
      d.telemetry = telemetry;
      await runProber(d, { clusterId, owner: 'a', deadline: clock.now + 5000 });
      expect(count('CoordinatorUnreachable')).toBeGreaterThan(2);
      if (autoActivateStandby) {
        expect(started).toEqual([{ kind: 'ActivateStandby', input: { clusterId, catalogVersion: 1, standbyDbid: 6, automatic: true, attempt: 1, reason: expect.stringMatching(/^coordinator dbid 1 failed/) } }]);
        expect(count('StandbyActivationsStarted')).toBe(1);
      } else {
        expect(started).toEqual([]);
      }
    }
  });
});
