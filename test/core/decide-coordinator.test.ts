/**
 * The coordinator (dbid 1) and its standby (dbid 6) as a pair: synchronous replication
 * with the mirror-down handling of segments, Greenplum's asynchronous mode, the standby
 * alarms, what the prober keeps of their replication, and automatic activation.
 */
import { decide, recordReceiver, type Decision } from '../../lambdas/core/decide';
import { DEFAULT_SETTINGS, parseSettings, type Settings } from '../../lambdas/core/settings';
import { applyRows, checkInvariants } from '../../lambdas/core/transitions';
import { emptyMemory, type ClusterSnapshot, type PendingOperation, type ProberMemory } from '../../lambdas/core/model';
import type { MirrorReplication } from '../../lambdas/core/probe';
import { answer, cluster, failure, round } from './fixtures';

const now = new Date('2026-11-22T10:00:00.000Z');
const later = (s: number) => new Date(now.getTime() + s * 1000);
const COORDINATOR = 1;
const STANDBY = 6;
const sync = DEFAULT_SETTINGS;
const async = parseSettings({ standbySynchronous: false });
const auto = parseSettings({ autoActivateStandby: true });
const absent: MirrorReplication = { state: 'absent', syncState: 'none' };
const streamingAsync: MirrorReplication = { state: 'streaming', syncState: 'async', flushLsn: '0/3000000' };
/** 32 MiB behind the fixtures' position 0/3000000. */
const farBehind: MirrorReplication = { state: 'catchup', syncState: 'async', flushLsn: '0/1000000' };
const withMemory = (snapshot: ClusterSnapshot, memory: Partial<ProberMemory>): ClusterSnapshot => ({ ...snapshot, memory: { ...snapshot.memory, ...memory } });
/** The pair not in sync (both `n`), the standby up or down. */
const notInSync = (standbyStatus: 'u' | 'd' = 'u') => ({ ...cluster({ 1: { mode: 'n' }, 6: { mode: 'n', status: standbyStatus } }), status: 'degraded' as const });
const kinds = (decisions: Decision[]) => decisions.map((d) => d.kind);
const changed = (plan: ReturnType<typeof decide>) => (plan.change?.rows ?? []).map((r) => `${r.dbid}:${r.role}/${r.status}/${r.mode}`);

/** Decides content -1 only; checks the invariants of whatever it writes. */
function decideCoordinator(snapshot: ClusterSnapshot, coordinator: Parameters<typeof round>[1], settings: Settings, at = now) {
  const plan = decide(snapshot, [coordinator], settings, at, -1);
  if (plan.change?.rows.length) expect(checkInvariants(applyRows(snapshot.segments, plan.change), snapshot.segments, plan.change)).toEqual([]);
  for (const d of plan.decisions) expect(d.reason.length).toBeGreaterThan(10);
  return plan;
}

