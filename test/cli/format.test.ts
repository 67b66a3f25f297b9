/** The gpstate-like text of `ftsctl state`: pending promotions, fences owed and holds are shown above the table. */
import { formatState } from '../../cli/format';
import type { ClusterSnapshot, PairReplication } from '../../lambdas/core/model';
import { cluster } from '../core/fixtures';

test('state shows a pending promotion and a fence owed', () => {
  const snapshot = {
    ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
    status: 'degraded' as const,
    pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: '2026-11-23T10:00:00.000Z' }],
    pendingFences: [{ dbid: 2, content: 0, newPrimaryDbid: 4, since: '2026-11-23T10:00:00.000Z', reason: 'failed over to dbid 4' }],
  };
  const text = formatState(snapshot, { errors: true });
  expect(text.split('\n').slice(0, 3)).toEqual([
    'Cluster c1: DEGRADED   catalog version 7',
    '  pending promotion: content 0 -> dbid 4 (since 2026-11-23T10:00:00.000Z)',
    '  fence owed: dbid 2 of content 0 (since 2026-11-23T10:00:00.000Z: failed over to dbid 4)',
  ]);
  expect(text).toMatch(/not in preferred role/);
});

test('state shows a content held by an operator workflow', () => {
  const snapshot = {
    ...cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } }),
    pendingOperations: [{ content: 0, kind: 'recovery' as const, execution: 'recoverseg-c1-v7-0a1b2c3d', since: '2026-11-23T10:00:00.000Z', expiresAt: '2026-11-23T10:10:00.000Z' }],
  };
  expect(formatState(snapshot).split('\n')[1]).toBe('  held by recovery: content 0, execution recoverseg-c1-v7-0a1b2c3d (since 2026-11-23T10:00:00.000Z, lapses 2026-11-23T10:10:00.000Z unless renewed)');
});

describe('state -f: the coordinator, its standby and the standby replication as the prober last saw it (gpstate -f)', () => {
  const sender = {
    at: '2026-11-23T10:00:00.000Z', state: 'streaming', syncState: 'sync', syncRepOn: true, synchronous: true,
    primaryLsn: '0/3000000', sentLsn: '0/3000000', writeLsn: '0/3000000', flushLsn: '0/3000000', replayLsn: '0/2FFFF00', lagBytes: 0, replayLagSeconds: 0.0015,
  };
  const receiver = { at: '2026-11-23T10:00:00.400Z', state: 'streaming', receivedLsn: '0/3000000', replayLsn: '0/2FFFF00', heardSecondsAgo: 0.2 };
  const withReplication = (replication: PairReplication | undefined, snapshot = cluster()): ClusterSnapshot => ({ ...snapshot, memory: { ...snapshot.memory, replication: replication ? { '-1': replication } : {} } });

  test('synchronous: the rows, then the walsender and the WAL receiver', () => {
    expect(formatState(withReplication({ primaryDbid: 1, mirrorDbid: 6, sender, receiver }), { standby: true }).split('\n')).toEqual([
      'Cluster c1: UP   catalog version 7',
      '',
      'content  dbid  role         preferred  status  mode    host  address:port  datadir',
      '-1       1     Coordinator  primary    Up      Synced  cdw   cdw:5432      /data/p/gpseg-1',
      '-1       6     Standby      mirror     Up      Synced  scdw  scdw:5432     /data/m/gpseg-1',
      '',
      'Standby replication (coordinator dbid 1 -> standby dbid 6), as the prober last saw it',
      '   Replication             = synchronous (standbySynchronous): the coordinator waits for the standby while the pair is Synced',
      '   Observed at coordinator = 2026-11-23T10:00:00.000Z',
      '   WAL sender state        = streaming',
      '   Sync state              = sync',
      '   Synchronous replication = on',
      '   Coordinator location    = 0/3000000',
      '   Sent location           = 0/3000000',
      '   Write location          = 0/3000000',
      '   Flush location          = 0/3000000',
      '   Replay location         = 0/2FFFF00',
      '   Lag                     = 0 bytes not flushed, replay lag 0.002 s',
      '   Standby WAL receiver    = streaming, received to 0/3000000, replayed to 0/2FFFF00, heard from the coordinator 0.200 s earlier',
      '   Observed at standby     = 2026-11-23T10:00:00.400Z',
    ]);
  });

  test('asynchronous: how much WAL an activation now would lose', () => {
    const lagging = { ...sender, syncState: 'async', syncRepOn: false, synchronous: false, flushLsn: '0/2FFF000', lagBytes: 4096 };
    const text = formatState(withReplication({ primaryDbid: 1, mirrorDbid: 6, sender: lagging, receiver }), { standby: true });
    expect(text).toContain('   Replication               = asynchronous (standbySynchronous is off)\n');
    expect(text).toContain('   Activation now would lose = 4096 bytes of WAL (coordinator at 0/3000000, standby flushed to 0/2FFF000, at 2026-11-23T10:00:00.000Z)\n');
    // Not streaming: at least what the standby has not received.
    const gone = { at: sender.at, state: 'absent', syncState: 'none', syncRepOn: false, synchronous: false, primaryLsn: '0/3000000' };
    const stopped = formatState(withReplication({ primaryDbid: 1, mirrorDbid: 6, sender: gone, receiver: { ...receiver, state: 'absent', receivedLsn: '0/2000000' } }), { standby: true });
    expect(stopped).toMatch(/ Lag += -\n/);
    expect(stopped).toContain('Activation now would lose = at least 16777216 bytes of WAL: the standby does not stream (received to 0/2000000, coordinator at 0/3000000)');
    const unknown = formatState(withReplication({ primaryDbid: 1, mirrorDbid: 6, sender: gone, receiver: { at: receiver.at, state: 'unreachable', error: 'refused: connection refused' } }), { standby: true });
    expect(unknown).toContain('Activation now would lose = unknown: the standby does not stream');
    expect(unknown).toContain('Standby WAL receiver      = unreachable: refused: connection refused');
  });

  test('nothing observed yet, an observation of another pair, no standby; other views show no replication block', () => {
    expect(formatState(withReplication(undefined), { standby: true }).split('\n').slice(-2)).toEqual([
      'Standby replication (coordinator dbid 1 -> standby dbid 6), as the prober last saw it',
      '   not observed yet: the prober records it each round the coordinator answers',
    ]);
    expect(formatState(withReplication({ primaryDbid: 1, mirrorDbid: 7, sender }), { standby: true })).toMatch(/not observed yet/);
    expect(formatState(withReplication({ primaryDbid: 1, mirrorDbid: 6, receiver }), { standby: true })).toContain('   WAL sender state     = not observed (the coordinator has not answered this prober yet)');
    const noStandby = cluster();
    noStandby.segments = noStandby.segments.filter((r) => r.dbid !== 6);
    expect(formatState(noStandby, { standby: true }).split('\n').slice(-1)).toEqual(['Standby: not configured']);
    expect(formatState(withReplication({ primaryDbid: 1, mirrorDbid: 6, sender, receiver }))).not.toMatch(/Standby replication/);
  });
});
