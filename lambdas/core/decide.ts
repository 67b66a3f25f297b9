/**
 * One probe round's decisions: Greenplum's `ftsprobe.c::processResponse` as a pure
 * function (pg_auto_failover's monitor: decide, then act). The prober applies
 * `plan.change` in one catalog transaction conditioned on the snapshot's version, then
 * carries out each decision's action.
 */
import type {
  CatalogChange,
  ClusterSnapshot,
  ClusterStatus,
  ContentPair,
  FailoverAttempt,
  HistoryRow,
  PairReplication,
  PendingFence,
  PendingOperation,
  PendingPromotion,
  ProberMemory,
  SegmentRow,
} from './model';
import { COORDINATOR_CONTENT, compareLsn, lsnBytes, pairsByContent } from './model';
import type { ProbeAnswer, ProbeFailure, ProbeResult } from './probe';
import type { Settings } from './settings';
import { applyRows } from './transitions';
import { ContentBusyError, MirrorNotPromotableError } from './errors';
import { describeOperation, liveOperation } from './operations';

/**
 * Why a failover is started; the PromoteMirror workflow confirms each its own way:
 * `unreachable` (no answer: probe again and ask the mirror), `disk` (answers but cannot
 * write: check the write again), `reset-loop` (keeps crashing: check its recent resets).
 */
export type FailureKind = 'unreachable' | 'disk' | 'reset-loop';

/** Longest `wal_sender_timeout` the mirror's second opinion tolerates: keepalives come at half of it, and must be fresher than this. */
export const SECOND_OPINION_FRESH_SECONDS = 10;
/** `wal_sender_timeout` above this (or 0) leaves the second opinion unsound. */
export const MAX_WAL_SENDER_TIMEOUT_MS = 2 * (SECOND_OPINION_FRESH_SECONDS - 1) * 1000;

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
  /** Mirror streaming, in sync and caught up: both rows mode `s`, mirror `u`. */
  | (Base & { kind: 'mark-in-sync'; rows: SegmentRow[] })
  /**
   * Mirror connected but behind: mirror `u`, mode `n`; with `syncRepOff`, the catalog is
   * written first and then sync rep is turned off so commits do not wait for the catch-up.
   */
  | (Base & { kind: 'mark-catching-up'; rows: SegmentRow[]; primaryDbid: number; syncRepOff: boolean })
  /** Mirror down past the grace period: mirror `d`, both `n`; then turn sync rep off on the primary. */
  | (Base & { kind: 'mark-mirror-down'; rows: SegmentRow[]; primaryDbid: number })
  /** The catalog already says not in sync but the primary still waits for its mirror: turn sync rep off (retry). */
  | (Base & { kind: 'sync-rep-off'; primaryDbid: number })
  /** The mirror streams again and has caught up: turn sync rep back on (never while it lags, gpdb #13891). */
  | (Base & { kind: 'sync-rep-on'; primaryDbid: number; mirrorDbid: number })
  /** Mirror not streaming, still inside the grace period: no change. */
  | (Base & { kind: 'await-mirror'; downSince: string })
  /** The acting primary reports itself a mirror: an earlier promotion did not land; promote again (intent recorded first). */
  | (Base & { kind: 'promote-again'; dbid: number; failedPrimaryDbid: number; attempt: FailoverAttempt; pending?: PendingPromotion; fence?: PendingFence })
  /** A promotion is under way (pending marker or workflow started): leave it alone. */
  | (Base & { kind: 'promotion-pending'; dbid: number })
  /** Primary in crash recovery and replaying: not a failure (gpdb #11770). */
  | (Base & { kind: 'recovery-in-progress'; dbid: number; lsn: string })
  /** Primary failed and its mirror is in sync: start the PromoteMirror workflow. */
  | (Base & { kind: 'fail-over'; failedPrimaryDbid: number; mirrorDbid: number; failure: FailureKind; attempt: FailoverAttempt })
  /** Primary failed, mirror not in sync: never promote; content unavailable, alarm. */
  | (Base & { kind: 'double-fault'; rows: SegmentRow[]; dbid: number })
  /** Primary without a mirror failed: content unavailable, alarm. */
  | (Base & { kind: 'content-unavailable'; rows: SegmentRow[]; dbid: number })
  /** An unavailable primary answers again. */
  | (Base & { kind: 'primary-back'; rows: SegmentRow[]; dbid: number })
  /**
   * The coordinator failed (no answer after the retries, a disk that cannot write, a reset
   * loop) and is not activated automatically (the reason says why: `autoActivateStandby`
   * off, an asynchronous standby, a standby not in sync, an activation already under
   * way): alarm.
   */
  | (Base & { kind: 'coordinator-unreachable'; dbid: number })
  /**
   * The coordinator failed, `autoActivateStandby` is on and its synchronous standby is in
   * sync: start ActivateStandby, which asks the standby for a second opinion and fences
   * the coordinator before it activates anything (and refuses otherwise).
   */
  | (Base & { kind: 'activate-standby'; failedCoordinatorDbid: number; standbyDbid: number; failure: FailureKind; attempt: FailoverAttempt })
  /** The standby is marked down, or is being marked down (not streaming past the grace period): alarm, each round it lasts. */
  | (Base & { kind: 'standby-down'; dbid: number })
  /** The standby lacks more WAL than `standbyLagAlarmBytes`: alarm, each round it lasts. */
  | (Base & { kind: 'standby-lagging'; dbid: number; lagBytes: number })
  /** The probe was refused for credentials: the instance is alive, the prober is misconfigured. Alarm, never fail over. */
  | (Base & { kind: 'probe-misconfigured'; dbid: number })
  /** The instance at a row's address is another instance: alarm, never act on it. */
  | (Base & { kind: 'wrong-instance'; dbid: number })
  /** The primary refused the prober for lack of connection slots: it is alive. Alarm, never fail over. */
  | (Base & { kind: 'too-many-connections'; dbid: number })
  /** The primary's postmaster reset after a backend crash (below the loop threshold): alarm. */
  | (Base & { kind: 'primary-reset'; dbid: number; resets: number })
  /** The primary keeps resetting but its mirror is not in sync: alarm only (a failover would lose commits). */
  | (Base & { kind: 'reset-loop'; dbid: number; resets: number })
  /** The primary's wal_sender_timeout is off or too long for the mirror's second opinion: alarm. */
  | (Base & { kind: 'replication-timeout-misconfigured'; dbid: number; walSenderTimeoutMs: number })
  /**
   * A row marked down answered as a writable primary (a zombie old primary): the fence is
   * recorded in the catalog with a history row, then carried out at once, with an alarm.
   */
  | (Base & { kind: 'fence-zombie'; dbid: number; fence: PendingFence; history: string })
  /** A fence the catalog owes is carried out (again). */
  | (Base & { kind: 'retry-fence'; dbid: number; fence: PendingFence });

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
 * Decides what probe results mean. `probes` holds results for acting primaries and for
 * rows marked down (probed to catch a zombie old primary); contents without a result
 * are left alone, so the prober can decide each content as soon as its own probe
 * completes (`only` restricts the decisions to one content). Pending fences of the
 * snapshot are carried out again. A content held by a live operation (an operator
 * workflow: ./operations.ts) is left alone entirely: no decision, no fence, and the
 * memory about it is forgotten (see {@link forgetContent}). Pure: `now` is passed in.
 */
