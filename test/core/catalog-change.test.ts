/** The catalog-change validator every Catalog.apply calls: the transitions table is enforced for every writer. */
import { parseChange, validateChange } from '../../lambdas/core/catalog-change';
import { planFailover } from '../../lambdas/core/decide';
import { ContentBusyError, ValidationError } from '../../lambdas/core/errors';
import type { CatalogChange, ClusterSnapshot, PendingOperation, SegmentRow } from '../../lambdas/core/model';
import { cluster } from './fixtures';

const T = '2026-11-23T10:00:00.000Z';
const s0 = cluster();
const rowOf = (dbid: number): SegmentRow => s0.segments.find((r) => r.dbid === dbid)!;
const check = (change: CatalogChange, snapshot = s0, now?: Date) => validateChange(snapshot, parseChange(change), now);
const note = (...dbids: number[]) => dbids.map((dbid) => ({ time: T, dbid, description: 'test' }));

test('a failover flip is a listed transition; it records the marker and the fence owed', () => {
  const result = check(planFailover(s0, 0, 2, 4, new Date(T)));
  expect(result.pending).toEqual({ '0': { content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: T } });
  expect(Object.keys(result.fences ?? {})).toEqual(['2']);
  expect(result.segments.find((r) => r.dbid === 4)).toMatchObject({ role: 'p', status: 'u', mode: 'n' });
});

test.each<[string, CatalogChange, RegExp]>([
  ['a role swap that is not in the table (m/u/s -> p/u/s)', { rows: [{ ...rowOf(2), role: 'm' }, { ...rowOf(4), role: 'p' }], history: note(2, 4) }, /dbid 4: m\/u\/s -> p\/u\/s is not an allowed transition/],
  ['a row changed without its history row', { rows: [{ ...rowOf(4), status: 'd', mode: 'n' }, { ...rowOf(2), mode: 'n' }], history: note(4) }, /dbid 2 changes without a history row/],
  ['two acting primaries', { rows: [{ ...rowOf(4), role: 'p' }], history: note(4) }, /2 acting primaries/],
  ['a dbid moved to another content', { rows: [{ ...rowOf(4), content: 1 }], history: note(4) }, /never changes content/],
  ['a fence for a dbid of another content', { rows: [], history: [], setFences: [{ dbid: 2, content: 1, since: T, reason: 'x' }] }, /the row is of content 0/],
  ['a pending promotion naming a row of another content', { rows: [], history: [], setPending: [{ content: 0, mirrorDbid: 5, failedPrimaryDbid: 2, version: 8, startedAt: T }] }, /names dbid 5, not a row of that content/],
  ['a bad status', { rows: [], history: [], status: 'sideways' as never }, /cluster status must be one of/],
])('refused: %s', (_name, change, message) => {
  expect(() => check(change)).toThrow(ValidationError);
  expect(() => check(change)).toThrow(message);
});

test('an out-of-sync mirror is never promoted, whoever writes', () => {
  const notInSync = cluster({ 2: { mode: 'n' }, 4: { mode: 'n' } });
  const row = (dbid: number) => notInSync.segments.find((r) => r.dbid === dbid)!;
  const change = { rows: [{ ...row(2), role: 'm' as const, status: 'd' as const }, { ...row(4), role: 'p' as const }], history: note(2, 4) };
  expect(() => check(change, notInSync)).toThrow(/dbid 4 was promoted although it was m\/u\/n, not an in-sync mirror/);
});

test('an address change keeps the state and needs only its history row', () => {
  expect(check({ rows: [{ ...rowOf(4), port: 7100 }], history: note(4) }).segments.find((r) => r.dbid === 4)?.port).toBe(7100);
});

