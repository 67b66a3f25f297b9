import { decide, planFailover, historyText, clusterStatusOf, PROMOTION_STALE_SECONDS } from '../../lambdas/core/decide';
import { DEFAULT_SETTINGS, parseSettings } from '../../lambdas/core/settings';
import { applyRows, checkInvariants } from '../../lambdas/core/transitions';
import type { ClusterSnapshot } from '../../lambdas/core/model';
import { MirrorNotPromotableError } from '../../lambdas/core/errors';
import { answer, cluster, failure, round } from './fixtures';

const now = new Date('2026-11-22T10:00:00.000Z');
const later = (s: number) => new Date(now.getTime() + s * 1000);
const settings = DEFAULT_SETTINGS;
const absent = { state: 'absent', syncState: 'none' } as const;
const catchup = { state: 'catchup', syncState: 'async' } as const;

/** Every decision table row: snapshot x probes -> decision kinds, reason and changed rows. */
const table: {
  name: string;
  snapshot: ClusterSnapshot;
  probes: (s: ClusterSnapshot) => ReturnType<typeof round>;
  at?: Date;
  kinds: string[];
  reason?: RegExp;
  rows?: string[]; // "dbid:role/status/mode" of every changed row
  status?: string;
}[] = [
  { name: 'all answer, mirrors in sync: nothing to write', snapshot: cluster(), probes: (s) => round(s), kinds: [], rows: [] },
  {
    name: 'mirror streaming and in sync after being not in sync: both rows s, mirror u',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }),
    probes: (s) => round(s),
    kinds: ['mark-in-sync'],
    reason: /mirror dbid 4 of content 0 is streaming and in sync/,
    rows: ['2:p/u/s', '4:m/u/s'],
    status: 'up',
  },
  {
    name: 'mirror connected and catching up: mirror u, mode n',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { mirror: catchup })),
    kinds: ['mark-catching-up'],
    reason: /catching up/,
    rows: ['2:p/u/n', '4:m/u/n'],
    status: 'degraded',
  },
  {
    name: 'catching-up mirror already marked: no write',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(2, { mirror: catchup })),
    kinds: [],
    rows: [],
  },
  {
    name: 'mirror caught up while sync rep is off: turn sync rep on, catalog unchanged',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(2, { syncRepOn: false, mirror: { state: 'streaming', syncState: 'async' } })),
    kinds: ['sync-rep-on'],
    reason: /caught up: turning synchronous replication back on/,
    rows: [],
  },
  {
    name: 'mirror lagging while sync rep is off: sync rep stays off (gpdb #13891)',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(2, { syncRepOn: false, mirror: catchup })),
    kinds: [],
  },
  {
    name: 'mirror down inside the grace period: no change, re-probe',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { mirror: absent })),
    kinds: ['await-mirror'],
    reason: /inside the 10 s grace period/,
    rows: [],
  },
  {
    name: 'mirror down past the grace period: mirror d, both n, sync rep off next',
    snapshot: { ...cluster(), memory: { ...cluster().memory, mirrorDownSince: { '0': now.toISOString() } } },
    probes: (s) => round(s, answer(2, { mirror: absent })),
    at: later(11),
    kinds: ['mark-mirror-down'],
    reason: /past the 10 s grace period: marked down/,
    rows: ['2:p/u/n', '4:m/d/n'],
    status: 'degraded',
  },
  {
    name: 'mirror crash-looping inside the grace period: marked down anyway (gpdb #10327)',
    snapshot: { ...cluster(), memory: { ...cluster().memory, mirrorDrops: { '0': { count: 3, since: now.toISOString() } } } },
    probes: (s) => round(s, answer(2, { mirror: absent })),
    at: later(4),
    kinds: ['mark-mirror-down'],
    reason: /stopped streaming 4 times/,
    rows: ['2:p/u/n', '4:m/d/n'],
  },
  {
    name: 'mirror marked down, primary still has sync rep on: retry sync rep off',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }),
    probes: (s) => round(s, answer(2, { mirror: absent, syncRepOn: true })),
    kinds: ['sync-rep-off'],
    reason: /still waits for it/,
    rows: [],
  },
  {
    name: 'mirror marked down, sync rep already off: nothing',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }),
    probes: (s) => round(s, answer(2, { mirror: absent, syncRepOn: false })),
    kinds: [],
  },
  {
    name: 'acting primary reports itself as a mirror: promote again',
    snapshot: cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
    probes: (s) => round(s, answer(4, { inRecovery: true })),
    kinds: ['promote-again'],
    reason: /did not land, promoting again/,
  },
  {
    name: 'acting primary in recovery while its promotion is pending: leave it to the workflow',
    snapshot: {
      ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
      pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: now.toISOString() }],
    },
    probes: (s) => round(s, answer(4, { inRecovery: true })),
    at: later(5),
    kinds: ['promotion-pending'],
  },
  {
    name: 'pending promotion gone stale: promote again',
    snapshot: {
      ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
      pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: now.toISOString() }],
    },
    probes: (s) => round(s, answer(4, { inRecovery: true })),
    at: later(PROMOTION_STALE_SECONDS + 1),
    kinds: ['promote-again'],
  },
  {
    name: 'primary in crash recovery, replay advancing: not a failure (gpdb #11770)',
    snapshot: { ...cluster(), memory: { ...cluster().memory, recoveryLsn: { '2': '0/2000000' } } },
    probes: (s) => round(s, failure(2, 'in-recovery', { recoveryLsn: '0/2500000' })),
    kinds: ['recovery-in-progress'],
    reason: /replaying \(at 0\/2500000, was 0\/2000000\): not a failure/,
    rows: [],
  },
  {
    name: 'primary in crash recovery, replay stuck: a failure, mirror promoted',
    snapshot: { ...cluster(), memory: { ...cluster().memory, recoveryLsn: { '2': '0/2500000' } } },
    probes: (s) => round(s, failure(2, 'in-recovery', { recoveryLsn: '0/2500000' })),
    kinds: ['fail-over'],
  },
  {
    name: 'primary fails, mirror in sync: fail over (workflow writes the flip)',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'refused')),
    kinds: ['fail-over'],
    reason: /primary dbid 2 of content 0 failed \(refused after 4 attempt\(s\)[^)]*\); its mirror dbid 4 is in sync: promoting it/,
    rows: [],
  },
  {
    name: 'primary fails the directory check: fail over',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'check-failed')),
    kinds: ['fail-over'],
  },
  {
    name: 'failover already started for this primary: no second start',
    snapshot: { ...cluster(), memory: { ...cluster().memory, failoversStarted: { '0': { failedPrimaryDbid: 2, version: 7, at: now.toISOString() } } } },
    probes: (s) => round(s, failure(2, 'refused')),
    at: later(3),
    kinds: ['promotion-pending'],
  },
  {
    name: 'primary fails, mirror not in sync: double fault, never promote',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(3), failure(2, 'timeout')),
    kinds: ['double-fault'],
    reason: /double fault: primary dbid 2 of content 0 failed .* mirror dbid 4 is not in sync \(u\/n\); not promoting, content 0 is unavailable/,
    rows: ['2:p/d/n'],
    status: 'unavailable',
  },
  {
    name: 'primary fails, mirror down: double fault',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }),
    probes: (s) => round(s, failure(2, 'refused')),
    kinds: ['double-fault'],
    rows: ['2:p/d/n'],
    status: 'unavailable',
  },
  {
    name: 'unavailable primary fails again: history written once only',
    snapshot: { ...cluster({ 2: { mode: 'n', status: 'd' }, 4: { mode: 'n', status: 'd' } }), status: 'unavailable' },
    probes: (s) => round(s, failure(2, 'refused')),
    kinds: [],
    rows: [],
  },
  {
    name: 'unavailable primary answers again',
    snapshot: { ...cluster({ 2: { mode: 'n', status: 'd' }, 4: { mode: 'n', status: 'd' } }), status: 'unavailable' },
    probes: (s) => round(s, answer(2, { mirror: absent, syncRepOn: false })),
    kinds: ['primary-back'],
    rows: ['2:p/u/n'],
    status: 'degraded',
  },
  {
    name: 'mirrorless primary fails: content unavailable',
    snapshot: { ...cluster({ 2: { mode: 'n' } }), segments: cluster({ 2: { mode: 'n' } }).segments.filter((r) => r.dbid !== 4) },
    probes: (s) => round(s, failure(2, 'refused')),
    kinds: ['content-unavailable'],
    reason: /has no mirror; content 0 is unavailable/,
    rows: ['2:p/d/n'],
    status: 'unavailable',
  },
  {
    name: 'probe refused for credentials: alarm, never fail over',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'authentication')),
    kinds: ['probe-misconfigured'],
    rows: [],
  },
  {
    name: 'coordinator unreachable: alarm only, standby never activated automatically',
    snapshot: cluster(),
    probes: (s) => round(s, failure(1, 'timeout')),
    kinds: ['coordinator-unreachable'],
    reason: /never automatic/,
    rows: [],
  },
  {
    name: 'standby down past the grace period: marked down like a mirror (gpdb #11013)',
    snapshot: { ...cluster(), memory: { ...cluster().memory, mirrorDownSince: { '-1': now.toISOString() } } },
    probes: (s) => round(s, answer(1, { mirror: absent })),
    at: later(30),
    kinds: ['mark-mirror-down'],
    rows: ['1:p/u/n', '6:m/d/n'],
  },
  {
    name: 'two contents at once: one mirror down, one primary failed',
    snapshot: { ...cluster(), memory: { ...cluster().memory, mirrorDownSince: { '1': now.toISOString() } } },
    probes: (s) => round(s, failure(2, 'refused'), answer(3, { mirror: absent })),
    at: later(20),
    kinds: ['fail-over', 'mark-mirror-down'],
    rows: ['3:p/u/n', '5:m/d/n'],
  },
];

