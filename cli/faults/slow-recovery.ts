/**
 * A primary in a long crash recovery, for tests: WAL written since the last checkpoint,
 * a backend killed with SIGKILL (the postmaster then restarts every process and replays
 * the WAL, as Greenplum's segments do after a backend crash, gpdb #11770), and the
 * startup process slowed down with SIGSTOP/SIGCONT so the recovery lasts seconds.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'pg';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import type { SegmentRow } from '../../lambdas/core/model';
import { startupProcess } from '../../lambdas/adapters/local/startup-progress';

/** One connection as the superuser; WAL generation may take long, so no statement timeout. */
const withClient = <T>(row: SegmentRow, fn: (c: Client) => Promise<T>): Promise<T> =>
  withSegmentClient(row, trustCredentials('postgres'), { connectTimeoutMs: 5000, statementTimeoutMs: false, deadlineMs: 120_000 }, fn);

/** Writes about `mb` MB of WAL after a checkpoint that stays the last one (no timed or size-triggered checkpoint). */
export async function writeWalSinceCheckpoint(primary: SegmentRow, mb: number): Promise<void> {
  await withClient(primary, async (c) => {
    await c.query("ALTER SYSTEM SET checkpoint_timeout = '1h'");
    await c.query("ALTER SYSTEM SET max_wal_size = '4GB'");
    await c.query('SELECT pg_reload_conf()');
    await c.query('CHECKPOINT');
    // ~560 bytes of heap and WAL per row.
    await c.query(`CREATE TABLE recovery_load AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, $1::int) g`, [Math.ceil((mb * 1024 * 1024) / 560)]);
  });
}

/** Kills one backend with SIGKILL: the postmaster resets and runs crash recovery. */
export async function crashBackend(primary: SegmentRow): Promise<void> {
  await withClient(primary, async (c) => {
    const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    process.kill(rows[0].pid, 'SIGKILL');
  });
}

/** A throttled process; `stop()` lets it run at full speed again. */
export interface Throttle {
  /** Times the process was seen and paused. */
  cycles(): number;
  stop(): Promise<void>;
}

/**
 * Slows a process down: it runs `runMs`, then is stopped for `stopMs`, over and over,
 * until `stop()`. `find` names the process (looked up once, again when it is gone: a
 * scan of /proc may take longer than a run slice); `done` ends the throttle by itself
 * when the process is not found (e.g. recovery over).
 */
export function throttleProcess(find: () => number | undefined, runMs: number, stopMs: number, done: (cycles: number) => boolean = () => false): Throttle {
  let stopping = false;
  let cycles = 0;
  const loop = (async () => {
    let pid: number | undefined;
    while (!stopping) {
      pid ??= find();
      if (pid === undefined) {
        if (done(cycles)) return;
        await sleep(5);
        continue;
      }
      try {
        process.kill(pid, 'SIGSTOP');
      } catch {
        pid = undefined;
        continue;
      }
      try {
        cycles += 1;
        await sleep(stopMs);
      } finally {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          pid = undefined; // gone
        }
      }
      await sleep(runMs);
    }
  })().catch(() => undefined);
  return {
    cycles: () => cycles,
    stop: async () => {
      stopping = true;
      await loop;
    },
  };
}

/**
 * Slows crash recovery down: once the startup process replays WAL, it runs `runMs` then
 * is stopped for `stopMs`, until recovery ends. Looks for the replay for up to 10 s.
 */
export function throttleRecovery(datadir: string, runMs: number, stopMs: number): Throttle {
  const lookUntil = Date.now() + 10_000;
  const replaying = (): number | undefined => {
    const startup = startupProcess(datadir);
    return startup?.walFile ? startup.pid : undefined;
  };
  // The startup process exits when recovery ends: the throttle then finds nothing and is done.
  return throttleProcess(
    replaying,
    runMs,
    stopMs,
    (cycles) => cycles > 0 || Date.now() > lookUntil, // recovery over (or never seen)
  );
}
