/**
 * Background rebuilds (SegmentHost.startRebuild, jobStatus, cancelJob) and stop reports
 * of LocalSegmentHost against a real PostgreSQL pair: the same rebuild script SSM sends,
 * run as a detached job. A base backup is slowed down where needed by pausing the
 * primary's walsender that serves it (SIGSTOP/SIGCONT), so a copy of a few hundred MB can
 * be caught in the middle on any machine.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SegmentRow } from '../../lambdas/core/model';
import type { HostJob, HostJobStatus } from '../../lambdas/ports/segments';
import { killInstance } from '../../lambdas/adapters/local/host';
import { runPgBinary } from '../../lambdas/adapters/local/postgres-binaries';
import { rebuildStateFiles, REBUILD_STATE_DIR } from '../../lambdas/adapters/aws/shell';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';

jest.setTimeout(120_000);

let pair: PgPair;
/** The acting primary and mirror: they swap when the old primary is rewound. */
let P: SegmentRow;
let M: SegmentRow;
/** Every job started here: cancelled in afterAll, whatever happened. */
const jobs: HostJob[] = [];
/** Walsenders paused by a throttle: continued in afterAll. */
const paused = new Set<number>();
/** Stops of running throttles. */
const throttles = new Set<() => Promise<void>>();

beforeAll(async () => {
  pair = await createPair({ syncRep: false });
  P = pair.primary;
  M = pair.mirror!;
  // About 250 MB: a copy of a second or more at full speed, of seconds when slowed down.
  await pair.query(P, "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 24) AS t FROM generate_series(1, 250000) g");
});

afterAll(async () => {
  for (const stop of throttles) await stop();
  for (const pid of paused) signal(pid, 'SIGCONT');
  for (const job of jobs) await pair?.host.cancelJob(job).catch(() => undefined);
  await pair?.destroy();
});

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

async function startRebuild(mirror: SegmentRow, primary: SegmentRow, method: 'rewind' | 'basebackup'): Promise<HostJob> {
  const job = await pair.host.startRebuild(mirror, primary, method);
  jobs.push(job);
  return job;
}

/** Polls a job until it is over; returns its last status and every progress seen while it ran. */
async function finish(job: HostJob, timeoutMs = 60_000): Promise<{ status: HostJobStatus; progressSeen: NonNullable<HostJobStatus['progress']>[] }> {
  const progressSeen: NonNullable<HostJobStatus['progress']>[] = [];
  const status = await waitFor(
    `job ${job.id} to end`,
    async () => {
      const s = await pair.host.jobStatus(job);
      if (s.state === 'running' && s.progress) progressSeen.push(s.progress);
      return s.state === 'running' ? undefined : s;
    },
    timeoutMs,
    50,
  );
  return { status, progressSeen };
}

/** Live (not zombie) processes of a process group. */
function groupMembers(pgid: number): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X';
      } catch {
        return false;
      }
    })
    .map(Number);
}

const jobPid = (job: HostJob): number => Number(readFileSync(join(job.id, 'pid'), 'utf8').trim().split(' ')[0]);

/** The primary's walsender serving a base backup, once it streams the data files. */
const backupSender = (primary: SegmentRow): Promise<number> =>
  waitFor(
    'the base backup to stream data files',
    async () => {
      const rows = await pair.query<{ pid: number }>(primary, "SELECT pid FROM pg_stat_progress_basebackup WHERE phase = 'streaming database files'");
      return rows[0]?.pid;
    },
    30_000,
    10,
  );

/** Lets the walsender run 40 ms of every 200 ms until the returned stop is awaited. */
function throttle(pid: number): () => Promise<void> {
  let on = true;
  paused.add(pid);
  const loop = (async () => {
    while (on) {
      signal(pid, 'SIGSTOP');
      await sleep(160);
      signal(pid, 'SIGCONT');
      await sleep(40);
    }
  })();
  const stop = async (): Promise<void> => {
    on = false;
    await loop;
    signal(pid, 'SIGCONT');
    paused.delete(pid);
    throttles.delete(stop);
  };
  throttles.add(stop);
  return stop;
}

/**
 * Slows both ends of a job's pg_basebackup (the client in the job's process group and the
 * primary's walsender), so that a test catches the copy in its middle even on a busy
 * machine; the returned function lets them run at full speed again.
 */
async function slowDown(job: HostJob): Promise<() => Promise<void>> {
  const client = await waitFor(
    'pg_basebackup in the job',
    async () =>
      groupMembers(jobPid(job)).find((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0].endsWith('pg_basebackup');
        } catch {
          return false;
        }
      }),
    30_000,
    5,
  );
  const stopClient = throttle(client);
  const stopSender = throttle(await backupSender(P));
  return async () => {
    await stopClient();
    await stopSender();
  };
}

/** Every file under `dir`, relative, sorted. */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? [`${prefix}${e.name}/`, ...tree(join(dir, e.name), `${prefix}${e.name}/`)] : [`${prefix}${e.name}`]))
    .sort();
}

