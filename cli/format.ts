/** `gpstate`-style text for the catalog and its history. */
import type { ClusterSnapshot, HistoryRow, PairReplication, SegmentRow } from '../lambdas/core/model';
import { COORDINATOR_CONTENT, lsnBytes, pairsByContent } from '../lambdas/core/model';

/** Renders rows as an aligned text table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

const roleName = (r: SegmentRow): string =>
  r.content === COORDINATOR_CONTENT ? (r.role === 'p' ? 'Coordinator' : 'Standby') : r.role === 'p' ? 'Primary' : 'Mirror';
const statusName = (r: SegmentRow): string => (r.status === 'u' ? 'Up' : 'Down');
const modeName = (r: SegmentRow): string => (r.mode === 's' ? 'Synced' : 'Not Syncing');

/** Which view of `ftsctl state` to print (gpstate's flags). */
export interface StateView {
  /** -e: only segments with problems (down, not in sync, not in preferred role). */
  errors?: boolean;
  /** -m: mirrors only. */
  mirrors?: boolean;
  /** -c: primary to mirror mapping. */
  mapping?: boolean;
  /** -f: coordinator and standby, and the standby's replication as the prober last saw it (`gpstate -f`). */
  standby?: boolean;
}

/** A problem gpstate -e would list, or undefined. */
export function segmentProblem(r: SegmentRow): string | undefined {
  if (r.status === 'd') return 'down';
  if (r.role !== r.preferredRole) return 'not in preferred role';
  if (r.mode === 'n' && r.content !== COORDINATOR_CONTENT) return 'not in sync';
  return undefined;
}

/** The `ftsctl state` text. */
export function formatState(snapshot: ClusterSnapshot, view: StateView = {}): string {
  const head = [
    `Cluster ${snapshot.clusterId}: ${snapshot.status.toUpperCase()}   catalog version ${snapshot.version}`,
    ...snapshot.pendingPromotions.map((p) => `  pending promotion: content ${p.content} -> dbid ${p.mirrorDbid} (since ${p.startedAt})`),
    ...snapshot.pendingFences.map((f) => `  fence owed: dbid ${f.dbid} of content ${f.content} (since ${f.since}: ${f.reason})`),
    ...(snapshot.pendingOperations ?? []).map((o) => `  held by ${o.kind}: content ${o.content}, execution ${o.execution} (since ${o.since}, lapses ${o.expiresAt} unless renewed)`),
  ];
  if (view.mapping) {
    const rows = pairsByContent(snapshot.segments)
      .filter((p) => p.content !== COORDINATOR_CONTENT)
      .map((p) => [p.content, p.primary ? `${p.primary.hostname}:${p.primary.port}` : '-', p.primary?.dbid ?? '-', p.mirror ? `${p.mirror.hostname}:${p.mirror.port}` : '-', p.mirror?.dbid ?? '-']);
    return [...head, '', table(['content', 'primary', 'dbid', 'mirror', 'dbid'], rows)].join('\n');
  }
  let rows = snapshot.segments;
  if (view.standby) rows = rows.filter((r) => r.content === COORDINATOR_CONTENT);
  if (view.mirrors) rows = rows.filter((r) => r.role === 'm');
  if (view.errors) rows = rows.filter((r) => segmentProblem(r));
  const body = rows.length
    ? table(
        ['content', 'dbid', 'role', 'preferred', 'status', 'mode', 'host', 'address:port', 'datadir', ...(view.errors ? ['problem'] : [])],
        rows.map((r) => [r.content, r.dbid, roleName(r), r.preferredRole === 'p' ? 'primary' : 'mirror', statusName(r), modeName(r), r.hostname, `${r.address}:${r.port}`, r.datadir, ...(view.errors ? [segmentProblem(r) ?? ''] : [])]),
      )
    : view.errors
      ? 'All segments are running normally'
      : '(no segments)';
  return [...head, '', body, ...(view.standby ? ['', ...standbyReplication(snapshot)] : [])].join('\n');
}

/** `key = value` lines with the keys aligned, as gpstate prints them. */
const details = (lines: [string, string][]): string[] => {
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `   ${k.padEnd(width)} = ${v}`);
};

const lagSeconds = (s: number): string => (s < 10 ? s.toFixed(3) : s.toFixed(1));

