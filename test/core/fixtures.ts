/** Builders for core tests: a small cluster and probe results. */
import type { ClusterSnapshot, SegmentRow } from '../../lambdas/core/model';
import { emptyMemory } from '../../lambdas/core/model';
import type { MirrorReplication, ProbeAnswer, ProbeFailure, ProbeFailureKind } from '../../lambdas/core/probe';

const row = (dbid: number, content: number, role: 'p' | 'm', host: string, port: number): SegmentRow => ({
  dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname: host, address: host, datadir: `/data/${role}/gpseg${content}`,
});

/** Coordinator dbid 1 + standby 6; content 0: primary 2, mirror 4; content 1: primary 3, mirror 5. */
export function cluster(overrides: Partial<Record<number, Partial<SegmentRow>>> = {}): ClusterSnapshot {
  const rows = [
    row(1, -1, 'p', 'cdw', 5432), row(6, -1, 'm', 'scdw', 5432),
    row(2, 0, 'p', 'sdw1', 6000), row(3, 1, 'p', 'sdw2', 6000),
    row(4, 0, 'm', 'sdw2', 7000), row(5, 1, 'm', 'sdw1', 7000),
  ].map((r) => ({ ...r, ...overrides[r.dbid] }));
  return { clusterId: 'c1', version: 7, status: 'up', segments: rows, pendingPromotions: [], pendingFences: [], pendingOperations: [], memory: emptyMemory() };
}

export const streaming: MirrorReplication = { state: 'streaming', syncState: 'sync', flushLsn: '0/3000000', replayLsn: '0/3000000' };

export const answer = (dbid: number, over: Partial<ProbeAnswer> = {}): ProbeAnswer => ({
  ok: true, dbid, inRecovery: false, mirror: streaming, syncRepOn: true, syncRepSettled: true, lsn: '0/3000000', attempts: 1, durationMs: 3, ...over,
});

export const failure = (dbid: number, kind: ProbeFailureKind = 'refused', over: Partial<ProbeFailure> = {}): ProbeFailure => ({
  ok: false, dbid, kind, message: `connect ${kind}`, attempts: 4, durationMs: 3000, ...over,
});

/** Healthy answers for every acting primary but the ones given. */
export function round(snapshot: ClusterSnapshot, ...special: (ProbeAnswer | ProbeFailure)[]) {
  const byDbid = new Map(special.map((p) => [p.dbid, p]));
  return snapshot.segments.filter((r) => r.role === 'p').map((r) => byDbid.get(r.dbid) ?? answer(r.dbid));
}