export function decide(snapshot: ClusterSnapshot, probes: readonly ProbeResult[], settings: Settings, now: Date, only?: number): RoundPlan {
  const memory: ProberMemory = structuredClone(snapshot.memory);
  const byDbid = new Map(probes.map((p) => [p.dbid, p]));
  const decisions: Decision[] = [];
  const held = (content: number) => liveOperation(snapshot, content, now) !== undefined;
  for (const pair of pairsByContent(snapshot.segments)) {
    if (only !== undefined && pair.content !== only) continue;
    const operation = liveOperation(snapshot, pair.content, now);
    if (operation) {
      forgetContent(memory, pair, operation, now);
      continue;
    }
    const key = String(pair.content);
    // A started failover is done once the catalog names another acting primary.
    const started = memory.failoversStarted[key];
    if (started && pair.primary?.dbid !== started.failedPrimaryDbid) delete memory.failoversStarted[key];
    if (!pair.primary) continue;
    const ctx: Context = { snapshot, pair: pair as PairWithPrimary, settings, memory, now };
    const probe = byDbid.get(pair.primary.dbid);
    if (probe) decisions.push(...(probe.ok ? decideAnswer(ctx, probe) : decideFailure(ctx, probe)));
    const downMirror = pair.mirror?.status === 'd' ? byDbid.get(pair.mirror.dbid) : undefined;
    if (downMirror) decisions.push(...decideDownRow(ctx, downMirror));
  }
  for (const fence of snapshot.pendingFences ?? []) {
    if (only !== undefined && fence.content !== only) continue;
    // The workflow holding the content owns its instances: the fence waits until it is done.
    if (held(fence.content)) continue;
    // A fence owed to the acting primary belongs to a failover in progress (its workflow fences before the flip): never the prober's to do.
    if (snapshot.segments.some((r) => r.dbid === fence.dbid && r.role === 'p')) continue;
    if (decisions.some((d) => d.kind === 'fence-zombie' && d.dbid === fence.dbid)) continue;
    decisions.push({ kind: 'retry-fence', content: fence.content, dbid: fence.dbid, fence, reason: `dbid ${fence.dbid} of content ${fence.content} is owed a fence since ${fence.since}: ${fence.reason}` });
  }
  return { decisions, change: mergeChange(snapshot, decisions, now), memory };
}

/**
 * Drops what the prober remembers about a content an operator workflow holds. The
 * workflow stops, rebuilds and restarts its instances, so what was seen before the hold
 * says nothing about them after it: a mirror down since before a recovery must not be
 * marked down the moment the hold ends (its grace period starts afresh), a sync target
 * taken on a primary a rebalance replaced is meaningless, and a failover this prober
 * started was overtaken (PromoteMirror refuses a held content). Crash-recovery progress
 * and reset counts of its instances go too; the next probe after the hold starts them
 * again.
 */
