/**
 * One probe round's decisions: Greenplum's `ftsprobe.c::processResponse` as a pure
 * function (pg_auto_failover's monitor: decide, then act). The prober applies
 * `plan.change` in one catalog transaction conditioned on the snapshot's version, then
 * carries out each decision's action.
 */
import type { CatalogChange, ClusterSnapshot, ClusterStatus, ContentPair, HistoryRow, ProberMemory, SegmentRow } from './model';
import { COORDINATOR_CONTENT, compareLsn, pairsByContent } from './model';
import type { ProbeAnswer, ProbeFailure, ProbeResult } from './probe';
import type { Settings } from './settings';
import { applyRows } from './transitions';
import { MirrorNotPromotableError } from './errors';

/** A promotion that has not cleared its pending marker after this long is started again. */
export const PROMOTION_STALE_SECONDS = 60;

interface Base {
  content: number;
  /** One sentence a DBA reads in the log and the history. */
  reason: string;
}

/**
 * What the prober does for one content. `change` members carry the rows they alter;
 * the prober writes the merged change (catalog first) before any action.
 */
export type Decision =
  /** Mirror streaming and in sync: both rows mode `s`, mirror `u`. */
  | (Base & { kind: 'mark-in-sync'; rows: SegmentRow[] })
  /** Mirror connected but behind: mirror `u`, mode `n`. */
  | (Base & { kind: 'mark-catching-up'; rows: SegmentRow[] })
  /** Mirror down past the grace period: mirror `d`, both `n`; then turn sync rep off on the primary. */
  | (Base & { kind: 'mark-mirror-down'; rows: SegmentRow[]; primaryDbid: number })
  /** Catalog already says the mirror is down but the primary still waits for it: turn sync rep off (retry). */
  | (Base & { kind: 'sync-rep-off'; primaryDbid: number })
  /** The mirror streams again and has caught up: turn sync rep back on (never while it lags, gpdb #13891). */
  | (Base & { kind: 'sync-rep-on'; primaryDbid: number; mirrorDbid: number })
  /** Mirror not streaming, still inside the grace period: no change. */
  | (Base & { kind: 'await-mirror'; downSince: string })
  /** The acting primary reports itself a mirror: an earlier promotion did not land; promote again. */
  | (Base & { kind: 'promote-again'; dbid: number })
  /** A promotion is under way (pending marker or workflow started): leave it alone. */
  | (Base & { kind: 'promotion-pending'; dbid: number })
  /** Primary in crash recovery and replaying: not a failure (gpdb #11770). */
  | (Base & { kind: 'recovery-in-progress'; dbid: number; lsn: string })
  /** Primary failed and its mirror is in sync: start the PromoteMirror workflow. */
  | (Base & { kind: 'fail-over'; failedPrimaryDbid: number; mirrorDbid: number })
  /** Primary failed, mirror not in sync: never promote; content unavailable, alarm. */
  | (Base & { kind: 'double-fault'; rows: SegmentRow[]; dbid: number })
  /** Primary without a mirror failed: content unavailable, alarm. */
  | (Base & { kind: 'content-unavailable'; rows: SegmentRow[]; dbid: number })
  /** An unavailable primary answers again. */
  | (Base & { kind: 'primary-back'; rows: SegmentRow[]; dbid: number })
  /** The coordinator did not answer: alarm only; activating the standby is never automatic. */
  | (Base & { kind: 'coordinator-unreachable'; dbid: number })
  /** The probe was refused for credentials: the instance is alive, the prober is misconfigured. Alarm, never fail over. */
  | (Base & { kind: 'probe-misconfigured'; dbid: number });

export type DecisionKind = Decision['kind'];

/** A round's plan: decisions, the merged catalog change (null when nothing changes), the prober's new memory. */
export interface RoundPlan {
  decisions: Decision[];
  change: CatalogChange | null;
  memory: ProberMemory;
}

/** Greenplum's history text for a row change. */
export const historyText = (row: SegmentRow, reason: string): string =>
  `FTS: update role, status, and mode for dbid ${row.dbid} with contentid ${row.content} to ${row.role}, ${row.status}, and ${row.mode}: ${reason}`;

/** The cluster status the rows describe. */
export function clusterStatusOf(rows: readonly SegmentRow[]): ClusterStatus {
  let status: ClusterStatus = 'up';
  for (const pair of pairsByContent(rows)) {
    if (!pair.primary || pair.primary.status === 'd') return 'unavailable';
    if (pair.mirror && (pair.mirror.status === 'd' || pair.mirror.mode !== 's')) status = 'degraded';
  }
  return status;
}