/**
 * The "Standby replication" block of `ftsctl state -f`: what the prober last saw of the
 * coordinator's walsender for its standby (gpstate -f's pg_stat_replication part) and of
 * the standby's WAL receiver, from the prober's memory (no connection to the instances).
 * In asynchronous mode it says how much WAL an activation now would lose.
 */
function standbyReplication(snapshot: ClusterSnapshot): string[] {
  const pair = pairsByContent(snapshot.segments).find((p) => p.content === COORDINATOR_CONTENT);
  if (!pair?.primary) return ['No coordinator in the catalog'];
  if (!pair.mirror) return ['Standby: not configured'];
  const title = `Standby replication (coordinator dbid ${pair.primary.dbid} -> standby dbid ${pair.mirror.dbid}), as the prober last saw it`;
  const seen: PairReplication | undefined = snapshot.memory.replication?.[String(COORDINATOR_CONTENT)];
  if (!seen || seen.primaryDbid !== pair.primary.dbid || seen.mirrorDbid !== pair.mirror.dbid) {
    return [title, '   not observed yet: the prober records it each round the coordinator answers'];
  }
  const lines: [string, string][] = [];
  const { sender, receiver } = seen;
  if (sender) {
    const streams = sender.state === 'streaming' || sender.state === 'catchup';
    lines.push(
      ['Replication', sender.synchronous ? 'synchronous (standbySynchronous): the coordinator waits for the standby while the pair is Synced' : 'asynchronous (standbySynchronous is off)'],
      ['Observed at coordinator', sender.at],
      ['WAL sender state', sender.state],
      ['Sync state', sender.syncState],
      ['Synchronous replication', sender.syncRepOn ? 'on' : 'off'],
      ['Coordinator location', sender.primaryLsn ?? '-'],
      ['Sent location', sender.sentLsn ?? '-'],
      ['Write location', sender.writeLsn ?? '-'],
      ['Flush location', sender.flushLsn ?? '-'],
      ['Replay location', sender.replayLsn ?? '-'],
      ['Lag', streams && sender.lagBytes !== undefined ? `${sender.lagBytes} bytes not flushed${sender.replayLagSeconds !== undefined ? `, replay lag ${lagSeconds(sender.replayLagSeconds)} s` : ''}` : '-'],
    );
    if (!sender.synchronous) lines.push(['Activation now would lose', activationLoss(sender, receiver)]);
  } else {
    lines.push(['WAL sender state', 'not observed (the coordinator has not answered this prober yet)']);
  }
  if (receiver) {
    const receiverText = receiver.error
      ? `${receiver.state}: ${receiver.error}`
      : [
          receiver.state,
          receiver.receivedLsn ? `received to ${receiver.receivedLsn}` : undefined,
          receiver.replayLsn ? `replayed to ${receiver.replayLsn}` : undefined,
          receiver.heardSecondsAgo !== undefined ? `heard from the coordinator ${lagSeconds(receiver.heardSecondsAgo)} s earlier` : undefined,
        ]
          .filter((x) => x !== undefined)
          .join(', ');
    lines.push(['Standby WAL receiver', receiverText], ['Observed at standby', receiver.at]);
  } else {
    lines.push(['Standby WAL receiver', 'not observed yet']);
  }
  return [title, ...details(lines)];
}

/** WAL the standby lacks, as an asynchronous activation now would lose it. */
function activationLoss(sender: NonNullable<PairReplication['sender']>, receiver: PairReplication['receiver']): string {
  if ((sender.state === 'streaming' || sender.state === 'catchup') && sender.lagBytes !== undefined) {
    return `${sender.lagBytes} bytes of WAL (coordinator at ${sender.primaryLsn}, standby flushed to ${sender.flushLsn}, at ${sender.at})`;
  }
  if (sender.primaryLsn && receiver?.receivedLsn) {
    return `at least ${Math.max(0, lsnBytes(receiver.receivedLsn, sender.primaryLsn))} bytes of WAL: the standby does not stream (received to ${receiver.receivedLsn}, coordinator at ${sender.primaryLsn})`;
  }
  return 'unknown: the standby does not stream';
}

/** The `ftsctl history` text. */
export function formatHistory(history: readonly HistoryRow[]): string {
  return history.length ? table(['time', 'dbid', 'description'], history.map((h) => [h.time, h.dbid, h.description])) : '(no history)';
}