describe('operations: the lock per content', () => {
  const NOW = new Date('2026-11-23T10:30:00.000Z');
  const op = (content: number, execution: string, over: Partial<PendingOperation> = {}): PendingOperation => ({
    content, kind: 'recovery', execution, since: '2026-11-23T10:00:00.000Z', expiresAt: '2026-11-23T11:00:00.000Z', ...over,
  });
  /** Content 0 held by recovery execution A (live at NOW). */
  const heldByA: ClusterSnapshot = { ...s0, pendingOperations: [op(0, 'A')] };
  /** The same hold, lapsed at NOW. */
  const lapsedA: ClusterSnapshot = { ...s0, pendingOperations: [op(0, 'A', { expiresAt: NOW.toISOString() })] };
  const promoting: ClusterSnapshot = { ...s0, pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 7, startedAt: T }] };
  const marker = { content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: T };
  const A = 'recovery execution A (since 2026-11-23T10:00:00.000Z, until 2026-11-23T11:00:00.000Z)';

  /** The error a check throws (fails the test when it throws nothing). */
  function refusal(change: CatalogChange, snapshot: ClusterSnapshot, now?: Date): ValidationError {
    try {
      check(change, snapshot, now);
    } catch (e) {
      if (e instanceof ValidationError) return e;
      throw e;
    }
    throw new Error('the change was accepted');
  }

  test('taking a free content records the operation by content; releasing it by its execution removes it', () => {
    expect(check({ rows: [], history: [], setOperations: [op(0, 'A')] }, s0, NOW).operations).toEqual({ '0': op(0, 'A') });
    expect(check({ rows: [], history: [], clearOperations: [{ content: 0, execution: 'A' }] }, heldByA, NOW).operations).toEqual({});
    // A change that does not touch operations leaves them as they are.
    expect(check({ rows: [], history: [] }, heldByA, NOW).operations).toBeUndefined();
  });

  test('the same execution takes its content again (renewal, a re-run), replacing its operation', () => {
    const renewed = op(0, 'A', { kind: 'rebalance', expiresAt: '2026-11-23T12:00:00.000Z' });
    expect(check({ rows: [], history: [], setOperations: [renewed] }, heldByA, NOW).operations).toEqual({ '0': renewed });
  });

  test('releasing a content no operation holds is a no-op; another content keeps its operation', () => {
    const both: ClusterSnapshot = { ...s0, pendingOperations: [op(0, 'A'), op(1, 'B')] };
    expect(check({ rows: [], history: [], clearOperations: [{ content: 1, execution: 'B' }, { content: 0, execution: 'A' }] }, both, NOW).operations).toEqual({});
    expect(check({ rows: [], history: [], clearOperations: [{ content: 1, execution: 'X' }] }, heldByA, NOW).operations).toEqual({ '0': op(0, 'A') });
  });

  test.each<[string, CatalogChange, ClusterSnapshot, string]>([
    ['taking a content with a pending promotion', { rows: [], history: [], setOperations: [op(0, 'B')] }, promoting, 'content 0 has a pending promotion of dbid 4 (started 2026-11-23T10:00:00.000Z): recovery execution B cannot take it'],
    ['taking a content and starting its promotion in one change', { rows: [], history: [], setOperations: [op(0, 'B')], setPending: [marker] }, s0, 'content 0 has a pending promotion of dbid 4 (started 2026-11-23T10:00:00.000Z): recovery execution B cannot take it'],
    ['taking a content another execution holds', { rows: [], history: [], setOperations: [op(0, 'B', { kind: 'rebalance' })] }, heldByA, `content 0 is held by ${A}: rebalance execution B cannot take it`],
    ['starting a promotion on a held content', { rows: [], history: [], setPending: [marker] }, heldByA, `content 0 is held by ${A}: no promotion may start on it`],
    ['releasing the operation of another execution', { rows: [], history: [], clearOperations: [{ content: 0, execution: 'B' }] }, heldByA, `content 0 is held by ${A}, not by execution B: a workflow releases only its own hold`],
  ])('refused with ContentBusyError: %s', (_name, change, snapshot, issue) => {
    const error = refusal(change, snapshot, NOW);
    expect(error).toBeInstanceOf(ContentBusyError);
    expect(error.name).toBe('ContentBusyError');
    expect(error.issues).toEqual([issue]);
    expect(error.message).toBe(`change to cluster c1 refused, a content is held by someone else: ${issue}`);
  });

  test.each<[string, CatalogChange, string]>([
    ['an operation naming a content not in the catalog', { rows: [], history: [], setOperations: [op(9, 'A')] }, 'pending operation names content 9, which is not in the catalog of cluster c1'],
    ['a content both set and cleared', { rows: [], history: [], setOperations: [op(0, 'A')], clearOperations: [{ content: 0, execution: 'A' }] }, 'content 0 is both set and cleared as pending operation'],
  ])('refused (not busy): %s', (_name, change, issue) => {
    const error = refusal(change, s0, NOW);
    expect(error).not.toBeInstanceOf(ContentBusyError);
    expect(error.issues).toEqual([issue]);
    expect(error.message).toBe(`invalid change to cluster c1: ${issue}`);
  });

  test.each<[string, CatalogChange, RegExp]>([
    ['an operation of an unknown kind', { rows: [], history: [], setOperations: [{ ...op(0, 'A'), kind: 'promotion' as never }] }, /^invalid pending operations: pending operation of content 0: kind must be one of recovery\|rebalance/],
    ['an operation without an execution', { rows: [], history: [], setOperations: [{ ...op(0, 'A'), execution: '' }] }, /^invalid pending operations: pending operation of content 0: execution must not be empty$/],
    ['two operations for one content', { rows: [], history: [], setOperations: [op(0, 'A'), op(0, 'B')] }, /^invalid pending operations: content 0 has more than one pending operation$/],
    ['a release without an execution', { rows: [], history: [], clearOperations: [{ content: 0 } as never] }, /^invalid operation releases: release of the operation of content 0: execution is missing$/],
  ])('parseChange refuses %s', (_name, change, message) => {
    expect(() => parseChange(change)).toThrow(ValidationError);
    expect(() => parseChange(change)).toThrow(message);
  });

  test('a lapsed operation holds nothing: another execution takes the content, a promotion starts, a stranger\'s release is a no-op', () => {
    expect(check({ rows: [], history: [], setOperations: [op(0, 'B')] }, lapsedA, NOW).operations).toEqual({ '0': op(0, 'B') });
    expect(check({ rows: [], history: [], setPending: [marker] }, lapsedA, NOW).pending).toEqual({ '0': marker });
    expect(check({ rows: [], history: [], clearOperations: [{ content: 0, execution: 'B' }] }, lapsedA, NOW).operations).toEqual({ '0': lapsedA.pendingOperations[0] });
    // Its own execution still removes it.
    expect(check({ rows: [], history: [], clearOperations: [{ content: 0, execution: 'A' }] }, lapsedA, NOW).operations).toEqual({});
  });

  test('without a time every stored operation holds its content', () => {
    expect(refusal({ rows: [], history: [], setOperations: [op(0, 'B')] }, lapsedA)).toBeInstanceOf(ContentBusyError);
    expect(refusal({ rows: [], history: [], setPending: [marker] }, lapsedA)).toBeInstanceOf(ContentBusyError);
  });

  test('a change that releases the hold may start a promotion on the content; a held content does not block another', () => {
    expect(check({ rows: [], history: [], clearOperations: [{ content: 0, execution: 'A' }], setPending: [marker] }, heldByA, NOW)).toMatchObject({ pending: { '0': marker }, operations: {} });
    expect(check({ rows: [], history: [], setOperations: [op(1, 'B')] }, heldByA, NOW).operations).toEqual({ '0': op(0, 'A'), '1': op(1, 'B') });
  });
});