const seconds = (from: string, to: Date): number => (to.getTime() - Date.parse(from)) / 1000;

/**
 * Decides what one probe round means. `probes` holds one result per probed acting
 * primary (contents without a result are left alone). Pure: `now` is passed in.
 */
export function decide(snapshot: ClusterSnapshot, probes: readonly ProbeResult[], settings: Settings, now: Date): RoundPlan {
  const memory: ProberMemory = structuredClone(snapshot.memory);
  const byDbid = new Map(probes.map((p) => [p.dbid, p]));
  const decisions: Decision[] = [];
  for (const pair of pairsByContent(snapshot.segments)) {
    const key = String(pair.content);
    // A started failover is done once the catalog names another acting primary.
    const started = memory.failoversStarted[key];
    if (started && pair.primary?.dbid !== started.failedPrimaryDbid) delete memory.failoversStarted[key];
    const probe = pair.primary && byDbid.get(pair.primary.dbid);
    if (!pair.primary || !probe) continue;
    const decision = probe.ok
      ? decideAnswer(snapshot, pair as Required<Pick<ContentPair, 'primary'>> & ContentPair, probe, settings, memory, now)
      : decideFailure(snapshot, pair as Required<Pick<ContentPair, 'primary'>> & ContentPair, probe, memory, now);
    if (decision) decisions.push(decision);
  }
  return { decisions, change: mergeChange(snapshot, decisions, now), memory };
}

type PairWithPrimary = ContentPair & { primary: SegmentRow };

function decideAnswer(
  snapshot: ClusterSnapshot,
  pair: PairWithPrimary,
  probe: ProbeAnswer,
  settings: Settings,
  memory: ProberMemory,
  now: Date,
): Decision | undefined {
  const { primary, mirror, content } = pair;
  const key = String(content);
  delete memory.recoveryLsn[String(primary.dbid)];
  if (probe.inRecovery) {
    if (content === COORDINATOR_CONTENT) return undefined;
    return promotionUnderWay(snapshot, pair, memory, now) ?? {
      kind: 'promote-again',
      content,
      dbid: primary.dbid,
      reason: `acting primary dbid ${primary.dbid} of content ${content} reports itself as a mirror: the earlier promotion did not land, promoting again`,
    };
  }
  if (primary.status === 'd') {
    const rows = [{ ...primary, status: 'u' as const }];
    return { kind: 'primary-back', content, dbid: primary.dbid, rows, reason: `primary dbid ${primary.dbid} of content ${content} answers again` };
  }
  if (!mirror) return undefined;
  const rep = probe.mirror;
  if (rep.state === 'absent') return decideMirrorAbsent(pair as PairWithPrimary & { mirror: SegmentRow }, probe, settings, memory, now);

  // The mirror is connected: whatever the grace period counted is over.
  if (memory.mirrorDownSince[key]) delete memory.mirrorDownSince[key];
  const inSync = rep.state === 'streaming' && rep.syncState === 'sync';
  if (inSync) {
    if (primary.mode === 's' && mirror.mode === 's' && mirror.status === 'u') return undefined;
    return {
      kind: 'mark-in-sync',
      content,
      rows: [{ ...primary, mode: 's' }, { ...mirror, status: 'u', mode: 's' }],
      reason: `mirror dbid ${mirror.dbid} of content ${content} is streaming and in sync`,
    };
  }
  if (rep.state === 'streaming' && !probe.syncRepOn) {
    // Caught up but asynchronous because sync rep was turned off when it failed.
    return {
      kind: 'sync-rep-on',
      content,
      primaryDbid: primary.dbid,
      mirrorDbid: mirror.dbid,
      reason: `mirror dbid ${mirror.dbid} of content ${content} has caught up: turning synchronous replication back on`,
    };
  }
  if (primary.mode === 'n' && mirror.mode === 'n' && mirror.status === 'u') return undefined;
  return {
    kind: 'mark-catching-up',
    content,
    rows: [{ ...primary, mode: 'n' }, { ...mirror, status: 'u', mode: 'n' }],
    reason: `mirror dbid ${mirror.dbid} of content ${content} is up and catching up (${rep.state}, ${rep.syncState})`,
  };
}

