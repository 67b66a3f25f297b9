/** `gpstate`-style text for the catalog and its history. */
import type { ClusterSnapshot, HistoryRow, SegmentRow } from '../lambdas/core/model';
import { COORDINATOR_CONTENT, pairsByContent } from '../lambdas/core/model';

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
  /** -f: coordinator and standby. */
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
  return [...head, '', body].join('\n');
}

/** The `ftsctl history` text. */
export function formatHistory(history: readonly HistoryRow[]): string {
  return history.length ? table(['time', 'dbid', 'description'], history.map((h) => [h.time, h.dbid, h.description])) : '(no history)';
}