describe('synchronous standby (default): the mirror-down handling of segments', () => {
  test('standby not streaming: nothing inside the grace period; past it marked down with sync rep off, StandbyDown raised', () => {
    const s0 = cluster();
    const p1 = decideCoordinator(s0, answer(COORDINATOR, { mirror: absent }), sync);
    expect(kinds(p1.decisions)).toEqual(['await-mirror']);
    const p2 = decideCoordinator({ ...s0, memory: p1.memory }, answer(COORDINATOR, { mirror: absent }), sync, later(sync.mirrorDownGracePeriodSeconds));
    expect(kinds(p2.decisions)).toEqual(['mark-mirror-down', 'standby-down']);
    expect(p2.decisions[0]).toMatchObject({ kind: 'mark-mirror-down', primaryDbid: COORDINATOR });
    expect(p2.decisions[1]).toMatchObject({ dbid: STANDBY, reason: expect.stringMatching(/standby dbid 6 is down: coordinator dbid 1 has no walsender for it/) });
    expect(changed(p2)).toEqual(['1:p/u/n', '6:m/d/n']);
    expect(p2.change?.status).toBe('degraded');
  });

  test('standby still down: StandbyDown each round, sync rep turned off again if found on, nothing written', () => {
    const s0 = notInSync('d');
    const quiet = decideCoordinator(s0, answer(COORDINATOR, { mirror: absent, syncRepOn: false }), sync);
    expect(kinds(quiet.decisions)).toEqual(['standby-down']);
    expect(quiet.change).toBeNull();
    const waiting = decideCoordinator(s0, answer(COORDINATOR, { mirror: absent, syncRepOn: true }), sync);
    expect(kinds(waiting.decisions)).toEqual(['sync-rep-off', 'standby-down']);
    // A walsender stuck in startup (a standby that cannot follow) is not streaming either.
    const startup = decideCoordinator(s0, answer(COORDINATOR, { mirror: { ...absent, senderState: 'startup' }, syncRepOn: false }), sync);
    expect(startup.decisions[0].reason).toMatch(/only one in state startup/);
  });

  test('a standby that crash-loops inside the grace period is marked down at once', () => {
    const s0 = withMemory(cluster(), { mirrorDrops: { '-1': { count: sync.replicationAttempts, since: now.toISOString() } } });
    const plan = decideCoordinator(s0, answer(COORDINATOR, { mirror: absent }), sync, later(1));
    expect(kinds(plan.decisions)).toEqual(['mark-mirror-down', 'standby-down']);
  });

  test('standby back: up and catching up first (StandbyLagging while far behind), then sync rep on once caught up, then in sync past the noted position', () => {
    const s0 = notInSync('d');
    // Back, 32 MiB behind: up, not in sync; lagging beyond standbyLagAlarmBytes? 32 MiB > 16 MiB.
    const p1 = decideCoordinator(s0, answer(COORDINATOR, { mirror: farBehind, syncRepOn: false }), sync);
    expect(kinds(p1.decisions)).toEqual(['mark-catching-up', 'standby-lagging']);
    expect(p1.decisions[1]).toMatchObject({ lagBytes: 32 * 1024 * 1024, reason: expect.stringMatching(/lacks 33554432 bytes .* more than standbyLagAlarmBytes \(16777216\)$/) });
    expect(changed(p1)).toEqual(['6:m/u/n']);
    const s1 = { ...notInSync('u'), memory: p1.memory };
    // Caught up with sync rep still off: turned on (never while it lags).
    const p2 = decideCoordinator(s1, answer(COORDINATOR, { mirror: { state: 'streaming', syncState: 'async', flushLsn: '0/2FFFF00' }, syncRepOn: false }), sync, later(2));
    expect(p2.decisions).toEqual([expect.objectContaining({ kind: 'sync-rep-on', primaryDbid: COORDINATOR, mirrorDbid: STANDBY })]);
    // Sync rep in effect: the position is noted; once the standby flushed past it, both rows s.
    const p3 = decideCoordinator({ ...s1, memory: p2.memory }, answer(COORDINATOR, { lsn: '0/3000000' }), sync, later(3));
    expect(p3.decisions).toEqual([]);
    expect(p3.memory.syncTarget['-1']).toBe('0/3000000');
    const p4 = decideCoordinator({ ...s1, memory: p3.memory }, answer(COORDINATOR, { lsn: '0/3000100', mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/3000100' } }), sync, later(4));
    expect(kinds(p4.decisions)).toEqual(['mark-in-sync']);
    expect(changed(p4)).toEqual(['1:p/u/s', '6:m/u/s']);
    expect(p4.change?.status).toBe('up');
  });

  test('standby far behind while sync rep is on: catalog n, then sync rep off so commits do not wait for the catch-up', () => {
    const plan = decideCoordinator(cluster(), answer(COORDINATOR, { mirror: farBehind }), sync);
    expect(plan.decisions[0]).toMatchObject({ kind: 'mark-catching-up', syncRepOff: true });
    expect(changed(plan)).toEqual(['1:p/u/n', '6:m/u/n']);
  });

  test('StandbyLagging follows standbyLagAlarmBytes, each round it holds; a standby within it raises nothing', () => {
    const behind = (bytes: number): MirrorReplication => ({ state: 'streaming', syncState: 'sync', flushLsn: `0/${(0x3000000 - bytes).toString(16).toUpperCase()}` });
    const settings = parseSettings({ standbyLagAlarmBytes: 1000 });
    expect(kinds(decideCoordinator(cluster(), answer(COORDINATOR, { mirror: behind(1000) }), settings).decisions)).toEqual([]);
    const s0 = cluster();
    const p1 = decideCoordinator(s0, answer(COORDINATOR, { mirror: behind(1001) }), settings);
    expect(kinds(p1.decisions)).toEqual(['standby-lagging']);
    expect(kinds(decideCoordinator({ ...s0, memory: p1.memory }, answer(COORDINATOR, { mirror: behind(5000) }), settings, later(1)).decisions)).toEqual(['standby-lagging']);
  });
});

describe('asynchronous standby (standbySynchronous false)', () => {
  test('a pair found in sync with sync rep on: marked n and sync rep turned off (the standby may lack acknowledged commits from now on)', () => {
    const plan = decideCoordinator(cluster(), answer(COORDINATOR), async);
    expect(plan.decisions).toEqual([expect.objectContaining({ kind: 'mark-catching-up', primaryDbid: COORDINATOR, syncRepOff: true, reason: expect.stringMatching(/asynchronously .*standbySynchronous is off.*synchronous replication off/) })]);
    expect(changed(plan)).toEqual(['1:p/u/n', '6:m/u/n']);
  });

  test('sync rep found on while the pair is n: turned off', () => {
    const plan = decideCoordinator(notInSync(), answer(COORDINATOR, { mirror: { state: 'streaming', syncState: 'sync', flushLsn: '0/3000000' } }), async);
    expect(plan.decisions).toEqual([expect.objectContaining({ kind: 'sync-rep-off', primaryDbid: COORDINATOR })]);
    expect(plan.change).toBeNull();
  });

  test('a caught-up standby never gets sync rep back nor mode s, round after round', () => {
    let snapshot = notInSync();
    for (let i = 0; i < 5; i++) {
      const plan = decideCoordinator(snapshot, answer(COORDINATOR, { mirror: streamingAsync, syncRepOn: false, lsn: '0/3000000' }), async, later(i * 2));
      expect(plan.decisions).toEqual([]);
      expect(plan.change).toBeNull();
      expect(plan.memory.syncTarget['-1']).toBeUndefined();
      snapshot = { ...snapshot, memory: plan.memory };
    }
  });

  test('standby down: the same grace period, then d (mode stays n) and StandbyDown; back streaming: u, still n', () => {
    const s0 = notInSync();
    const p1 = decideCoordinator(s0, answer(COORDINATOR, { mirror: absent, syncRepOn: false }), async);
    expect(kinds(p1.decisions)).toEqual(['await-mirror']);
    const p2 = decideCoordinator({ ...s0, memory: p1.memory }, answer(COORDINATOR, { mirror: absent, syncRepOn: false }), async, later(async.mirrorDownGracePeriodSeconds));
    expect(kinds(p2.decisions)).toEqual(['mark-mirror-down', 'standby-down']);
    expect(changed(p2)).toEqual(['6:m/d/n']);
    const p3 = decideCoordinator({ ...notInSync('d'), memory: p2.memory }, answer(COORDINATOR, { mirror: streamingAsync, syncRepOn: false }), async, later(20));
    expect(p3.decisions).toEqual([expect.objectContaining({ kind: 'mark-catching-up', syncRepOff: false })]);
    expect(changed(p3)).toEqual(['6:m/u/n']);
  });

  test('a lagging asynchronous standby: StandbyLagging says an activation now would lose the WAL', () => {
    const plan = decideCoordinator(notInSync(), answer(COORDINATOR, { mirror: farBehind, syncRepOn: false }), async);
    expect(plan.decisions).toEqual([expect.objectContaining({ kind: 'standby-lagging', lagBytes: 32 * 1024 * 1024, reason: expect.stringMatching(/an activation now would lose them$/) })]);
  });

  test('segments are unaffected: a caught-up mirror still gets sync rep back and a far-behind one still turns it off', () => {
    const s0 = cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } });
    expect(kinds(decide(s0, [answer(2, { syncRepOn: false, mirror: streamingAsync })], async, now, 0).decisions)).toEqual(['sync-rep-on']);
    expect(kinds(decide(cluster(), [answer(3, { mirror: farBehind })], async, now, 1).decisions)).toEqual(['mark-catching-up']);
  });
});

