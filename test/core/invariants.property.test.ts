/**
 * Property: random sequences of faults and recoveries, probed by a simulated world,
 * decided by `decide` and applied the way the prober and PromoteMirror apply them,
 * never break an invariant, never promote an out-of-sync mirror, never lose a commit.
 */
import fc from 'fast-check';
import { decide, planFailover } from '../../lambdas/core/decide';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';
import { applyRows, checkInvariants } from '../../lambdas/core/transitions';
import type { CatalogChange, ClusterSnapshot } from '../../lambdas/core/model';
import { pairsByContent } from '../../lambdas/core/model';
import type { ProbeResult } from '../../lambdas/core/probe';
import { MirrorNotPromotableError } from '../../lambdas/core/errors';
import { cluster } from './fixtures';

interface Instance { alive: boolean; standby: boolean; commits: number }

/** The real instances behind the catalog: who runs, who is a standby, sync rep, commits. */
class World {
  readonly instances = new Map<number, Instance>();
  readonly syncRepOn = new Map<number, boolean>();
  acknowledged = new Map<number, number>(); // content -> commits acknowledged to clients
  constructor(snapshot: ClusterSnapshot) {
    for (const r of snapshot.segments) {
      this.instances.set(r.dbid, { alive: true, standby: r.role === 'm', commits: 0 });
      if (r.role === 'p') this.syncRepOn.set(r.dbid, true);
    }
  }
  /** The other instance of a content. */
  peer(snapshot: ClusterSnapshot, dbid: number): number | undefined {
    const row = snapshot.segments.find((r) => r.dbid === dbid)!;
    return snapshot.segments.find((r) => r.content === row.content && r.dbid !== dbid)?.dbid;
  }
  streaming(primary: number, standby: number | undefined): boolean {
    const p = this.instances.get(primary)!;
    const s = standby === undefined ? undefined : this.instances.get(standby)!;
    return !!s && p.alive && !p.standby && s.alive && s.standby;
  }
  probe(snapshot: ClusterSnapshot): ProbeResult[] {
    return snapshot.segments.filter((r) => r.role === 'p').map((r): ProbeResult => {
      const inst = this.instances.get(r.dbid)!;
      if (!inst.alive) return { ok: false, dbid: r.dbid, kind: 'refused', message: 'refused', attempts: 4, durationMs: 1 };
      const peer = this.peer(snapshot, r.dbid);
      const streams = this.streaming(r.dbid, peer);
      const sync = streams && !!this.syncRepOn.get(r.dbid);
      // One commit = one byte of WAL: positions are commit counts.
      const lsn = (commits: number) => `0/${commits.toString(16).toUpperCase()}`;
      const flushLsn = streams ? lsn(this.instances.get(peer!)!.commits) : undefined;
      return {
        ok: true, dbid: r.dbid, inRecovery: inst.standby, syncRepOn: !!this.syncRepOn.get(r.dbid), attempts: 1, durationMs: 1, lsn: lsn(inst.commits), syncRepSettled: true,
        mirror: { state: streams ? 'streaming' : 'absent', syncState: sync ? 'sync' : streams ? 'async' : 'none', ...(flushLsn ? { flushLsn } : {}) },
      };
    });
  }
  /** Clients write to every content's real primary; sync rep makes them wait for the standby. */
  write(snapshot: ClusterSnapshot): void {
    for (const pair of pairsByContent(snapshot.segments)) {
      const dbids = [pair.primary?.dbid, pair.mirror?.dbid].filter((d): d is number => d !== undefined);
      const primary = dbids.find((d) => this.instances.get(d)!.alive && !this.instances.get(d)!.standby);
      if (primary === undefined) continue;
      const standby = dbids.find((d) => d !== primary);
      const p = this.instances.get(primary)!;
      if (standby !== undefined && this.streaming(primary, standby)) this.instances.get(standby)!.commits = p.commits; // catch up
      if (this.syncRepOn.get(primary) && !this.streaming(primary, standby)) continue; // commit waits for the standby
      p.commits += 1;
      if (this.syncRepOn.get(primary) && standby !== undefined) this.instances.get(standby)!.commits = p.commits;
      this.acknowledged.set(pair.content, p.commits);
    }
  }
  promote(dbid: number): void {
    const inst = this.instances.get(dbid)!;
    inst.standby = false;
    this.syncRepOn.set(dbid, false);
  }
  kill(dbid: number): void {
    this.instances.get(dbid)!.alive = false;
  }
  /** Restart; an old primary whose peer took over comes back rewound as its standby (recoverseg). */
  restart(snapshot: ClusterSnapshot, dbid: number): void {
    const inst = this.instances.get(dbid)!;
    const peer = this.peer(snapshot, dbid);
    const peerInst = peer === undefined ? undefined : this.instances.get(peer);
    inst.alive = true;
    if (!inst.standby && peerInst && !peerInst.standby) {
      inst.standby = true;
      inst.commits = Math.min(inst.commits, peerInst.commits);
    }
  }
}