function decideMirrorAbsent(
  pair: PairWithPrimary & { mirror: SegmentRow },
  probe: ProbeAnswer,
  settings: Settings,
  memory: ProberMemory,
  now: Date,
): Decision | undefined {
  const { primary, mirror, content } = pair;
  const key = String(content);
  if (mirror.status === 'd') {
    delete memory.mirrorDownSince[key];
    if (!probe.syncRepOn) return undefined;
    return {
      kind: 'sync-rep-off',
      content,
      primaryDbid: primary.dbid,
      reason: `mirror dbid ${mirror.dbid} of content ${content} is down but primary dbid ${primary.dbid} still waits for it: turning synchronous replication off`,
    };
  }
  const nowIso = now.toISOString();
  if (!memory.mirrorDownSince[key]) {
    // A new drop: count it within the grace period (crash loops, gpdb #10327).
    memory.mirrorDownSince[key] = nowIso;
    const drops = memory.mirrorDrops[key];
    memory.mirrorDrops[key] =
      drops && seconds(drops.since, now) <= Math.max(settings.mirrorDownGracePeriodSeconds, settings.probeIntervalSeconds) * 3
        ? { count: drops.count + 1, since: drops.since }
        : { count: 1, since: nowIso };
  }
  const downSince = memory.mirrorDownSince[key];
  const down = seconds(downSince, now);
  const drops = memory.mirrorDrops[key]?.count ?? 1;
  const crashLoop = drops > settings.replicationAttempts;
  if (down < settings.mirrorDownGracePeriodSeconds && !crashLoop) {
    return {
      kind: 'await-mirror',
      content,
      downSince,
      reason: `mirror dbid ${mirror.dbid} of content ${content} not streaming for ${down.toFixed(1)} s, inside the ${settings.mirrorDownGracePeriodSeconds} s grace period`,
    };
  }
  delete memory.mirrorDownSince[key];
  delete memory.mirrorDrops[key];
  return {
    kind: 'mark-mirror-down',
    content,
    primaryDbid: primary.dbid,
    rows: [{ ...primary, mode: 'n' }, { ...mirror, status: 'd', mode: 'n' }],
    reason: crashLoop
      ? `mirror dbid ${mirror.dbid} of content ${content} stopped streaming ${drops} times (more than ${settings.replicationAttempts}): marked down, synchronous replication off`
      : `mirror dbid ${mirror.dbid} of content ${content} not streaming for ${down.toFixed(1)} s, past the ${settings.mirrorDownGracePeriodSeconds} s grace period: marked down, synchronous replication off`,
  };
}

function decideFailure(snapshot: ClusterSnapshot, pair: PairWithPrimary, probe: ProbeFailure, memory: ProberMemory, now: Date): Decision | undefined {
  const { primary, mirror, content } = pair;
  const dbidKey = String(primary.dbid);
  if (probe.kind === 'authentication') {
    return { kind: 'probe-misconfigured', content, dbid: primary.dbid, reason: `dbid ${primary.dbid} rejected the prober's credentials: ${probe.message}; not a failure` };
  }
  if ((probe.kind === 'in-recovery' || probe.kind === 'starting-up') && probe.recoveryLsn) {
    const last = memory.recoveryLsn[dbidKey];
    memory.recoveryLsn[dbidKey] = probe.recoveryLsn;
    if (!last || compareLsn(probe.recoveryLsn, last) > 0) {
      return {
        kind: 'recovery-in-progress',
        content,
        dbid: primary.dbid,
        lsn: probe.recoveryLsn,
        reason: `primary dbid ${primary.dbid} of content ${content} is in crash recovery and replaying (at ${probe.recoveryLsn}${last ? `, was ${last}` : ''}): not a failure`,
      };
    }
  }
  delete memory.recoveryLsn[dbidKey];
  const why = `${probe.kind} after ${probe.attempts} attempt(s): ${probe.message}`;
  if (content === COORDINATOR_CONTENT) {
    return { kind: 'coordinator-unreachable', content, dbid: primary.dbid, reason: `coordinator dbid ${primary.dbid} does not answer (${why}); standby activation is never automatic` };
  }
  if (primary.status === 'd') return undefined; // already marked unavailable, history written once
  const pending = promotionUnderWay(snapshot, pair, memory, now);
  if (pending) return pending;
  if (mirror && mirror.status === 'u' && mirror.mode === 's' && primary.mode === 's') {
    memory.failoversStarted[String(content)] = { failedPrimaryDbid: primary.dbid, version: snapshot.version, at: now.toISOString() };
    return {
      kind: 'fail-over',
      content,
      failedPrimaryDbid: primary.dbid,
      mirrorDbid: mirror.dbid,
      reason: `primary dbid ${primary.dbid} of content ${content} failed (${why}); its mirror dbid ${mirror.dbid} is in sync: promoting it`,
    };
  }
  const rows = [{ ...primary, status: 'd' as const, mode: 'n' as const }];
  if (mirror) {
    return {
      kind: 'double-fault',
      content,
      dbid: primary.dbid,
      rows,
      reason: `double fault: primary dbid ${primary.dbid} of content ${content} failed (${why}) and its mirror dbid ${mirror.dbid} is not in sync (${mirror.status}/${mirror.mode}); not promoting, content ${content} is unavailable`,
    };
  }
  return {
    kind: 'content-unavailable',
    content,
    dbid: primary.dbid,
    rows,
    reason: `primary dbid ${primary.dbid} of content ${content} failed (${why}) and has no mirror; content ${content} is unavailable`,
  };
}

