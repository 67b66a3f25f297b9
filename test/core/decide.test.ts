import { decide, planFailover, historyText, clusterStatusOf, MAX_WAL_SENDER_TIMEOUT_MS } from '../../lambdas/core/decide';
import { DEFAULT_SETTINGS, parseSettings } from '../../lambdas/core/settings';
import { applyRows, checkInvariants } from '../../lambdas/core/transitions';
import type { ClusterSnapshot, PendingOperation } from '../../lambdas/core/model';
import { ContentBusyError, MirrorNotPromotableError } from '../../lambdas/core/errors';
import { answer, cluster, failure, round } from './fixtures';

const now = new Date('2026-11-22T10:00:00.000Z');
const later = (s: number) => new Date(now.getTime() + s * 1000);
const settings = DEFAULT_SETTINGS;
const absent = { state: 'absent', syncState: 'none' } as const;
const catchup = { state: 'catchup', syncState: 'async' } as const;
/** 32 MiB behind the fixtures' primary position 0/3000000. */
const farBehind = { state: 'catchup', syncState: 'async', flushLsn: '0/1000000' } as const;
const PROMOTION_STALE_SECONDS = settings.promotionStaleSeconds;
const withMemory = (snapshot: ClusterSnapshot, memory: Partial<ClusterSnapshot['memory']>): ClusterSnapshot => ({ ...snapshot, memory: { ...snapshot.memory, ...memory } });

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
    name: 'mirror streaming as synchronous standby after being not in sync: the primary position is noted, nothing written yet (gpdb #13891)',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }),
    probes: (s) => round(s),
    kinds: [],
    rows: [],
  },
  {
    name: 'sync rep set but not yet applied by the checkpointer (busy in a checkpoint): commits may not wait yet, no position noted, nothing written',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(2, { syncRepSettled: false })),
    kinds: [],
    rows: [],
  },
  {
    name: 'mirror has flushed past the position noted when sync rep was in effect: both rows s, mirror u',
    snapshot: withMemory(cluster({ 2: { mode: 'n' }, 4: { mode: 'n', status: 'd' } }), { syncTarget: { '0': '0/2000000' } }),
    probes: (s) => round(s),
    kinds: ['mark-in-sync'],
    reason: /mirror dbid 4 of content 0 is streaming and in sync \(flushed to 0\/3000000, past 0\/2000000\)/,
    rows: ['2:p/u/s', '4:m/u/s'],
    status: 'up',
  },
  {
    name: 'mirror synchronous but not yet flushed to the noted position: not in sync yet',
    snapshot: withMemory(cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }), { syncTarget: { '0': '0/4000000' } }),
    probes: (s) => round(s),
    kinds: [],
    rows: [],
  },
  {
    name: 'mirror connected but far behind while sync rep is on: catalog n first, then sync rep off so commits do not wait for the catch-up',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { mirror: farBehind })),
    kinds: ['mark-catching-up'],
    reason: /33554432 bytes behind\): more than 1048576 bytes behind, synchronous replication off while it catches up/,
    rows: ['2:p/u/n', '4:m/u/n'],
    status: 'degraded',
  },
  {
    name: 'synchronous mirror streaming but behind under heavy writes (WAL in flight): sync rep stays on, nothing changes',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/1000000' } })),
    kinds: [],
    rows: [],
  },
  {
    name: 'an old primary that answers writable while its own promotion still runs: left to the workflow, which fences it',
    snapshot: {
      ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
      pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: now.toISOString() }],
      pendingFences: [{ dbid: 2, content: 0, newPrimaryDbid: 4, since: now.toISOString(), reason: 'failed over to dbid 4' }],
    },
    probes: (s) => [answer(4, { inRecovery: true }), answer(2, { mirror: absent }), ...round(s).filter((p) => p.dbid !== 4)],
    kinds: ['promotion-pending', 'retry-fence'],
  },
  {
    name: 'mirror catching up a little while sync rep is on: commits wait at most for that, nothing changes',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { mirror: { state: 'catchup', syncState: 'async', flushLsn: '0/2FF0000' } })),
    kinds: [],
    rows: [],
  },
  {
    name: 'catching-up mirror already marked, sync rep off: no write',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(2, { syncRepOn: false, mirror: farBehind })),
    kinds: [],
    rows: [],
  },
  {
    name: 'pair marked in sync but sync rep is off on the primary: marked not in sync (the mirror may lack acknowledged commits)',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { syncRepOn: false, mirror: { state: 'streaming', syncState: 'async', flushLsn: '0/3000000' } })),
    kinds: ['mark-catching-up'],
    reason: /synchronous replication is off/,
    rows: ['2:p/u/n', '4:m/u/n'],
  },
  {
    name: 'mirror caught up while sync rep is off: turn sync rep on, catalog unchanged',
    snapshot: cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }),
    probes: (s) => round(s, answer(2, { syncRepOn: false, mirror: { state: 'streaming', syncState: 'async', flushLsn: '0/2FFFF00' } })),
    kinds: ['sync-rep-on'],
    reason: /caught up \(256 bytes behind\): turning synchronous replication back on/,
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
    name: 'acting primary reports itself as a mirror: promote again (the intent is recorded first)',
    snapshot: cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
    probes: (s) => round(s, answer(4, { inRecovery: true })),
    kinds: ['promote-again'],
    reason: /did not land, promoting again/,
    rows: [],
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
    name: 'primary in crash recovery, replay stuck longer than crashRecoveryGraceSeconds: a failure, mirror promoted',
    snapshot: { ...cluster(), memory: { ...cluster().memory, recoveryLsn: { '2': '0/2500000' }, recoveryProgressAt: { '2': later(-31).toISOString() } } },
    probes: (s) => round(s, failure(2, 'in-recovery', { recoveryLsn: '0/2500000' })),
    kinds: ['fail-over'],
  },
  {
    name: 'primary in crash recovery, replay stuck for less than crashRecoveryGraceSeconds (a slow WAL file): not a failure yet',
    snapshot: { ...cluster(), memory: { ...cluster().memory, recoveryLsn: { '2': '0/2500000' }, recoveryProgressAt: { '2': later(-10).toISOString() } } },
    probes: (s) => round(s, failure(2, 'in-recovery', { recoveryLsn: '0/2500000' })),
    kinds: ['recovery-in-progress'],
    reason: /no progress for 10.0 s of the 30 s allowed/,
  },
  {
    name: 'primary starting up after a crash, before replay (no position yet): not a failure within the grace',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'starting-up')),
    kinds: ['recovery-in-progress'],
    reason: /starting up \(no replay position yet\)/,
  },
  {
    name: 'primary starting up for longer than the grace without a replay position: a failure',
    snapshot: { ...cluster(), memory: { ...cluster().memory, recoveryProgressAt: { '2': later(-31).toISOString() } } },
    probes: (s) => round(s, failure(2, 'starting-up')),
    kinds: ['fail-over'],
  },
  {
    name: 'a fence owed to the acting primary (its failover is mid-way) is never the prober\'s to carry out',
    snapshot: { ...cluster(), pendingFences: [{ dbid: 2, content: 0, newPrimaryDbid: 4, since: now.toISOString(), reason: 'failing over to dbid 4' }] },
    probes: (s) => round(s),
    kinds: [],
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
    snapshot: { ...cluster(), memory: { ...cluster().memory, failoversStarted: { '0': { failedPrimaryDbid: 2, version: 7, attempt: 1, at: now.toISOString() } } } },
    probes: (s) => round(s, failure(2, 'refused')),
    at: later(3),
    kinds: ['promotion-pending'],
  },
  {
    name: 'a failover attempt that did not flip the catalog (aborted) is retried after failoverRetrySeconds',
    snapshot: { ...cluster(), memory: { ...cluster().memory, failoversStarted: { '0': { failedPrimaryDbid: 2, version: 7, attempt: 1, at: now.toISOString() } } } },
    probes: (s) => round(s, failure(2, 'refused')),
    at: later(settings.failoverRetrySeconds + 1),
    kinds: ['fail-over'],
    reason: /\(attempt 2\)/,
  },
  {
    name: 'primary cannot write its heartbeat (full disk), mirror in sync: fail over',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'disk', { diskError: 'io' })),
    kinds: ['fail-over'],
  },
  {
    name: 'primary answers but its heartbeat row is locked by a session: alive, nothing to do',
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { wrote: false, writeError: 'the heartbeat row is locked by another session' })),
    kinds: [],
  },
  {
    name: 'the address of the primary answers as another instance: alarm, nothing done',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'wrong-instance')),
    kinds: ['wrong-instance'],
    rows: [],
  },
  {
    name: 'primary out of connection slots: alive, alarm, never fail over',
    snapshot: cluster(),
    probes: (s) => round(s, failure(2, 'too-many-connections')),
    kinds: ['too-many-connections'],
    rows: [],
  },
  {
    name: 'primary reset once after a backend crash: alarm only',
    snapshot: withMemory(cluster(), { resets: { '2': { initializedAt: '2026-11-22T09:00:00.000Z', seenAt: [] } } }),
    probes: (s) => round(s, answer(2, { startedAt: '2026-11-22T09:00:00.000Z', initializedAt: '2026-11-22T09:59:58.000Z' })),
    kinds: ['primary-reset'],
    reason: /reset after a backend crash \(1 reset\(s\) in 60 s; a failure from 3\)/,
  },
  {
    name: 'primary keeps resetting (gpdb #4470), mirror in sync: a failure, fail over',
    snapshot: withMemory(cluster(), { resets: { '2': { initializedAt: '2026-11-22T09:59:50.000Z', seenAt: [later(-20).toISOString(), later(-10).toISOString()] } } }),
    probes: (s) => round(s, answer(2, { startedAt: '2026-11-22T09:00:00.000Z', initializedAt: '2026-11-22T09:59:58.000Z' })),
    kinds: ['fail-over'],
    reason: /reset 3 times in 60 s/,
  },
  {
    name: 'primary keeps resetting, mirror not in sync: alarm only',
    snapshot: withMemory(cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } }), { resets: { '2': { initializedAt: '2026-11-22T09:59:50.000Z', seenAt: [later(-20).toISOString(), later(-10).toISOString()] } } }),
    probes: (s) => round(s, answer(2, { startedAt: '2026-11-22T09:00:00.000Z', initializedAt: '2026-11-22T09:59:58.000Z' })),
    kinds: ['reset-loop'],
  },
  {
    name: 'primary in crash recovery while reset-looping: the recovery is no excuse, fail over',
    snapshot: withMemory(cluster(), { resets: { '2': { initializedAt: '2026-11-22T09:59:50.000Z', seenAt: [later(-30).toISOString(), later(-20).toISOString(), later(-10).toISOString()] } } }),
    probes: (s) => round(s, failure(2, 'in-recovery', { recoveryLsn: '0/2500000' })),
    kinds: ['fail-over'],
  },
  {
    name: "primary's wal_sender_timeout too long for the second opinion: alarm",
    snapshot: cluster(),
    probes: (s) => round(s, answer(2, { walSenderTimeoutMs: 60_000 })),
    kinds: ['replication-timeout-misconfigured'],
    reason: new RegExp(`wal_sender_timeout 60000 ms; it must be between 1 and ${MAX_WAL_SENDER_TIMEOUT_MS} ms`),
  },
  {
    name: 'an old primary marked down answers as a writable primary: fence recorded with a history row, then fenced',
    snapshot: cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
    probes: (s) => [answer(4, { mirror: absent, syncRepOn: false }), answer(2, { mirror: absent }), ...round(s).filter((p) => p.dbid !== 4)],
    kinds: ['fence-zombie'],
    reason: /marked down but answers as a writable primary beside acting primary dbid 4: fencing it/,
    rows: [],
  },
  {
    name: 'an old primary marked down answers in recovery (fenced): nothing',
    snapshot: cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
    probes: (s) => [answer(4, { mirror: absent, syncRepOn: false }), answer(2, { inRecovery: true, mirror: absent }), ...round(s).filter((p) => p.dbid !== 4)],
    kinds: [],
  },
  {
    name: 'a fence owed in the catalog is carried out again',
    snapshot: { ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }), pendingFences: [{ dbid: 2, content: 0, newPrimaryDbid: 4, since: now.toISOString(), reason: 'failed over' }] },
    probes: (s) => [answer(4, { mirror: absent, syncRepOn: false }), ...round(s).filter((p) => p.dbid !== 4)],
    kinds: ['retry-fence'],
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
    name: 'coordinator unreachable: alarm only, the standby is not activated automatically by default',
    snapshot: cluster(),
    probes: (s) => round(s, failure(1, 'timeout')),
    kinds: ['coordinator-unreachable'],
    reason: /not activated automatically \(autoActivateStandby is off\)/,
    rows: [],
  },
  {
    name: 'standby down past the grace period: marked down like a mirror (gpdb #11013)',
    snapshot: { ...cluster(), memory: { ...cluster().memory, mirrorDownSince: { '-1': now.toISOString() } } },
    probes: (s) => round(s, answer(1, { mirror: absent })),
    at: later(30),
    kinds: ['mark-mirror-down', 'standby-down'],
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
    if (plan.change?.rows.length) {
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

  test('only: one content is decided, the others are left to their own probes', () => {
    const s0 = cluster();
    const plan = decide(s0, round(s0, failure(2, 'refused'), answer(3, { mirror: farBehind })), settings, now, 1);
    expect(plan.decisions.map((d) => `${d.content}:${d.kind}`)).toEqual(['1:mark-catching-up']);
  });

  test('a new failure episode after a catalog change starts at attempt 1; the same episode counts up', () => {
    const s0 = withMemory(cluster(), { failoversStarted: { '0': { failedPrimaryDbid: 2, version: 6, attempt: 3, at: now.toISOString() } } });
    const plan = decide(s0, round(s0, failure(2, 'refused')), settings, later(settings.failoverRetrySeconds + 1));
    expect(plan.decisions[0]).toMatchObject({ kind: 'fail-over', attempt: { version: 7, attempt: 1 } });
    expect(plan.memory.failoversStarted['0']).toMatchObject({ version: 7, attempt: 1 });
  });

  test('the sync target is only noted once sync rep is in effect, so a mirror is never marked s while commits do not wait (lost-commit attack)', () => {
    const s0 = cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } });
    // Sync rep was just turned on; the checkpointer, busy in a checkpoint, has not applied it: commits are acknowledged without the mirror.
    const p1 = decide(s0, round(s0, answer(2, { syncRepSettled: false, lsn: '0/3000000' })), settings, now);
    expect(p1.memory.syncTarget['0']).toBeUndefined();
    // Still not applied, the mirror has caught up with everything so far: still not in sync.
    const p2 = decide({ ...s0, memory: p1.memory }, round(s0, answer(2, { syncRepSettled: false, lsn: '0/4000000', mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/4000000' } })), settings, later(2));
    expect(p2.decisions).toEqual([]);
    // Applied now: the position is noted, and only a later probe past it marks the pair in sync.
    const p3 = decide({ ...s0, memory: p2.memory }, round(s0, answer(2, { lsn: '0/5000000', mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/4F00000' } })), settings, later(4));
    expect(p3.decisions).toEqual([]);
    expect(p3.memory.syncTarget['0']).toBe('0/5000000');
    const p4 = decide({ ...s0, memory: p3.memory }, round(s0, answer(2, { lsn: '0/5100000', mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/5000000' } })), settings, later(6));
    expect(p4.decisions.map((d) => d.kind)).toEqual(['mark-in-sync']);
  });

  test('a zombie fence is recorded in the same change as its history row', () => {
    const s0 = cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } });
    const plan = decide(s0, [answer(4, { mirror: absent, syncRepOn: false }), answer(2, { mirror: absent })], settings, now);
    expect(plan.change?.setFences).toEqual([{ dbid: 2, content: 0, newPrimaryDbid: 4, since: now.toISOString(), reason: 'answered as a writable primary while marked down' }]);
    expect(plan.change?.history.map((h) => h.description)).toEqual([expect.stringMatching(/^FTS: dbid 2 with contentid 0 answered as a writable primary while marked down/)]);
  });

  test('promote again records the pending promotion it runs and a fence of the other row (catalog first)', () => {
    const s0 = cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } });
    const plan = decide(s0, [answer(4, { inRecovery: true })], settings, now);
    expect(plan.change?.setPending).toEqual([{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: now.toISOString() }]);
    expect(plan.change?.setFences).toEqual([{ dbid: 2, content: 0, newPrimaryDbid: 4, since: now.toISOString(), reason: 'promoting dbid 4 again' }]);
  });

  test('a content without a probe result is left alone', () => {
    const s0 = cluster();
    expect(decide(s0, [], settings, now)).toEqual({ decisions: [], change: null, memory: s0.memory });
  });

  test('the started failover is forgotten once the catalog names the new primary', () => {
    const s0 = { ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }), memory: { ...cluster().memory, failoversStarted: { '0': { failedPrimaryDbid: 2, version: 7, attempt: 1, at: now.toISOString() } } } };
    const plan = decide(s0, round(s0, answer(4, { mirror: absent, syncRepOn: false })), settings, later(1));
    expect(plan.memory.failoversStarted['0']).toBeUndefined();
  });
});

describe('decide: a content held by an operator workflow is left alone', () => {
  /** Content 0 held by a live recovery until 10 minutes after `now`. */
  const recovery = (over: Partial<PendingOperation> = {}): PendingOperation => ({
    content: 0, kind: 'recovery', execution: 'recover-1', since: now.toISOString(), expiresAt: later(600).toISOString(), ...over,
  });
  const held = (snapshot: ClusterSnapshot, op = recovery()): ClusterSnapshot => ({ ...snapshot, pendingOperations: [op] });

  test('its primary fails: no fail-over, nothing written, while the other content is decided as usual', () => {
    const s0 = held(cluster());
    const plan = decide(s0, round(s0, failure(2, 'refused'), answer(3, { mirror: farBehind })), settings, now);
    expect(plan.decisions.map((d) => `${d.content}:${d.kind}`)).toEqual(['1:mark-catching-up']);
    expect(plan.change?.rows.map((r) => r.dbid)).toEqual([3, 5]);
    expect(plan.memory.failoversStarted['0']).toBeUndefined();
    expect(decide(s0, round(s0, failure(2, 'refused')), settings, now, 0)).toEqual({ decisions: [], change: null, memory: s0.memory });
  });

  test('once the operation expired the content is decided again', () => {
    const s0 = held(cluster());
    expect(decide(s0, round(s0, failure(2, 'refused')), settings, later(599)).decisions).toEqual([]);
    const plan = decide(s0, round(s0, failure(2, 'refused')), settings, later(600));
    expect(plan.decisions.map((d) => `${d.content}:${d.kind}`)).toEqual(['0:fail-over']);
  });

  test('no sync-rep change, no mirror marked down or back, no zombie or owed fence carried out', () => {
    // Mirror 4 down with a fence owed; the primary still waits for it and the down row answers as a writable primary.
    const s0 = held({ ...cluster({ 2: { mode: 'n' }, 4: { status: 'd', mode: 'n' } }), status: 'degraded', pendingFences: [{ dbid: 4, content: 0, since: now.toISOString(), reason: 'x' }] });
    const probes = [answer(2, { mirror: absent, syncRepOn: true }), answer(4, { mirror: absent }), answer(3)];
    expect(decide(s0, probes, settings, now).decisions).toEqual([]);
    // Without the hold, the same round turns sync rep off, fences the zombie and so on.
    expect(decide({ ...s0, pendingOperations: [] }, probes, settings, now).decisions.map((d) => d.kind)).toEqual(['sync-rep-off', 'fence-zombie']);
    const streamingAgain = decide(s0, [answer(2, { mirror: catchup, syncRepOn: false })], settings, now);
    expect(streamingAgain.decisions).toEqual([]);
    expect(streamingAgain.change).toBeNull();
  });

  test("the prober forgets what it saw of the content, so the hold's downtime never counts as mirror-down time", () => {
    const s0 = withMemory(held(cluster()), {
      mirrorDownSince: { '0': now.toISOString(), '1': now.toISOString() },
      mirrorDrops: { '0': { count: 2, since: now.toISOString() } },
      syncTarget: { '0': '0/3000000' },
      failoversStarted: { '0': { failedPrimaryDbid: 2, version: 7, attempt: 1, at: now.toISOString() } },
      recoveryLsn: { '2': '0/1000000' },
      resets: { '4': { initializedAt: now.toISOString(), seenAt: [] } },
    });
    const p1 = decide(s0, [answer(2, { mirror: absent })], settings, later(60));
    expect(p1.memory).toEqual({ ...s0.memory, mirrorDownSince: { '1': now.toISOString() }, mirrorDrops: {}, syncTarget: {}, failoversStarted: {}, recoveryLsn: {}, resets: {} });
    // The hold ends with the mirror still absent: its grace period starts now, not before the hold.
    const p2 = decide({ ...s0, memory: p1.memory }, [answer(2, { mirror: absent })], settings, later(600));
    expect(p2.decisions.map((d) => d.kind)).toEqual(['await-mirror']);
  });
});

describe('planFailover', () => {
  test('flips the pair, records the pending promotion and history, holds the invariants', () => {
    const s0 = cluster();
    const change = planFailover(s0, 0, 2, 4, now);
    expect(change.rows.map((r) => `${r.dbid}:${r.role}/${r.status}/${r.mode}`)).toEqual(['2:m/d/n', '4:p/u/n']);
    expect(change.setPending).toEqual([{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: now.toISOString() }]);
    expect(change.setFences).toEqual([{ dbid: 2, content: 0, newPrimaryDbid: 4, since: now.toISOString(), reason: 'failed over to dbid 4' }]);
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
  test('refuses a content a live operation holds (a rebalance took it after the failover started); a lapsed one does not stop it', () => {
    const op: PendingOperation = { content: 0, kind: 'rebalance', execution: 'rebalance-1', since: now.toISOString(), expiresAt: later(60).toISOString() };
    const s0 = { ...cluster(), pendingOperations: [op] };
    expect(() => planFailover(s0, 0, 2, 4, now)).toThrow(ContentBusyError);
    expect(() => planFailover(s0, 0, 2, 4, now)).toThrow(
      `content 0 is held by rebalance execution rebalance-1 (since ${now.toISOString()}, until ${later(60).toISOString()}): it is not failed over`,
    );
    expect(planFailover(s0, 1, 3, 5, now).rows.map((r) => r.dbid)).toEqual([3, 5]);
    expect(planFailover(s0, 0, 2, 4, later(60)).rows.map((r) => r.dbid)).toEqual([2, 4]);
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