function forgetContent(memory: ProberMemory, pair: ContentPair, operation: PendingOperation, now: Date): void {
  const key = String(pair.content);
  // An activation of the standby is what this prober may have started itself: it stays
  // remembered, counted from the last round the hold was seen, so a refused or failed
  // activation is started again only `failoverRetrySeconds` after it gave the content back.
  const activation = operation.kind === 'activation' ? memory.failoversStarted[key] : undefined;
  delete memory.mirrorDownSince[key];
  delete memory.mirrorDrops[key];
  delete memory.syncTarget[key];
  delete memory.failoversStarted[key];
  if (activation) memory.failoversStarted[key] = { ...activation, at: now.toISOString() };
  // What was seen of its replication says nothing about the instances after the hold.
  if (memory.replication) delete memory.replication[key];
  for (const row of [pair.primary, pair.mirror]) {
    if (!row) continue;
    delete memory.recoveryLsn[String(row.dbid)];
    delete memory.recoveryProgressAt[String(row.dbid)];
    delete memory.resets[String(row.dbid)];
  }
}

type PairWithPrimary = ContentPair & { primary: SegmentRow };

/** What every per-content rule reads. */
interface Context {
  snapshot: ClusterSnapshot;
  pair: PairWithPrimary;
  settings: Settings;
  /** The round's memory, updated in place. */
  memory: ProberMemory;
  now: Date;
}

function decideAnswer(ctx: Context, probe: ProbeAnswer): Decision[] {
  const { pair, memory } = ctx;
  const { primary, mirror, content } = pair;
  delete memory.recoveryLsn[String(primary.dbid)];
  delete memory.recoveryProgressAt[String(primary.dbid)];
  if (probe.inRecovery) {
    if (content === COORDINATOR_CONTENT) return [];
    return [promotionUnderWay(ctx) ?? promoteAgain(ctx)];
  }
  const decisions: Decision[] = [];
  const resets = countResets(ctx, probe);
  if (resets.newReset || resets.count >= ctx.settings.resetLoopThreshold) {
    const failure = resets.count >= ctx.settings.resetLoopThreshold ? resetLoop(ctx, resets.count) : undefined;
    if (failure) return [failure];
    decisions.push({
      kind: 'primary-reset',
      content,
      dbid: primary.dbid,
      resets: resets.count,
      reason: `primary dbid ${primary.dbid} of content ${content} reset after a backend crash (${resets.count} reset(s) in ${ctx.settings.resetLoopWindowSeconds} s; a failure from ${ctx.settings.resetLoopThreshold})`,
    });
  }
  if (mirror && probe.walSenderTimeoutMs !== undefined && (probe.walSenderTimeoutMs === 0 || probe.walSenderTimeoutMs > MAX_WAL_SENDER_TIMEOUT_MS)) {
    decisions.push({
      kind: 'replication-timeout-misconfigured',
      content,
      dbid: primary.dbid,
      walSenderTimeoutMs: probe.walSenderTimeoutMs,
      reason: `primary dbid ${primary.dbid} has wal_sender_timeout ${probe.walSenderTimeoutMs} ms; it must be between 1 and ${MAX_WAL_SENDER_TIMEOUT_MS} ms so that a live primary's keepalives reach its mirror within ${SECOND_OPINION_FRESH_SECONDS} s (the second opinion before a failover)`,
    });
  }
  if (primary.status === 'd') {
    const rows = [{ ...primary, status: 'u' as const }];
    return [...decisions, { kind: 'primary-back', content, dbid: primary.dbid, rows, reason: `primary dbid ${primary.dbid} of content ${content} answers again` }];
  }
  if (!mirror) {
    if (memory.replication) delete memory.replication[String(content)];
    // Nothing can acknowledge its commits: sync rep left on (a late action, a hand-made
    // setting, a standby removed) would hang every commit, while the write check (local
    // commit) still passes. Turn it off.
    if (probe.syncRepOn) {
      decisions.push({
        kind: 'sync-rep-off',
        content,
        primaryDbid: primary.dbid,
        reason: `${content === COORDINATOR_CONTENT ? 'coordinator' : 'primary'} dbid ${primary.dbid} of content ${content} has no ${content === COORDINATOR_CONTENT ? 'standby' : 'mirror'} in the catalog but waits for a synchronous standby: turning synchronous replication off`,
      });
    }
    return decisions;
  }
  const replication = decideReplication(ctx as Context & { pair: { mirror: SegmentRow } }, probe);
  if (replication) decisions.push(replication);
  if (content === COORDINATOR_CONTENT) decisions.push(...observeStandby(ctx as Context & { pair: { mirror: SegmentRow } }, probe, replication));
  return decisions;
}

/** WAL the mirror has not flushed yet (the primary's position minus the mirror's flush position), when both are known. */
export function replicationLagBytes(probe: ProbeAnswer): number | undefined {
  return probe.lsn && probe.mirror.flushLsn ? Math.max(0, lsnBytes(probe.mirror.flushLsn, probe.lsn)) : undefined;
}

/** The memory's entry about a pair, a fresh one when it was about other instances (a new standby, an activation). */
function pairEntry(memory: ProberMemory, content: number, primaryDbid: number, mirrorDbid: number): PairReplication {
  const replication = (memory.replication ??= {});
  const key = String(content);
  const entry = replication[key];
  if (entry && entry.primaryDbid === primaryDbid && entry.mirrorDbid === mirrorDbid) return entry;
  return (replication[key] = { primaryDbid, mirrorDbid });
}