/** A promotion for the pair already under way and not stale yet. */
function promotionUnderWay(snapshot: ClusterSnapshot, pair: PairWithPrimary, memory: ProberMemory, now: Date): Decision | undefined {
  const pending = snapshot.pendingPromotions.find((p) => p.content === pair.content);
  const started = memory.failoversStarted[String(pair.content)];
  const since = pending?.startedAt ?? (started?.failedPrimaryDbid === pair.primary.dbid ? started.at : undefined);
  if (!since || seconds(since, now) >= PROMOTION_STALE_SECONDS) return undefined;
  return {
    kind: 'promotion-pending',
    content: pair.content,
    dbid: pair.primary.dbid,
    reason: `a promotion for content ${pair.content} started ${seconds(since, now).toFixed(1)} s ago is still under way`,
  };
}

function mergeChange(snapshot: ClusterSnapshot, decisions: readonly Decision[], now: Date): CatalogChange | null {
  const rows: SegmentRow[] = [];
  const history: HistoryRow[] = [];
  const time = now.toISOString();
  for (const d of decisions) {
    if (!('rows' in d)) continue;
    for (const row of d.rows) {
      const old = snapshot.segments.find((r) => r.dbid === row.dbid);
      if (old && old.role === row.role && old.status === row.status && old.mode === row.mode) continue; // only changed rows
      rows.push(row);
      history.push({ time, dbid: row.dbid, description: historyText(row, d.reason) });
    }
  }
  const status = clusterStatusOf(applyRows(snapshot.segments, { rows }));
  if (!rows.length && status === snapshot.status) return null;
  return { rows, history, ...(status !== snapshot.status ? { status } : {}) };
}

/**
 * The catalog flip of a failover (what PromoteMirror writes, catalog first): the failed
 * primary becomes a down mirror, the in-sync mirror the acting primary, both mode `n`,
 * a history row each and the pending promotion marker. Throws when the pair is not
 * eligible, so an out-of-sync mirror is never promoted.
 */
export function planFailover(snapshot: ClusterSnapshot, content: number, failedPrimaryDbid: number, mirrorDbid: number, now: Date): CatalogChange {
  const pair = pairsByContent(snapshot.segments).find((p) => p.content === content);
  const primary = pair?.primary;
  const mirror = pair?.mirror;
  if (!primary || primary.dbid !== failedPrimaryDbid) throw new MirrorNotPromotableError(`dbid ${failedPrimaryDbid} is not the acting primary of content ${content}`);
  if (!mirror || mirror.dbid !== mirrorDbid) throw new MirrorNotPromotableError(`dbid ${mirrorDbid} is not the mirror of content ${content}`);
  if (content === COORDINATOR_CONTENT) throw new MirrorNotPromotableError('the coordinator is never failed over automatically');
  if (!(mirror.status === 'u' && mirror.mode === 's' && primary.mode === 's')) {
    throw new MirrorNotPromotableError(`mirror dbid ${mirror.dbid} of content ${content} is ${mirror.status}/${mirror.mode}, not up and in sync: it must not be promoted`);
  }
  const time = now.toISOString();
  const demoted: SegmentRow = { ...primary, role: 'm', status: 'd', mode: 'n' };
  const promoted: SegmentRow = { ...mirror, role: 'p', status: 'u', mode: 'n' };
  const rows = [demoted, promoted];
  return {
    rows,
    history: [
      { time, dbid: demoted.dbid, description: historyText(demoted, `primary failed, demoted before promoting mirror dbid ${mirror.dbid}`) },
      { time, dbid: promoted.dbid, description: historyText(promoted, `mirror promoted to acting primary of content ${content}`) },
    ],
    status: clusterStatusOf(applyRows(snapshot.segments, { rows })),
    setPending: [{ content, mirrorDbid, failedPrimaryDbid, version: snapshot.version + 1, startedAt: time }],
  };
}