describe('what the prober keeps of the standby replication', () => {
  test("the coordinator's walsender for the standby, every round it answers; segments are not kept", () => {
    const s0 = cluster();
    const mirror: MirrorReplication = { state: 'streaming', syncState: 'sync', senderState: 'streaming', sentLsn: '0/3000000', writeLsn: '0/2FFFF00', flushLsn: '0/2FFFE00', replayLsn: '0/2FFFD00', replayLagSeconds: 0.25 };
    const plan = decide(s0, round(s0, answer(COORDINATOR, { mirror })), sync, now);
    expect(plan.memory.replication).toEqual({
      '-1': {
        primaryDbid: COORDINATOR,
        mirrorDbid: STANDBY,
        sender: {
          at: now.toISOString(), state: 'streaming', syncState: 'sync', syncRepOn: true, synchronous: true,
          primaryLsn: '0/3000000', sentLsn: '0/3000000', writeLsn: '0/2FFFF00', flushLsn: '0/2FFFE00', replayLsn: '0/2FFFD00', lagBytes: 512, replayLagSeconds: 0.25,
        },
      },
    });
    // Not streaming: kept as such (no positions of a walsender), the earlier receiver view kept.
    const withReceiver = recordReceiver(plan.memory, s0.segments[0], s0.segments[1], answer(STANDBY, { inRecovery: true, mirror: absent, receiver: { state: 'streaming', receivedLsn: '0/2FFFE00', replayLsn: '0/2FFFD00', heardSecondsAgo: 0.1 } }), later(1));
    const p2 = decide({ ...s0, memory: withReceiver }, round(s0, answer(COORDINATOR, { mirror: absent, syncRepOn: false })), sync, later(2));
    expect(p2.memory.replication?.['-1']).toEqual({
      primaryDbid: COORDINATOR,
      mirrorDbid: STANDBY,
      sender: { at: later(2).toISOString(), state: 'absent', syncState: 'none', syncRepOn: false, synchronous: true, primaryLsn: '0/3000000' },
      receiver: { at: later(1).toISOString(), state: 'streaming', receivedLsn: '0/2FFFE00', replayLsn: '0/2FFFD00', heardSecondsAgo: 0.1 },
    });
    // The coordinator failing leaves the last observation as it was.
    expect(decide({ ...s0, memory: p2.memory }, [failure(COORDINATOR)], sync, later(3), -1).memory.replication).toEqual(p2.memory.replication);
  });

  test("recordReceiver: the standby's WAL receiver, a failed probe as unreachable, a writable standby said so; a new pair starts afresh; the input is not changed", () => {
    const [coordinator, standby] = cluster().segments;
    const memory = emptyMemory();
    const ok = recordReceiver(memory, coordinator, standby, answer(STANDBY, { inRecovery: true, receiver: { state: 'waiting' } }), now);
    expect(ok.replication).toEqual({ '-1': { primaryDbid: 1, mirrorDbid: 6, receiver: { at: now.toISOString(), state: 'waiting' } } });
    expect(memory).toEqual(emptyMemory());
    const down = recordReceiver(ok, coordinator, standby, failure(STANDBY, 'refused'), later(1));
    expect(down.replication?.['-1'].receiver).toEqual({ at: later(1).toISOString(), state: 'unreachable', error: 'refused: connect refused' });
    expect(recordReceiver(ok, coordinator, standby, answer(STANDBY), now).replication?.['-1'].receiver).toMatchObject({ state: 'not in recovery' });
    expect(recordReceiver(ok, coordinator, standby, answer(STANDBY, { inRecovery: true }), now).replication?.['-1'].receiver).toEqual({ at: now.toISOString(), state: 'absent' });
    // The standby was replaced (dbid 7): what was seen of dbid 6 goes.
    const fresh = recordReceiver(down, coordinator, { ...standby, dbid: 7 }, answer(7, { inRecovery: true, receiver: { state: 'streaming' } }), later(2));
    expect(fresh.replication?.['-1']).toEqual({ primaryDbid: 1, mirrorDbid: 7, receiver: { at: later(2).toISOString(), state: 'streaming' } });
    // An old memory without the section.
    const { replication: _dropped, ...old } = emptyMemory();
    expect(recordReceiver(old, coordinator, standby, answer(STANDBY, { inRecovery: true }), now).replication?.['-1']).toBeDefined();
    expect(decide({ ...cluster(), memory: old }, [answer(COORDINATOR)], sync, now, -1).memory.replication?.['-1'].sender).toBeDefined();
  });

  test('forgotten when the standby is removed or while a workflow holds content -1', () => {
    const s0 = cluster();
    const seen = decide(s0, [answer(COORDINATOR)], sync, now, -1).memory;
    const removed = { ...s0, segments: s0.segments.filter((r) => r.dbid !== STANDBY), memory: seen };
    expect(decide(removed, [answer(COORDINATOR)], sync, later(1), -1).memory.replication).toEqual({});
    const op: PendingOperation = { content: -1, kind: 'standby-init', execution: 'init-1', since: now.toISOString(), expiresAt: later(600).toISOString() };
    expect(decide({ ...s0, memory: seen, pendingOperations: [op] }, [answer(COORDINATOR)], sync, later(1)).memory.replication).toEqual({});
  });
});