/**
 * The coordinator's view of its standby: what its walsender reports is kept in the
 * memory (`ftsctl state -f` shows it), and the standby alarms: `standby-down` while the
 * standby is marked down and does not stream (from the round it is marked down),
 * `standby-lagging` while it lacks more than `standbyLagAlarmBytes` of WAL.
 */
function observeStandby(ctx: Context & { pair: { mirror: SegmentRow } }, probe: ProbeAnswer, replication: Decision | undefined): Decision[] {
  const { pair, memory, settings, now } = ctx;
  const { primary, mirror, content } = pair;
  const rep = probe.mirror;
  const lagBytes = replicationLagBytes(probe);
  pairEntry(memory, content, primary.dbid, mirror.dbid).sender = {
    at: now.toISOString(),
    state: rep.senderState ?? rep.state,
    syncState: rep.syncState,
    syncRepOn: probe.syncRepOn,
    synchronous: settings.standbySynchronous,
    ...(probe.lsn ? { primaryLsn: probe.lsn } : {}),
    ...(rep.sentLsn ? { sentLsn: rep.sentLsn } : {}),
    ...(rep.writeLsn ? { writeLsn: rep.writeLsn } : {}),
    ...(rep.flushLsn ? { flushLsn: rep.flushLsn } : {}),
    ...(rep.replayLsn ? { replayLsn: rep.replayLsn } : {}),
    ...(lagBytes !== undefined ? { lagBytes } : {}),
    ...(rep.replayLagSeconds !== undefined ? { replayLagSeconds: rep.replayLagSeconds } : {}),
  };
  const alarms: Decision[] = [];
  if (rep.state === 'absent' && (mirror.status === 'd' || replication?.kind === 'mark-mirror-down')) {
    alarms.push({
      kind: 'standby-down',
      content,
      dbid: mirror.dbid,
      reason: `standby dbid ${mirror.dbid} is down: coordinator dbid ${primary.dbid} has no walsender for it${rep.senderState ? ` (only one in state ${rep.senderState})` : ''}; the coordinator has no standby to be activated until it streams again`,
    });
  }
  if (rep.state !== 'absent' && lagBytes !== undefined && lagBytes > settings.standbyLagAlarmBytes) {
    alarms.push({
      kind: 'standby-lagging',
      content,
      dbid: mirror.dbid,
      lagBytes,
      reason: `standby dbid ${mirror.dbid} lacks ${lagBytes} bytes of coordinator dbid ${primary.dbid}'s WAL (flushed to ${rep.flushLsn}, coordinator at ${probe.lsn}), more than standbyLagAlarmBytes (${settings.standbyLagAlarmBytes})${settings.standbySynchronous ? '' : ': an activation now would lose them'}`,
    });
  }
  return alarms;
}

/**
 * Records what a read-only probe of a pair's mirror (the standby) says of its own WAL
 * receiver, for `ftsctl state -f`; a failed probe is recorded as `unreachable` with its
 * message. Returns the new memory (the given one is not changed).
 */
export function recordReceiver(memory: ProberMemory, primary: SegmentRow, mirror: SegmentRow, probe: ProbeResult, now: Date): ProberMemory {
  const next: ProberMemory = { ...memory, replication: structuredClone(memory.replication ?? {}) };
  const entry = pairEntry(next, mirror.content, primary.dbid, mirror.dbid);
  const at = now.toISOString();
  if (!probe.ok) entry.receiver = { at, state: 'unreachable', error: `${probe.kind}: ${probe.message}` };
  else if (!probe.inRecovery) entry.receiver = { at, state: 'not in recovery', error: `dbid ${mirror.dbid} answers as a primary, not as a standby` };
  else entry.receiver = { at, ...(probe.receiver ?? { state: 'absent' }) };
  return next;
}

/**
 * The mirror's replication as the primary reports it. The catalog's mode `s` means:
 * sync rep is on and the mirror has every acknowledged commit. So sync rep is on only
 * while the mirror is connected and at most `catchUpLagBytes` behind; a mirror further
 * behind is marked `n` first and then sync rep goes off, so commits never wait for a
 * long catch-up; and `s` is written only once the mirror has flushed past the primary's
 * position at the moment sync rep was seen in effect (gpdb #13891).
 */
