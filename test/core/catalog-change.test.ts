/** The catalog-change validator every Catalog.apply calls: the transitions table is enforced for every writer. */
import { parseChange, validateChange } from '../../lambdas/core/catalog-change';
import { planFailover } from '../../lambdas/core/decide';
import { ValidationError } from '../../lambdas/core/errors';
import type { CatalogChange, SegmentRow } from '../../lambdas/core/model';
import { cluster } from './fixtures';

const T = '2026-11-23T10:00:00.000Z';
const s0 = cluster();
const rowOf = (dbid: number): SegmentRow => s0.segments.find((r) => r.dbid === dbid)!;
const check = (change: CatalogChange, snapshot = s0) => validateChange(snapshot, parseChange(change));
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
