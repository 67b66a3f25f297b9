/** Rows come and go only at the coordinator: gpinitstandby adds or removes the standby, gpactivatestandby removes the old coordinator. */
import { parseChange, validateChange } from '../../lambdas/core/catalog-change';
import { ValidationError } from '../../lambdas/core/errors';
import type { CatalogChange, SegmentRow } from '../../lambdas/core/model';
import { planActivation } from '../../lambdas/service/activate-standby';
import { cluster } from './fixtures';

const T = '2026-11-24T10:00:00.000Z';
const s0 = cluster();
const rowOf = (dbid: number): SegmentRow => s0.segments.find((r) => r.dbid === dbid)!;
const check = (change: CatalogChange, snapshot = s0) => validateChange(snapshot, parseChange(change));
const note = (...dbids: number[]) => dbids.map((dbid) => ({ time: T, dbid, description: 'test' }));
// After an activation or a removal the coordinator runs alone: p/u/n.
const withoutStandby = { ...s0, segments: s0.segments.filter((r) => r.dbid !== 6).map((r) => (r.dbid === 1 ? { ...r, mode: 'n' as const } : r)) };
const newStandby: SegmentRow = { ...rowOf(6), dbid: 7, hostname: 'scdw2', address: 'scdw2', status: 'd', mode: 'n' };

test('an activation removes the old coordinator and makes the standby the coordinator (preferred p, same dbid)', () => {
  const change = planActivation(s0, { coordinator: rowOf(1), standbyDbid: 6 }, new Date(T), 'test');
  const result = check(change);
  expect(result.segments.filter((r) => r.content === -1)).toEqual([expect.objectContaining({ dbid: 6, role: 'p', preferredRole: 'p', status: 'u', mode: 'n' })]);
  expect(change.history.map((h) => h.description).join('\n')).toMatch(/gpactivatestandby: coordinator dbid 1 on cdw:5432 .* removed/);
});

test('an activation of a standby that is not in sync is allowed only with the coordinator removed in the same change', () => {
  const lagging = cluster({ 1: { mode: 'n' }, 6: { mode: 'n' } });
  expect(() => check(planActivation(lagging, { coordinator: lagging.segments[0], standbyDbid: 6 }, new Date(T), 'test'), lagging)).not.toThrow();
  const promotedOnly = { rows: [{ ...lagging.segments[1], role: 'p' as const }, { ...lagging.segments[0], role: 'm' as const, status: 'd' as const }], history: note(1, 6) };
  expect(() => check(promotedOnly, lagging)).toThrow(/was promoted although it was m\/u\/n/);
});

test('a new standby is added as m/d/n with its history row, then marked up', () => {
  const added = check({ rows: [], history: note(7), addRows: [newStandby] }, withoutStandby);
  expect(added.segments.find((r) => r.dbid === 7)).toMatchObject({ role: 'm', status: 'd', mode: 'n' });
  const withNew = { ...withoutStandby, segments: added.segments };
  expect(() => check({ rows: [{ ...newStandby, status: 'u' }], history: note(7) }, withNew)).not.toThrow();
});

test('a standby is removed with its history row; the fence it was owed goes with it', () => {
  const owed = { ...s0, pendingFences: [{ dbid: 6, content: -1, since: T, reason: 'test' }] };
  const result = check({ rows: [{ ...rowOf(1), mode: 'n' }], history: note(1, 6), removeRows: [6] }, owed);
  expect(result.segments.some((r) => r.dbid === 6)).toBe(false);
  expect(result.fences).toEqual({});
});

test.each<[string, CatalogChange, RegExp, typeof s0?]>([
  ['a segment row added', { rows: [], history: note(9), addRows: [{ ...rowOf(4), dbid: 9 }] }, /only a standby of the coordinator/, withoutStandby],
  ['a second standby', { rows: [], history: note(7), addRows: [newStandby] }, /has a standby already \(dbid 6\)/],
  ['a dbid taken', { rows: [], history: note(6), addRows: [{ ...newStandby, dbid: 6 }] }, /already in the catalog/, undefined],
  ['an added standby in sync', { rows: [], history: note(7), addRows: [{ ...newStandby, mode: 's' }] }, /must be a standby not yet in sync/, withoutStandby],
  ['an added row without history', { rows: [], history: [], addRows: [newStandby] }, /has no history row/, withoutStandby],
  ['a segment row removed', { rows: [], history: note(4), removeRows: [4] }, /only the coordinator's rows/],
  ['the coordinator removed alone', { rows: [], history: note(1), removeRows: [1] }, /removed only by the change that makes its standby the coordinator/],
  ['a removed row without history', { rows: [], history: [], removeRows: [6] }, /removed dbid 6 has no history row/],
  ['a row removed and updated', { rows: [{ ...rowOf(6), status: 'd', mode: 'n' }, { ...rowOf(1), mode: 'n' }], history: note(1, 6), removeRows: [6] }, /both updated and removed/],
  ['an unknown row removed', { rows: [], history: [], removeRows: [42] }, /removed dbid 42 is not in the catalog/],
])('refused: %s', (_name, change, message, snapshot = s0) => {
  expect(() => check(change, snapshot)).toThrow(ValidationError);
  expect(() => check(change, snapshot)).toThrow(message);
});