function decideReplication(ctx: Context & { pair: { mirror: SegmentRow } }, probe: ProbeAnswer): Decision | undefined {
  const { pair, memory, settings } = ctx;
  const { primary, mirror, content } = pair as PairWithPrimary & { mirror: SegmentRow };
  const key = String(content);
  const rep = probe.mirror;
  if (rep.state === 'absent') {
    delete memory.syncTarget[key];
    return decideMirrorAbsent(ctx, probe);
  }
  // The mirror is connected: whatever the grace period counted is over.
  delete memory.mirrorDownSince[key];
  if (content === COORDINATOR_CONTENT && !settings.standbySynchronous) return decideAsynchronousStandby(ctx, probe);
  const lag = probe.lsn && rep.flushLsn ? lsnBytes(rep.flushLsn, probe.lsn) : undefined;
  const close = lag !== undefined && lag <= settings.catchUpLagBytes;
  const pairInSync = primary.mode === 's' && mirror.mode === 's' && mirror.status === 'u';
  const catchingUp = (syncRepOff: boolean, why: string): Decision | undefined => {
    if (!syncRepOff && primary.mode === 'n' && mirror.mode === 'n' && mirror.status === 'u') return undefined;
    return {
      kind: 'mark-catching-up',
      content,
      primaryDbid: primary.dbid,
      syncRepOff,
      rows: [{ ...primary, mode: 'n' }, { ...mirror, status: 'u', mode: 'n' }],
      reason: `mirror dbid ${mirror.dbid} of content ${content} is up and catching up (${rep.state}, ${rep.syncState}${lag !== undefined ? `, ${lag} bytes behind` : ''})${why}`,
    };
  };
  if (probe.syncRepOn) {
    // Only a walsender still catching up is a catch-up: a streaming synchronous mirror
    // under heavy writes lags by the WAL in flight, and dropping sync rep then would
    // give up protection for nothing.
    if (rep.state === 'catchup' && lag !== undefined && !close) {
      delete memory.syncTarget[key];
      return catchingUp(true, `: more than ${settings.catchUpLagBytes} bytes behind, synchronous replication off while it catches up`);
    }
    if (!(rep.state === 'streaming' && rep.syncState === 'sync')) return undefined; // a short catch-up: commits wait at most for it
    if (pairInSync) {
      delete memory.syncTarget[key];
      return undefined;
    }
    // Once sync rep is in effect (the checkpointer has applied it: from then on commits
    // wait), the mirror that has flushed what the primary had then has every acknowledged commit.
    const target = memory.syncTarget[key];
    if (!target || !probe.lsn) {
      if (probe.lsn && probe.syncRepSettled === true) memory.syncTarget[key] = probe.lsn;
      return undefined;
    }
    if (!rep.flushLsn || compareLsn(rep.flushLsn, target) < 0) return undefined;
    delete memory.syncTarget[key];
    return {
      kind: 'mark-in-sync',
      content,
      rows: [{ ...primary, mode: 's' }, { ...mirror, status: 'u', mode: 's' }],
      reason: `mirror dbid ${mirror.dbid} of content ${content} is streaming and in sync (flushed to ${rep.flushLsn}, past ${target})`,
    };
  }
  delete memory.syncTarget[key];
  // Sync rep is off: the catalog must not say in sync.
  if (primary.mode === 's' || mirror.mode === 's') return catchingUp(false, ': synchronous replication is off');
  if (rep.state === 'streaming' && close) {
    return {
      kind: 'sync-rep-on',
      content,
      primaryDbid: primary.dbid,
      mirrorDbid: mirror.dbid,
      reason: `mirror dbid ${mirror.dbid} of content ${content} has caught up (${lag} bytes behind): turning synchronous replication back on`,
    };
  }
  return catchingUp(false, '');
}

/**
 * The coordinator's standby in asynchronous mode (`standbySynchronous` false, Greenplum's
 * default): it is never marked `s` (it may lack acknowledged commits), sync rep stays off
 * (turned off when found on), and a streaming standby is `u`. Down is decided as for any
 * mirror, with the same grace period.
 */
function decideAsynchronousStandby(ctx: Context & { pair: { mirror: SegmentRow } }, probe: ProbeAnswer): Decision | undefined {
  const { pair, memory } = ctx;
  const { primary, mirror, content } = pair as PairWithPrimary & { mirror: SegmentRow };
  delete memory.syncTarget[String(content)];
  const rep = probe.mirror;
  const lag = replicationLagBytes(probe);
  const how = `(${rep.state}, ${rep.syncState}${lag !== undefined ? `, ${lag} bytes behind` : ''})`;
  if (primary.mode === 's' || mirror.mode === 's' || mirror.status === 'd') {
    return {
      kind: 'mark-catching-up',
      content,
      primaryDbid: primary.dbid,
      syncRepOff: probe.syncRepOn,
      rows: [{ ...primary, mode: 'n' }, { ...mirror, status: 'u', mode: 'n' }],
      reason: `standby dbid ${mirror.dbid} streams from coordinator dbid ${primary.dbid} asynchronously ${how}: up, not in sync (standbySynchronous is off)${probe.syncRepOn ? ', synchronous replication off' : ''}`,
    };
  }
  if (!probe.syncRepOn) return undefined;
  return {
    kind: 'sync-rep-off',
    content,
    primaryDbid: primary.dbid,
    reason: `coordinator dbid ${primary.dbid} waits for standby dbid ${mirror.dbid} but standbySynchronous is off: turning synchronous replication off`,
  };
}