const lsnAtLeast = async (on: SegmentRow, a: string, b: string): Promise<boolean> =>
  (await pair.query<{ ok: boolean }>(on, 'SELECT $1::pg_lsn >= $2::pg_lsn AS ok', [a, b]))[0].ok;

describe('stop reports what pg_controldata says after the stop', () => {
  test('a mirror, stopped twice; a primary stopped fast (its mirror received WAL past that checkpoint), then immediate', async () => {
    const first = await pair.host.stop(M, 'fast');
    expect(first).toEqual({ wasRunning: true, latestCheckpointLsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/), clusterState: 'shut down in recovery' });
    expect(await pair.host.stop(M, 'fast')).toEqual({ ...first, wasRunning: false });
    await pair.host.start(M);
    await pair.waitForStreaming(P, M, false);

    // A planned switchover: the primary stops fast, then its mirror must hold WAL past the shutdown checkpoint.
    const stopped = await pair.host.stop(P, 'fast');
    expect(stopped).toMatchObject({ wasRunning: true, clusterState: 'shut down' });
    const received = await waitFor('the mirror to receive the shutdown checkpoint', async () => {
      const lsn = (await pair.query<{ lsn: string }>(M, 'SELECT pg_last_wal_receive_lsn()::text AS lsn'))[0].lsn;
      return (await lsnAtLeast(M, lsn, stopped.latestCheckpointLsn!)) ? lsn : undefined;
    });
    expect(await lsnAtLeast(M, received, stopped.latestCheckpointLsn!)).toBe(true);

    await pair.host.start(P);
    const crashed = await pair.host.stop(P, 'immediate');
    expect(crashed).toMatchObject({ wasRunning: true, clusterState: 'in production' });
    await pair.host.start(P);
    await pair.waitForStreaming(P, M, false);
  });
});

