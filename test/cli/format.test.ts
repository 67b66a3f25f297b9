/** The gpstate-like text of `ftsctl state`: pending promotions and fences owed are shown above the table. */
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