describe('automatic activation of the standby (autoActivateStandby)', () => {
  test('coordinator failed, standby synchronous and in sync: ActivateStandby is started, attempt 1 at this catalog version', () => {
    const plan = decideCoordinator(cluster(), failure(COORDINATOR, 'refused'), auto);
    expect(plan.decisions).toEqual([
      expect.objectContaining({
        kind: 'activate-standby',
        content: -1,
        failedCoordinatorDbid: COORDINATOR,
        standbyDbid: STANDBY,
        failure: 'unreachable',
        attempt: { failedPrimaryDbid: COORDINATOR, version: 7, attempt: 1, at: now.toISOString() },
        reason: expect.stringMatching(/^coordinator dbid 1 failed \(refused after 4 attempt\(s\): connect refused\); its standby dbid 6 is in sync: starting ActivateStandby/),
      }),
    ]);
    expect(plan.change).toBeNull(); // the workflow writes the catalog, not the prober
    expect(plan.memory.failoversStarted['-1']).toEqual({ failedPrimaryDbid: COORDINATOR, version: 7, attempt: 1, at: now.toISOString() });
  });

  test.each<[string, ClusterSnapshot, Settings, RegExp]>([
    ['autoActivateStandby off (the default)', cluster(), sync, /the standby is not activated automatically \(autoActivateStandby is off\)/],
    ['an asynchronous standby (a combination parseSettings refuses)', cluster(), { ...DEFAULT_SETTINGS, autoActivateStandby: true, standbySynchronous: false }, /replicates asynchronously .* never activated automatically/],
    ['a standby not in sync', notInSync(), auto, /standby dbid 6 is u\/n, not up and in sync .*: not activated automatically/],
    ['a standby marked down', notInSync('d'), auto, /standby dbid 6 is d\/n, not up and in sync/],
    ['no standby', { ...cluster(), segments: cluster().segments.filter((r) => r.dbid !== STANDBY) }, auto, /there is no standby to activate/],
  ])('not automatic with %s: CoordinatorUnreachable, the reason says why', (_name, snapshot, settings, reason) => {
    const plan = decideCoordinator(snapshot, failure(COORDINATOR, 'timeout'), settings);
    expect(plan.decisions).toEqual([expect.objectContaining({ kind: 'coordinator-unreachable', dbid: COORDINATOR, reason: expect.stringMatching(reason) })]);
    expect(plan.memory.failoversStarted['-1']).toBeUndefined();
  });

  test('the same rules as a failed primary: crash recovery that progresses, a full slot table, refused credentials are no failure; a disk that cannot write and a reset loop are', () => {
    expect(kinds(decideCoordinator(cluster(), failure(COORDINATOR, 'in-recovery', { recoveryLsn: '0/2000000' }), auto).decisions)).toEqual(['recovery-in-progress']);
    expect(kinds(decideCoordinator(cluster(), failure(COORDINATOR, 'too-many-connections'), auto).decisions)).toEqual(['too-many-connections']);
    expect(kinds(decideCoordinator(cluster(), failure(COORDINATOR, 'authentication'), auto).decisions)).toEqual(['probe-misconfigured']);
    expect(kinds(decideCoordinator(cluster(), failure(COORDINATOR, 'wrong-instance'), auto).decisions)).toEqual(['wrong-instance']);
    expect(decideCoordinator(cluster(), failure(COORDINATOR, 'disk'), auto).decisions[0]).toMatchObject({ kind: 'activate-standby', failure: 'disk' });
    // Crash recovery without progress past the grace is a failure.
    const stuck = withMemory(cluster(), { recoveryLsn: { '1': '0/2000000' }, recoveryProgressAt: { '1': later(-auto.crashRecoveryGraceSeconds).toISOString() } });
    expect(decideCoordinator(stuck, failure(COORDINATOR, 'in-recovery', { recoveryLsn: '0/2000000' }), auto).decisions[0]).toMatchObject({ kind: 'activate-standby', failure: 'unreachable' });
    // A coordinator that answers but keeps resetting: with its standby in sync, a failure (an alarm only without autoActivateStandby).
    const looping = withMemory(cluster(), { resets: { '1': { initializedAt: '2026-11-22T09:59:50.000Z', seenAt: [later(-20).toISOString(), later(-10).toISOString()] } } });
    const resetting = answer(COORDINATOR, { startedAt: '2026-11-22T09:00:00.000Z', initializedAt: '2026-11-22T09:59:58.000Z' });
    expect(decideCoordinator(looping, resetting, auto).decisions[0]).toMatchObject({ kind: 'activate-standby', failure: 'reset-loop' });
    expect(decideCoordinator(looping, resetting, sync).decisions[0]).toMatchObject({ kind: 'coordinator-unreachable', reason: expect.stringMatching(/reset 3 times/) });
  });

  test('throttled by failoverRetrySeconds: an activation under way is not started again; after that, attempt 2 of the same episode', () => {
    const s0 = cluster();
    const p1 = decideCoordinator(s0, failure(COORDINATOR), auto);
    const p2 = decideCoordinator({ ...s0, memory: p1.memory }, failure(COORDINATOR), auto, later(auto.failoverRetrySeconds - 1));
    expect(p2.decisions).toEqual([expect.objectContaining({ kind: 'coordinator-unreachable', reason: expect.stringMatching(/an activation of standby dbid 6 \(attempt 1\) started 14\.0 s ago is still under way/) })]);
    const p3 = decideCoordinator({ ...s0, memory: p2.memory }, failure(COORDINATOR), auto, later(auto.failoverRetrySeconds));
    expect(p3.decisions[0]).toMatchObject({ kind: 'activate-standby', attempt: { version: 7, attempt: 2 }, reason: expect.stringMatching(/\(attempt 2\)$/) });
  });

  test('while the activation holds content -1 nothing is decided; a refused activation is retried failoverRetrySeconds after the hold ends', () => {
    const s0 = cluster();
    const p1 = decideCoordinator(s0, failure(COORDINATOR), auto);
    const hold: PendingOperation = { content: -1, kind: 'activation', execution: 'activate-c1-v7-auto-a1', since: later(1).toISOString(), expiresAt: later(600).toISOString() };
    const held = { ...s0, version: 8, pendingOperations: [hold], memory: p1.memory };
    const p2 = decideCoordinator(held, failure(COORDINATOR), auto, later(60));
    expect(p2.decisions).toEqual([]);
    expect(p2.memory.failoversStarted['-1']).toEqual({ ...p1.memory.failoversStarted['-1'], at: later(60).toISOString() });
    // The workflow refused (the coordinator answered its second opinion) and gave the content back.
    const released = { ...held, version: 9, pendingOperations: [], memory: p2.memory };
    expect(kinds(decideCoordinator(released, failure(COORDINATOR), auto, later(61)).decisions)).toEqual(['coordinator-unreachable']);
    expect(decideCoordinator(released, failure(COORDINATOR), auto, later(60 + auto.failoverRetrySeconds)).decisions[0]).toMatchObject({ kind: 'activate-standby', attempt: { version: 9, attempt: 1 } });
    // Another workflow's hold (a new standby being made) forgets it.
    const init = { ...held, pendingOperations: [{ ...hold, kind: 'standby-init' as const }] };
    expect(decideCoordinator(init, failure(COORDINATOR), auto, later(60)).memory.failoversStarted['-1']).toBeUndefined();
  });

  test('once the standby is the coordinator, the started activation is forgotten', () => {
    const s0 = cluster();
    const p1 = decideCoordinator(s0, failure(COORDINATOR), auto);
    const activated = { ...s0, version: 9, segments: [{ ...s0.segments[1], role: 'p' as const, preferredRole: 'p' as const, mode: 'n' as const }, ...s0.segments.slice(2)], memory: p1.memory };
    const plan = decideCoordinator(activated, answer(STANDBY, { mirror: absent, syncRepOn: false }), auto, later(5));
    expect(plan.memory.failoversStarted['-1']).toBeUndefined();
    expect(plan.decisions).toEqual([]);
  });

  test('a coordinator that fails while its segments are healthy: only content -1 acts', () => {
    const s0 = cluster();
    const plan = decide(s0, round(s0, failure(COORDINATOR)), auto, now);
    expect(plan.decisions.map((d) => `${d.content}:${d.kind}`)).toEqual(['-1:activate-standby']);
  });
});

describe('no standby in the catalog', () => {
  const alone = { ...cluster({ 1: { mode: 'n' } }), segments: cluster({ 1: { mode: 'n' } }).segments.filter((r) => r.dbid !== STANDBY) };

  test('a coordinator that still waits for a synchronous standby (a late action after -r, a setting by hand): sync rep off, nothing written', () => {
    const plan = decideCoordinator(alone, answer(COORDINATOR, { mirror: absent, syncRepOn: true }), sync);
    expect(kinds(plan.decisions)).toEqual(['sync-rep-off']);
    expect(plan.decisions[0]).toMatchObject({ primaryDbid: COORDINATOR, reason: expect.stringMatching(/has no standby in the catalog but waits for a synchronous standby/) });
    expect(plan.change).toBeNull();
  });

  test('sync rep already off: nothing to do', () => {
    expect(decideCoordinator(alone, answer(COORDINATOR, { mirror: absent, syncRepOn: false }), sync).decisions).toEqual([]);
  });
});