describe('decide: Greenplum decision table', () => {
  test.each(table)('$name', ({ snapshot, probes, at, kinds, reason, rows, status }) => {
    const plan = decide(snapshot, probes(snapshot), settings, at ?? now);
    expect(plan.decisions.map((d) => d.kind)).toEqual(kinds);
    if (reason) expect(plan.decisions.map((d) => d.reason).join(' | ')).toMatch(reason);
    for (const d of plan.decisions) expect(d.reason.length).toBeGreaterThan(10);
    if (rows) expect((plan.change?.rows ?? []).map((r) => `${r.dbid}:${r.role}/${r.status}/${r.mode}`)).toEqual(rows);
    if (status) expect(plan.change?.status ?? snapshot.status).toBe(status);
    if (plan.change) {
      // One history row per changed row, Greenplum's wording, and every invariant held.
      expect(plan.change.history.map((h) => h.dbid)).toEqual(plan.change.rows.map((r) => r.dbid));
      for (const h of plan.change.history) expect(h.description).toMatch(/^FTS: update role, status, and mode for dbid \d+ with contentid -?\d+ to [pm], [ud], and [sn]: /);
      expect(checkInvariants(applyRows(snapshot.segments, plan.change), snapshot.segments, plan.change)).toEqual([]);
    }
  });

  test('the grace period is remembered across rounds and cleared when the mirror returns', () => {
    const s0 = cluster();
    const p1 = decide(s0, round(s0, answer(2, { mirror: absent })), settings, now);
    expect(p1.memory.mirrorDownSince['0']).toBe(now.toISOString());
    const p2 = decide({ ...s0, memory: p1.memory }, round(s0, answer(2, { mirror: absent })), settings, later(5));
    expect(p2.decisions.map((d) => d.kind)).toEqual(['await-mirror']);
    const p3 = decide({ ...s0, memory: p2.memory }, round(s0), settings, later(6));
    expect(p3.decisions).toEqual([]);
    expect(p3.memory.mirrorDownSince['0']).toBeUndefined();
    const p4 = decide({ ...s0, memory: p3.memory }, round(s0, answer(2, { mirror: absent })), settings, later(30));
    expect(p4.decisions.map((d) => d.kind)).toEqual(['await-mirror']);
  });

  test('a grace period of 0 marks a mirror down at once', () => {
    const s0 = cluster();
    const plan = decide(s0, round(s0, answer(2, { mirror: absent })), parseSettings({ mirrorDownGracePeriodSeconds: 0 }), now);
    expect(plan.decisions.map((d) => d.kind)).toEqual(['mark-mirror-down']);
  });

  test('a content without a probe result is left alone', () => {
    const s0 = cluster();
    expect(decide(s0, [], settings, now)).toEqual({ decisions: [], change: null, memory: s0.memory });
  });

  test('the started failover is forgotten once the catalog names the new primary', () => {
    const s0 = { ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }), memory: { ...cluster().memory, failoversStarted: { '0': { failedPrimaryDbid: 2, version: 7, at: now.toISOString() } } } };
    const plan = decide(s0, round(s0, answer(4, { mirror: absent, syncRepOn: false })), settings, later(1));
    expect(plan.memory.failoversStarted['0']).toBeUndefined();
  });
});

