/**
 * How far crash recovery has come on an instance of this machine. PostgreSQL refuses
 * connections while it replays WAL (57P03) and, unlike Greenplum's patched postmaster,
 * does not say where it is; its startup process does, in its process title
 * (`postgres: startup recovering 000000010000000000000003`). The WAL file being
 * replayed gives the LSN at its start: progress is seen at WAL-segment granularity, and
 * only once replay has begun. Before that (the postmaster's reset after a crash, the sync
 * of the data directory) there is no LSN, and the probe counts as failed as usual.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { SegmentRow } from '../../core/model';
import { postmasterPid } from './host';

/** PostgreSQL's default WAL segment size (initdb --wal-segsize 16). */
export const DEFAULT_WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

/** LSN (`X/Y`) at the start of a WAL file named `TTTTTTTTXXXXXXXXYYYYYYYY`; undefined if the name is not one. */
export function walFileStartLsn(walFile: string, segmentBytes = DEFAULT_WAL_SEGMENT_BYTES): string | undefined {
  const m = /^[0-9A-F]{8}([0-9A-F]{8})([0-9A-F]{8})$/i.exec(walFile);
  if (!m) return undefined;
  const segmentsPerXlogId = 0x1_0000_0000n / BigInt(segmentBytes);
  const segno = BigInt(`0x${m[1]}`) * segmentsPerXlogId + BigInt(`0x${m[2]}`);
  const lsn = segno * BigInt(segmentBytes);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/**
 * The instance's startup process while it recovers, and the WAL file it replays (absent
 * before replay begins, e.g. while it syncs the data directory after a crash).
 */
export function startupProcess(datadir: string): { pid: number; walFile?: string } | undefined {
  const postmaster = postmasterPid(datadir);
  if (postmaster === undefined) return undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== postmaster) continue;
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const m = /startup(?:\s+recovering\s+([0-9A-F]{24}))?/i.exec(title);
      if (m) return { pid: Number(entry), walFile: m[1] };
    } catch {
      // The process ended meanwhile.
    }
  }
  return undefined;
}

/**
 * The LSN crash recovery of a local instance has reached (start of the WAL file it
 * replays), or undefined when it is not recovering. For `PgSegmentProbe`'s
 * `recoveryProgress` option in local mode.
 */
export async function localRecoveryProgress(segment: SegmentRow): Promise<string | undefined> {
  const walFile = startupProcess(segment.datadir)?.walFile;
  return walFile ? walFileStartLsn(walFile) : undefined;
}