function decideMirrorAbsent(ctx: Context, probe: ProbeAnswer): Decision | undefined {
  const { memory, settings, now } = ctx;
  const { primary, mirror, content } = ctx.pair as PairWithPrimary & { mirror: SegmentRow };
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

function decideFailure(ctx: Context, probe: ProbeFailure): Decision[] {
  const { pair, memory } = ctx;
  const { primary, content } = pair;
  const dbidKey = String(primary.dbid);
  if (probe.kind === 'authentication') {
    return [{ kind: 'probe-misconfigured', content, dbid: primary.dbid, reason: `dbid ${primary.dbid} rejected the prober's credentials: ${probe.message}; not a failure` }];
  }
  if (probe.kind === 'wrong-instance') {
    return [{ kind: 'wrong-instance', content, dbid: primary.dbid, reason: `the instance at the address of dbid ${primary.dbid} of content ${content} is not that instance: ${probe.message}; nothing is done to it` }];
  }
  if (probe.kind === 'too-many-connections') {
    return [{ kind: 'too-many-connections', content, dbid: primary.dbid, reason: `primary dbid ${primary.dbid} of content ${content} is out of connection slots (${probe.message}): alive, not a failure` }];
  }
  const resets = memory.resets[dbidKey];
  const resetLooping = (resets ? pruneResets(ctx, resets.seenAt).length : 0) >= ctx.settings.resetLoopThreshold;
  if ((probe.kind === 'in-recovery' || probe.kind === 'starting-up') && !resetLooping) {
    const last = memory.recoveryLsn[dbidKey];
    const progressed = probe.recoveryLsn !== undefined && (!last || compareLsn(probe.recoveryLsn, last) > 0);
    if (probe.recoveryLsn) memory.recoveryLsn[dbidKey] = probe.recoveryLsn;
    if (progressed || !memory.recoveryProgressAt[dbidKey]) memory.recoveryProgressAt[dbidKey] = ctx.now.toISOString();
    const still = seconds(memory.recoveryProgressAt[dbidKey], ctx.now);
    if (progressed || still < ctx.settings.crashRecoveryGraceSeconds) {
      const where = probe.recoveryLsn ? `replaying (at ${probe.recoveryLsn}${last && last !== probe.recoveryLsn ? `, was ${last}` : ''})` : 'starting up (no replay position yet)';
      return [
        {
          kind: 'recovery-in-progress',
          content,
          dbid: primary.dbid,
          lsn: probe.recoveryLsn ?? 'unknown',
          reason: `primary dbid ${primary.dbid} of content ${content} is in crash recovery and ${where}${progressed ? '' : `, no progress for ${still.toFixed(1)} s of the ${ctx.settings.crashRecoveryGraceSeconds} s allowed`}: not a failure`,
        },
      ];
    }
  }
  delete memory.recoveryLsn[dbidKey];
  delete memory.recoveryProgressAt[dbidKey];
  const why = `${probe.kind} after ${probe.attempts} attempt(s): ${probe.message}`;
  const failure: FailureKind = probe.kind === 'disk' ? 'disk' : resetLooping ? 'reset-loop' : 'unreachable';
  if (content === COORDINATOR_CONTENT) return [coordinatorFailed(ctx, failure, why)];
  if (primary.status === 'd') return []; // already marked unavailable, history written once
  return [failOver(ctx, failure, why)];
}

/**
 * A failed coordinator: ActivateStandby is started only when `autoActivateStandby` is on,
 * the standby replicates synchronously and the pair is in sync (`s`, standby up), and no
 * activation this prober started is younger than `failoverRetrySeconds`; otherwise an
 * alarm whose reason says why not. The workflow confirms the failure with the standby's
 * second opinion and fences the coordinator before it activates anything.
 */
function coordinatorFailed(ctx: Context, failure: FailureKind, why: string): Decision {
  const { pair, memory, settings, now } = ctx;
  const { primary, mirror, content } = pair;
  const failed = `coordinator dbid ${primary.dbid} failed (${why})`;
  const unreachable = (because: string): Decision => ({ kind: 'coordinator-unreachable', content, dbid: primary.dbid, reason: `${failed}; ${because}` });
  if (!settings.autoActivateStandby) return unreachable('the standby is not activated automatically (autoActivateStandby is off): activating it is a decision for a person');
  if (!settings.standbySynchronous) return unreachable('the standby replicates asynchronously (standbySynchronous is off) and may lack acknowledged commits: it is never activated automatically');
  if (!mirror) return unreachable('there is no standby to activate');
  if (!(mirror.status === 'u' && mirror.mode === 's' && primary.mode === 's')) {
    return unreachable(`standby dbid ${mirror.dbid} is ${mirror.status}/${mirror.mode}, not up and in sync (it may lack acknowledged commits): not activated automatically`);
  }
  const key = String(content);
  const started = memory.failoversStarted[key];
  if (started && started.failedPrimaryDbid === primary.dbid && seconds(started.at, now) < settings.failoverRetrySeconds) {
    return unreachable(`an activation of standby dbid ${mirror.dbid} (attempt ${started.attempt}) started ${seconds(started.at, now).toFixed(1)} s ago is still under way`);
  }
  const attempt = nextAttempt(ctx, primary.dbid);
  memory.failoversStarted[key] = attempt;
  return {
    kind: 'activate-standby',
    content,
    failedCoordinatorDbid: primary.dbid,
    standbyDbid: mirror.dbid,
    failure,
    attempt,
    reason: `${failed}; its standby dbid ${mirror.dbid} is in sync: starting ActivateStandby (autoActivateStandby; it confirms the failure and fences the coordinator first)${attempt.attempt > 1 ? ` (attempt ${attempt.attempt})` : ''}`,
  };
}

/** A failed primary: fail over to an in-sync mirror, else the content is unavailable. */
function failOver(ctx: Context, failure: FailureKind, why: string): Decision {
  const { pair, memory } = ctx;
  const { primary, mirror, content } = pair;
  if (content === COORDINATOR_CONTENT) return coordinatorFailed(ctx, failure, why);
  const pending = promotionUnderWay(ctx);
  if (pending) return pending;
  if (mirror && mirror.status === 'u' && mirror.mode === 's' && primary.mode === 's') {
    const attempt = nextAttempt(ctx, primary.dbid);
    memory.failoversStarted[String(content)] = attempt;
    return {
      kind: 'fail-over',
      content,
      failedPrimaryDbid: primary.dbid,
      mirrorDbid: mirror.dbid,
      failure,
      attempt,
      reason: `primary dbid ${primary.dbid} of content ${content} failed (${why}); its mirror dbid ${mirror.dbid} is in sync: promoting it${attempt.attempt > 1 ? ` (attempt ${attempt.attempt})` : ''}`,
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

/** A primary past the reset threshold: a failure when its mirror is in sync, else an alarm. */
function resetLoop(ctx: Context, count: number): Decision {
  const { primary, mirror, content } = ctx.pair;
  const why = `reset ${count} times in ${ctx.settings.resetLoopWindowSeconds} s (threshold ${ctx.settings.resetLoopThreshold})`;
  if (mirror && mirror.status === 'u' && mirror.mode === 's' && primary.mode === 's') return failOver(ctx, 'reset-loop', why);
  return { kind: 'reset-loop', content, dbid: primary.dbid, resets: count, reason: `primary dbid ${primary.dbid} of content ${content} ${why}, but its mirror is not in sync: not failing over` };
}

/** Reset times still inside the window. */
function pruneResets(ctx: Context, seenAt: readonly string[]): string[] {
  return seenAt.filter((t) => seconds(t, ctx.now) < ctx.settings.resetLoopWindowSeconds);
}

/**
 * Counts crash resets of the primary's postmaster: a new `initializedAt` later than its
 * start is a reset. The first sighting of an instance counts only a recent reset.
 */
function countResets(ctx: Context, probe: ProbeAnswer): { count: number; newReset: boolean } {
  const key = String(probe.dbid);
  const known = ctx.memory.resets[key];
  const { initializedAt, startedAt } = probe;
  let seenAt = known ? pruneResets(ctx, known.seenAt) : [];
  let newReset = false;
  if (initializedAt && startedAt && Date.parse(initializedAt) - Date.parse(startedAt) > 1000 && initializedAt !== known?.initializedAt) {
    newReset = known !== undefined || seconds(initializedAt, ctx.now) < ctx.settings.resetLoopWindowSeconds;
    if (newReset) seenAt = [...seenAt, ctx.now.toISOString()];
  }
  if (initializedAt) ctx.memory.resets[key] = { initializedAt, seenAt };
  else if (known) ctx.memory.resets[key] = { ...known, seenAt };
  if (ctx.memory.resets[key] && !ctx.memory.resets[key].seenAt.length && !initializedAt) delete ctx.memory.resets[key];
  return { count: seenAt.length, newReset };
}

/** The attempt a new failover of the pair makes: a retry of the same episode counts up, a new episode starts at 1. */
function nextAttempt(ctx: Context, failedPrimaryDbid: number): FailoverAttempt {
  const last = ctx.memory.failoversStarted[String(ctx.pair.content)];
  const attempt = last && last.version === ctx.snapshot.version && last.failedPrimaryDbid === failedPrimaryDbid ? last.attempt + 1 : 1;
  return { failedPrimaryDbid, version: ctx.snapshot.version, attempt, at: ctx.now.toISOString() };
}

/** The acting primary is in recovery (a promotion did not land): record the intent if missing, then run PromoteMirror again. */
function promoteAgain(ctx: Context): Decision {
  const { snapshot, pair, memory, now } = ctx;
  const { primary, content } = pair;
  const marker = snapshot.pendingPromotions.find((p) => p.content === content && p.mirrorDbid === primary.dbid);
  const failed = marker?.failedPrimaryDbid ?? pair.mirror?.dbid ?? primary.dbid;
  const attempt = nextAttempt(ctx, primary.dbid);
  memory.failoversStarted[String(content)] = attempt;
  // Without a recorded promotion nobody fenced the other row: it may be the writable primary
  // the acting one follows. It is fenced before the promotion, like an old primary.
  const other = pair.mirror;
  const fence: PendingFence | undefined =
    !marker && other && !snapshot.pendingFences?.some((f) => f.dbid === other.dbid)
      ? { dbid: other.dbid, content, newPrimaryDbid: primary.dbid, since: now.toISOString(), reason: `promoting dbid ${primary.dbid} again` }
      : undefined;
  return {
    kind: 'promote-again',
    content,
    dbid: primary.dbid,
    failedPrimaryDbid: failed,
    attempt,
    ...(marker ? {} : { pending: { content, mirrorDbid: primary.dbid, failedPrimaryDbid: failed, version: snapshot.version + 1, startedAt: now.toISOString() } }),
    ...(fence ? { fence } : {}),
    reason: `acting primary dbid ${primary.dbid} of content ${content} reports itself as a mirror: the earlier promotion did not land, promoting again`,
  };
}

/**
 * A promotion for the pair already under way: a pending marker younger than
 * `promotionStaleSeconds`, or a failover this prober started less than
 * `failoverRetrySeconds` ago.
 */
function promotionUnderWay(ctx: Context): Decision | undefined {
  const { snapshot, pair, memory, now, settings } = ctx;
  const pending = snapshot.pendingPromotions.find((p) => p.content === pair.content);
  const started = memory.failoversStarted[String(pair.content)];
  const since = pending
    ? seconds(pending.startedAt, now) < settings.promotionStaleSeconds && pending.startedAt
    : started?.failedPrimaryDbid === pair.primary.dbid && seconds(started.at, now) < settings.failoverRetrySeconds && started.at;
  // A pending marker restarted after it went stale counts from the restart.
  const restarted = pending && started && started.version >= pending.version && seconds(started.at, now) < settings.promotionStaleSeconds ? started.at : undefined;
  const from = restarted ?? since;
  if (!from) return undefined;
  return {
    kind: 'promotion-pending',
    content: pair.content,
    dbid: pair.primary.dbid,
    reason: `a promotion for content ${pair.content} started ${seconds(from, now).toFixed(1)} s ago is still under way`,
  };
}

/** A row marked down that answers: a zombie when it is writable (not in recovery). */
function decideDownRow(ctx: Context, probe: ProbeResult): Decision[] {
  const { snapshot, pair, now } = ctx;
  const row = pair.mirror!;
  // While its promotion runs, the workflow fences the old primary it owes a fence to.
  const owedByWorkflow = snapshot.pendingPromotions.some((p) => p.content === pair.content) && snapshot.pendingFences?.some((f) => f.dbid === row.dbid);
  if (owedByWorkflow) return [];
  if (!probe.ok) {
    if (probe.kind !== 'wrong-instance') return [];
    return [{ kind: 'wrong-instance', content: pair.content, dbid: row.dbid, reason: `the instance at the address of dbid ${row.dbid} of content ${pair.content} is not that instance: ${probe.message}; nothing is done to it` }];
  }
  if (probe.inRecovery) return [];
  const reason = `dbid ${row.dbid} of content ${pair.content} is marked down but answers as a writable primary beside acting primary dbid ${pair.primary.dbid}: fencing it`;
  const fence: PendingFence = snapshot.pendingFences?.find((f) => f.dbid === row.dbid) ?? {
    dbid: row.dbid,
    content: pair.content,
    newPrimaryDbid: pair.primary.dbid,
    since: now.toISOString(),
    reason: 'answered as a writable primary while marked down',
  };
  return [{ kind: 'fence-zombie', content: pair.content, dbid: row.dbid, fence, reason, history: `FTS: dbid ${row.dbid} with contentid ${pair.content} answered as a writable primary while marked down (a second primary beside dbid ${pair.primary.dbid}): fenced` }];
}

function mergeChange(snapshot: ClusterSnapshot, decisions: readonly Decision[], now: Date): CatalogChange | null {
  const rows: SegmentRow[] = [];
  const history: HistoryRow[] = [];
  const setPending: PendingPromotion[] = [];
  const setFences: PendingFence[] = [];
  const time = now.toISOString();
  for (const d of decisions) {
    if (d.kind === 'fence-zombie') {
      history.push({ time, dbid: d.dbid, description: d.history });
      if (!snapshot.pendingFences?.some((f) => f.dbid === d.dbid)) setFences.push(d.fence);
    }
    if (d.kind === 'promote-again' && d.pending) setPending.push(d.pending);
    if (d.kind === 'promote-again' && d.fence) setFences.push(d.fence);
    if (!('rows' in d)) continue;
    for (const row of d.rows) {
      const old = snapshot.segments.find((r) => r.dbid === row.dbid);
      if (old && old.role === row.role && old.status === row.status && old.mode === row.mode) continue; // only changed rows
      rows.push(row);
      history.push({ time, dbid: row.dbid, description: historyText(row, d.reason) });
    }
  }
  const status = clusterStatusOf(applyRows(snapshot.segments, { rows }));
  if (!rows.length && !history.length && !setPending.length && !setFences.length && status === snapshot.status) return null;
  return {
    rows,
    history,
    ...(status !== snapshot.status ? { status } : {}),
    ...(setPending.length ? { setPending } : {}),
    ...(setFences.length ? { setFences } : {}),
  };
}

/**
 * The catalog flip of a failover (what PromoteMirror writes, catalog first): the failed
 * primary becomes a down mirror, the in-sync mirror the acting primary, both mode `n`,
 * a history row each, the pending promotion marker and (unless `fenced`: the workflow
 * fenced it just before) the fence owed to the old primary. Throws MirrorNotPromotableError
 * when the pair is not eligible, so an out-of-sync mirror is never promoted, and
 * ContentBusyError when a live operation holds the content at `now` (a PromoteMirror
 * started just before a rebalance or recovery took the content must not flip it).
 */
export function planFailover(
  snapshot: ClusterSnapshot,
  content: number,
  failedPrimaryDbid: number,
  mirrorDbid: number,
  now: Date,
  options: { fenced?: boolean } = {},
): CatalogChange {
  const operation = liveOperation(snapshot, content, now);
  if (operation) throw new ContentBusyError(`content ${content} is held by ${describeOperation(operation)}: it is not failed over`);
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
  const fence: PendingFence = { dbid: primary.dbid, content, newPrimaryDbid: mirror.dbid, since: time, reason: `failed over to dbid ${mirror.dbid}` };
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
    // The old primary stays owed a fence unless it was just fenced: the prober carries it
    // out when its host answers.
    ...(options.fenced ? {} : { setFences: [fence] }),
  };
}