describe('planFailover', () => {
  test('flips the pair, records the pending promotion and history, holds the invariants', () => {
    const s0 = cluster();
    const change = planFailover(s0, 0, 2, 4, now);
    expect(change.rows.map((r) => `${r.dbid}:${r.role}/${r.status}/${r.mode}`)).toEqual(['2:m/d/n', '4:p/u/n']);
    expect(change.setPending).toEqual([{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: now.toISOString() }]);
    expect(change.status).toBe('degraded');
    expect(checkInvariants(applyRows(s0.segments, change), s0.segments, change)).toEqual([]);
  });
  test.each([
    ['mirror not in sync', cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }), 0, 2, 4, /not up and in sync: it must not be promoted/],
    ['mirror down', cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }), 0, 2, 4, /must not be promoted/],
    ['already flipped', cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }), 0, 2, 4, /dbid 2 is not the acting primary of content 0/],
    ['wrong mirror', cluster(), 0, 2, 5, /dbid 5 is not the mirror of content 0/],
    ['coordinator', cluster(), -1, 1, 6, /never failed over automatically/],
  ])('refuses: %s', (_name, snapshot, content, failed, mirror, message) => {
    expect(() => planFailover(snapshot, content, failed, mirror, now)).toThrow(MirrorNotPromotableError);
    expect(() => planFailover(snapshot, content, failed, mirror, now)).toThrow(message);
  });
});

describe('helpers', () => {
  test('history text is Greenplum\'s', () => {
    expect(historyText(cluster().segments[2], 'why')).toBe('FTS: update role, status, and mode for dbid 2 with contentid 0 to p, u, and s: why');
  });
  test('cluster status', () => {
    expect(clusterStatusOf(cluster().segments)).toBe('up');
    expect(clusterStatusOf(cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }).segments)).toBe('degraded');
    expect(clusterStatusOf(cluster({ 2: { mode: 'n', status: 'd' }, 4: { mode: 'n' } }).segments)).toBe('unavailable');
  });
});
