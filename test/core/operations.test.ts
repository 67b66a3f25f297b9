/** The lock per content read from a snapshot: live operations and who holds a content. */
import type { ClusterSnapshot, PendingOperation } from '../../lambdas/core/model';
import { describeOperation, isLive, liveOperation } from '../../lambdas/core/operations';
import { cluster } from './fixtures';

const NOW = new Date('2026-11-23T10:30:00.000Z');
const op = (content: number, over: Partial<PendingOperation> = {}): PendingOperation => ({
  content, kind: 'rebalance', execution: 'rebalance-1', since: '2026-11-23T10:00:00.000Z', expiresAt: '2026-11-23T11:00:00.000Z', ...over,
});
const withOps = (...ops: PendingOperation[]): ClusterSnapshot => ({ ...cluster(), pendingOperations: ops });

describe('liveOperation', () => {
  it('is the operation of the content while it has not expired', () => {
    const snapshot = withOps(op(0), op(1, { expiresAt: NOW.toISOString() }));
    expect(liveOperation(snapshot, 0, NOW)).toEqual(op(0));
    // Expired at NOW exactly: its execution has timed out.
    expect(liveOperation(snapshot, 1, NOW)).toBeUndefined();
    expect(liveOperation(snapshot, 2, NOW)).toBeUndefined();
  });

  it('counts every stored operation as live without a time', () => {
    expect(liveOperation(withOps(op(1, { expiresAt: '2000-01-02T00:00:00.000Z', since: '2000-01-01T00:00:00.000Z' })), 1)).toBeDefined();
    expect(isLive(op(0, { expiresAt: '2000-01-02T00:00:00.000Z' }))).toBe(true);
    expect(isLive(op(0, { expiresAt: '2000-01-02T00:00:00.000Z' }), NOW)).toBe(false);
  });
});

test('describeOperation names kind, execution and times', () => {
  expect(describeOperation(op(0))).toBe('rebalance execution rebalance-1 (since 2026-11-23T10:00:00.000Z, until 2026-11-23T11:00:00.000Z)');
});