function apply(snapshot: ClusterSnapshot, change: CatalogChange): ClusterSnapshot {
  const segments = applyRows(snapshot.segments, change);
  const violations = checkInvariants(segments, snapshot.segments, change);
  if (violations.length) throw new Error(`invariant broken: ${violations.join('; ')}`);
  let pending = snapshot.pendingPromotions.filter((p) => !change.clearPending?.includes(p.content));
  pending = [...pending, ...(change.setPending ?? [])];
  const fences = [...snapshot.pendingFences.filter((f) => !change.clearFences?.includes(f.dbid)), ...(change.setFences ?? [])];
  return { ...snapshot, segments, version: snapshot.version + 1, status: change.status ?? snapshot.status, pendingPromotions: pending, pendingFences: fences };
}

const event = fc.oneof(
  fc.record({ kind: fc.constant('kill' as const), dbid: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ kind: fc.constant('restart' as const), dbid: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ kind: fc.constant('rounds' as const), n: fc.integer({ min: 1, max: 12 }) }),
);

type Event = { kind: 'kill'; dbid: number } | { kind: 'restart'; dbid: number } | { kind: 'rounds'; n: number };

/** Runs events through world, decide and apply; throws on a broken invariant or a lost commit. */
function simulate(events: readonly Event[]): ClusterSnapshot {
  let snapshot = cluster();
  const world = new World(snapshot);
  let clock = Date.parse('2026-11-22T10:00:00Z');
  const runRound = () => {
    clock += DEFAULT_SETTINGS.probeIntervalSeconds * 1000;
    world.write(snapshot);
    const now = new Date(clock);
    const plan = decide(snapshot, world.probe(snapshot), DEFAULT_SETTINGS, now);
    if (plan.change) snapshot = apply(snapshot, plan.change);
    snapshot = { ...snapshot, memory: plan.memory };
    for (const d of plan.decisions) {
      if (d.kind === 'mark-mirror-down' || d.kind === 'sync-rep-off' || (d.kind === 'mark-catching-up' && d.syncRepOff)) world.syncRepOn.set(d.primaryDbid, false);
      if (d.kind === 'sync-rep-on') world.syncRepOn.set(d.primaryDbid, true);
      if (d.kind === 'promote-again') world.promote(d.dbid);
      if (d.kind === 'fail-over') {
        // PromoteMirror: flip the catalog first, then promote, then clear the marker.
        let flip: CatalogChange;
        try {
          flip = planFailover(snapshot, d.content, d.failedPrimaryDbid, d.mirrorDbid, now);
        } catch (e) {
          if (e instanceof MirrorNotPromotableError) continue;
          throw e;
        }
        const acked = world.acknowledged.get(d.content) ?? 0;
        snapshot = apply(snapshot, flip);
        world.promote(d.mirrorDbid);
        const promoted = world.instances.get(d.mirrorDbid)!;
        if (promoted.commits < acked) throw new Error(`lost ${acked - promoted.commits} acknowledged commits on content ${d.content}`);
        snapshot = apply(snapshot, { rows: [], history: [], clearPending: [d.content] });
      }
    }
  };
  for (const e of events) {
    if (e.kind === 'kill') world.kill(e.dbid);
    else if (e.kind === 'restart') world.restart(snapshot, e.dbid);
    else for (let i = 0; i < e.n; i++) runRound();
  }
  return snapshot;
}

test('a mirror that fails and comes back is resynchronized, then promoted without loss', () => {
  const end = simulate([{ kind: 'kill', dbid: 4 }, { kind: 'rounds', n: 8 }, { kind: 'restart', dbid: 4 }, { kind: 'rounds', n: 3 }, { kind: 'kill', dbid: 2 }, { kind: 'rounds', n: 2 }]);
  expect(end.segments.find((r) => r.dbid === 4)).toMatchObject({ role: 'p', status: 'u' });
  expect(end.segments.find((r) => r.dbid === 2)).toMatchObject({ role: 'm', status: 'd' });
});

test('random faults and recoveries never break an invariant or lose a commit', () => {
  fc.assert(
    fc.property(fc.array(event, { minLength: 1, maxLength: 40 }), (events) => {
      // At most one acting primary per content is checked by every apply; check the end state too.
      expect(checkInvariants(simulate(events).segments)).toEqual([]);
    }),
    { numRuns: 1000 },
  );
});

test('a promotion must also be a listed transition: m/u/s -> p/u/s (mode kept) is rejected', () => {
  const before = cluster().segments;
  const primary = before.find((r) => r.content === 0 && r.role === 'p')!;
  const mirror = before.find((r) => r.content === 0 && r.role === 'm')!;
  const rows = [{ ...primary, role: 'm' as const, status: 'd' as const, mode: 'n' as const }, { ...mirror, role: 'p' as const }];
  const after = applyRows(before, { rows });
  const history = rows.map((r) => ({ time: '2026-01-01T00:00:00Z', dbid: r.dbid, description: 'x' }));
  expect(checkInvariants(after, before, { rows, history })).toEqual(
    expect.arrayContaining([`dbid ${mirror.dbid}: m/u/s -> p/u/s is not an allowed transition`]),
  );
});
