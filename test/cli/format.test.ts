/** The gpstate-like text of `ftsctl state`: pending promotions, fences owed and holds are shown above the table. */
import { formatState } from '../../cli/format';
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