describe('background rebuilds', () => {
  test('the crashed old primary rewound in the background: polled to succeeded, with its progress; it streams from the new primary', async () => {
    await killInstance(P.datadir);
    await runPgBinary('pg_ctl', ['promote', '-w', '-t', '60', '-D', M.datadir]);
    const newPrimary: SegmentRow = { ...M, role: 'p', preferredRole: 'p' };
    const oldPrimary: SegmentRow = { ...P, role: 'm', preferredRole: 'm' };
    await waitFor('the promoted mirror to accept writes', async () =>
      (await pair.query<{ r: boolean }>(newPrimary, 'SELECT pg_is_in_recovery() AS r'))[0].r ? undefined : true,
    );
    await pair.query(newPrimary, 'CREATE TABLE after_failover AS SELECT 1 AS x');

    const startedAt = Date.now();
    const job = await startRebuild(oldPrimary, newPrimary, 'rewind');
    // It returned before the rebuild ended.
    expect((await pair.host.jobStatus(job)).state).toBe('running');
    expect(job).toEqual({ id: expect.stringContaining(`/${REBUILD_STATE_DIR}/2-`), dbid: 2, startedAt: expect.any(String) });
    expect(Date.parse(job.startedAt)).toBeGreaterThanOrEqual(startedAt - 1000);

    const { status } = await finish(job);
    expect(status).toEqual({ state: 'succeeded', exitCode: 0, progress: expect.objectContaining({ tool: 'pg_rewind' }) });
    expect(status.progress!.bytes).toBe(status.progress!.total);
    await pair.waitForStreaming(newPrimary, oldPrimary, false);
    expect((await pair.query<{ x: number }>(oldPrimary, 'SELECT x FROM after_failover'))[0].x).toBe(1);
    // Polling a finished job again says the same.
    expect(await pair.host.jobStatus(job)).toEqual(status);
    P = newPrimary;
    M = oldPrimary;
  });

  test('a full copy refuses to empty a data directory of another content, or a directory of other files: wipeRefused, nothing deleted', async () => {
    const other = join(pair.root, 'gpseg5');
    mkdirSync(join(other, 'base', '1'), { recursive: true });
    writeFileSync(join(other, 'PG_VERSION'), '15\n');
    writeFileSync(join(other, 'base', '1', '1259'), 'relation');
    // Its fts.dbid is the rebuilt row's (so the owner check lets it through); its content is another.
    writeFileSync(join(other, 'postgresql.auto.conf'), "fts.dbid = '7'\nfts.content = '5'\n");
    const files = join(pair.root, 'not-a-datadir');
    mkdirSync(join(files, 'sub'), { recursive: true });
    writeFileSync(join(files, 'notes.txt'), 'keep me');
    writeFileSync(join(files, 'sub', 'deep'), 'and me');
    const cases = [
      { dbid: 7, dir: other, found: "a data directory whose postgresql.auto.conf says fts.content = '5'" },
      { dbid: 8, dir: files, found: 'no PG_VERSION but 2 entries: notes.txt,sub' },
    ];
    try {
      for (const { dbid, dir, found } of cases) {
        const before = tree(dir);
        const job = await startRebuild({ ...M, dbid, datadir: dir }, P, 'basebackup');
        const { status } = await finish(job);
        expect(status).toMatchObject({ state: 'failed', exitCode: 11, wipeRefused: true });
        expect(status.message).toContain(`refusing to wipe ${dir}: it is not a data directory of content 0 (found ${found})`);
        expect(status.message).toContain(`exited with code 11`);
        expect(tree(dir)).toEqual(before);
      }
      expect(readFileSync(join(files, 'sub', 'deep'), 'utf8')).toBe('and me');
    } finally {
      // The slots startRebuild created would keep WAL on the primary.
      for (const { dbid } of cases) await pair.query(P, 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [`fts_mirror_dbid_${dbid}`]);
    }
  });

  test('kill -9 of the job mid-copy: failed, saying so; started again, the copy completes and the mirror streams', async () => {
    const marker = rebuildStateFiles(M.datadir).wipeMarkerFile;
    const job = await startRebuild(M, P, 'basebackup');
    const stop = await slowDown(job);
    let seen: HostJobStatus;
    try {
      seen = await waitFor(
        'progress in the middle of the copy',
        async () => {
          const s = await pair.host.jobStatus(job);
          if (s.state !== 'running') throw new Error(`the job ended early: ${JSON.stringify(s)}`);
          return s.progress && s.progress.bytes >= 1024 * 1024 && s.progress.bytes < s.progress.total ? s : undefined;
        },
        30_000,
        50,
      );
      process.kill(-jobPid(job), 'SIGKILL');
    } finally {
      await stop();
    }
    expect(seen.progress).toMatchObject({ tool: 'pg_basebackup' });
    expect(seen.progress!.total).toBeGreaterThan(200 * 1024 * 1024);

    const { status } = await finish(job);
    expect(status.state).toBe('failed');
    expect(status.exitCode).toBeUndefined();
    expect(status.message).toMatch(
      new RegExp(`^rebuild of dbid ${M.dbid} \\(content 0\\) by basebackup from dbid ${P.dbid} \\(job .*\\) ended without an exit code: its process group ${jobPid(job)} is gone \\(killed, e\\.g\\. kill -9 or the OOM killer, or the machine restarted\\); start the rebuild again, the script is idempotent`),
    );
    expect(status.progress!.bytes).toBeGreaterThanOrEqual(seen.progress!.bytes);
    expect(groupMembers(jobPid(job))).toEqual([]);
    // What the kill left: a partial copy of this content, and the marker that says so.
    expect(readFileSync(join(M.datadir, 'backup_label'), 'utf8')).toContain('LABEL: fts rebuild of content 0');
    expect(readFileSync(marker, 'utf8')).toBe('content=0\n');

    const again = await startRebuild(M, P, 'basebackup');
    const done = await finish(again);
    expect(done.status).toMatchObject({ state: 'succeeded', exitCode: 0, progress: { tool: 'pg_basebackup' } });
    expect(done.status.progress!.bytes).toBe(done.status.progress!.total);
    await pair.waitForStreaming(P, M, false);
    expect((await pair.query<{ n: string }>(M, 'SELECT count(*)::text AS n FROM big'))[0].n).toBe('250000');
    expect(existsSync(marker)).toBe(false);
  });

  test('cancelJob stops the copy and its tools; a second rebuild meanwhile is refused; a cancelled copy is rebuilt afterwards', async () => {
    const job = await startRebuild(M, P, 'basebackup');
    const stop = await slowDown(job);
    try {
      // The same directory again while it copies: the lock refuses it, nothing is touched.
      const second = await startRebuild(M, P, 'basebackup');
      const busy = (await finish(second)).status;
      expect(busy).toMatchObject({ state: 'failed', exitCode: 12 });
      expect(busy.message).toContain(`another rebuild of ${M.datadir} is running (it holds ${rebuildStateFiles(M.datadir).lockFile}); nothing was done`);
      expect((await pair.host.jobStatus(job)).state).toBe('running');
      expect(groupMembers(jobPid(job)).length).toBeGreaterThan(1);

      await pair.host.cancelJob(job);
    } finally {
      await stop();
    }
    expect(groupMembers(jobPid(job))).toEqual([]);
    const status = await pair.host.jobStatus(job);
    expect(status.state).toBe('failed');
    expect(status.message).toMatch(/by basebackup from dbid \d+ \(job .*\) was cancelled/);
    // Already over: no error.
    await pair.host.cancelJob(job);

    // rebuildAsMirror is the same job, polled; its job directory goes when it is over.
    const jobDirs = (): string[] => readdirSync(join(pair.root, REBUILD_STATE_DIR)).filter((e) => e.startsWith(`${M.dbid}-`));
    const before = jobDirs();
    await pair.host.rebuildAsMirror(M, P, 'basebackup');
    expect(jobDirs()).toEqual(before);
    await pair.waitForStreaming(P, M, false);
  });
});
