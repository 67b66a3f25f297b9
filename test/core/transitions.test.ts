/** The one transitions table: who makes each transition, and what the checker allows. */
import type { SegmentRow } from '../../lambdas/core/model';
import { TRANSITIONS, checkInvariants, findTransition, type TransitionActor } from '../../lambdas/core/transitions';
import { cluster } from './fixtures';

const ACTORS: TransitionActor[] = ['prober', 'PromoteMirror', 'RecoverSegments', 'Rebalance', 'ActivateStandby', 'InitStandby'];

test('a (from, to) pair is listed at most once per actor, each row with its reason', () => {
  const keys = TRANSITIONS.map((t) => `${t.by} ${t.from} -> ${t.to}`);
  expect(new Set(keys).size).toBe(keys.length);
  for (const t of TRANSITIONS) {
    expect(ACTORS).toContain(t.by);
    expect(t.from).not.toBe(t.to);
    expect(t.why.length).toBeGreaterThan(20);
  }
});

test('rows are grouped by actor (docs render one section each)', () => {
  const order = TRANSITIONS.map((t) => t.by).filter((by, i, all) => i === 0 || all[i - 1] !== by);
  expect(order).toEqual(ACTORS);
});

test('failover rows are PromoteMirror, mirror health and unavailable contents the prober, and the new rows are there', () => {
  const by = (actor: TransitionActor) => TRANSITIONS.filter((t) => t.by === actor).map((t) => `${t.from} -> ${t.to}`);
  expect(by('PromoteMirror')).toEqual(['p/u/s -> m/d/n', 'm/u/s -> p/u/n']);
  expect(by('prober')).toEqual(expect.arrayContaining(['p/u/n -> p/d/n', 'p/d/n -> p/u/n', 'm/d/n -> m/u/n', 'p/u/n -> p/u/s']));
  expect(by('prober')).not.toContain('m/u/s -> p/u/n');
  expect(by('RecoverSegments')).toEqual(['m/d/n -> m/u/n']);
  expect(by('Rebalance')).toEqual(['p/u/s -> m/d/n', 'm/u/s -> p/u/n', 'm/d/n -> m/u/n']);
});

test('findTransition finds a change listed by any actor, or by the one asked for', () => {
  const mirror: SegmentRow = cluster().segments.find((r) => r.dbid === 4)!;
  const down = { ...mirror, status: 'd' as const, mode: 'n' as const };
  const up = { ...down, status: 'u' as const };
  expect(findTransition(down, up)?.by).toBe('prober');
  expect(findTransition(down, up, 'RecoverSegments')?.why).toMatch(/^gprecoverseg rebuilt the down mirror/);
  expect(findTransition(down, up, 'Rebalance')?.why).toMatch(/rewound into a mirror of the new primary/);
  expect(findTransition(down, up, 'PromoteMirror')).toBeUndefined();
});

test('the checker allows a change some row lists, whoever makes it', () => {
  // A rebalance flip: old primary 4 (a mirror by preference) stopped, old mirror 2 promoted.
  const before = cluster({ 2: { role: 'm' }, 4: { role: 'p' } }).segments;
  const after = before.map((r) => (r.dbid === 4 ? { ...r, role: 'm' as const, status: 'd' as const, mode: 'n' as const } : r.dbid === 2 ? { ...r, role: 'p' as const, mode: 'n' as const } : r));
  expect(checkInvariants(after, before)).toEqual([]);
});
