/**
 * Tools of the coordinator attacks (test/e2e/coordinator-attacks.test.ts): the rows of
 * content -1, a workload through the client endpoint, ActivateStandby and InitStandby
 * run on (possibly wrapped) adapters, SIGSTOP/SIGCONT bookkeeping, and a TCP proxy whose
 * open connections can be black-holed (nothing passes either way, nothing is closed).
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Client } from 'pg';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import { COORDINATOR_CONTENT, type SegmentRow } from '../../lambdas/core/model';
import { Workload } from '../../cli/failover-drill';
import { LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { activateStandbyRequest, runWorkflowLocally, type ClusterAdapters, type WorkflowRunResult } from '../../bin/ftsctl';
import type { TestCluster } from './local-cluster-fixture';
import { waitFor } from './pg-pair';

export const TRUST = trustCredentials(LOCAL_SUPERUSER);

/** An object that behaves like `base` except for `overrides` (an adapter with a fault injected). */
export function wrap<T extends object>(base: T, overrides: Partial<T>): T {
  return Object.assign(Object.create(Object.getPrototypeOf(base) as object) as T, base, overrides);
}

/** The cluster's adapters, some replaced. */
export const adaptersOf = (c: TestCluster, adapters: Partial<ClusterAdapters> = {}): ClusterAdapters => ({
  catalog: c.catalog,
  probe: c.probe,
  control: c.control,
  host: c.host,
  ...(c.endpoint ? { endpoint: c.endpoint } : {}),
  ...adapters,
});

/** The coordinator (role p) and standby (role m) rows of content -1, as the catalog has them now. */
export async function coordinatorPair(c: TestCluster): Promise<{ coordinator?: SegmentRow; standby?: SegmentRow; rows: SegmentRow[] }> {
  const rows = (await c.catalog.load(c.clusterId)).segments.filter((r) => r.content === COORDINATOR_CONTENT);
  return { coordinator: rows.find((r) => r.role === 'p'), standby: rows.find((r) => r.role === 'm'), rows };
}

/** `dbid:role/status/mode` of every row of content -1. */
export const coordinatorStates = async (c: TestCluster): Promise<string[]> => (await coordinatorPair(c)).rows.map((r) => `${r.dbid}:${r.role}/${r.status}/${r.mode}`).sort();

/** Waits until the coordinator and its standby are both marked in sync. */
export const waitPairInSync = (c: TestCluster, timeoutMs = 60_000): Promise<true> =>
  waitFor(
    'the coordinator and its standby in sync',
    async () => {
      const { coordinator, standby } = await coordinatorPair(c);
      return coordinator?.mode === 's' && standby?.status === 'u' && standby.mode === 's' ? true : undefined;
    },
    timeoutMs,
  );

/** A workload writing through the client endpoint (as an application would), started and past its first commits. */
export async function endpointWorkload(c: TestCluster): Promise<Workload> {
  const endpoint = await c.endpoint!.describe();
  const workload = new Workload(c.catalog, c.clusterId, COORDINATOR_CONTENT, { address: endpoint.address, port: endpoint.port });
  await workload.prepare();
  workload.start();
  await waitFor('first commits through the endpoint', async () => (workload.acks.length >= 20 ? true : undefined));
  return workload;
}

/** Waits until the workload has `more` acknowledged commits than now. */
export async function moreAcks(w: Workload, more = 10, timeoutMs = 30_000): Promise<void> {
  const n = w.acks.length;
  await waitFor(`${more} more acknowledged commits`, async () => (w.acks.length >= n + more ? true : undefined), timeoutMs);
}

/** Acknowledged commits missing from the acting coordinator (all of them when none answers). */
export async function lostOf(w: Workload): Promise<{ acknowledged: number; lost: number[] }> {
  try {
    const r = await w.lostCommits();
    return { acknowledged: r.acknowledged, lost: r.lost };
  } catch {
    return { acknowledged: w.acks.length, lost: w.acks.map((a) => a.id) };
  }
}

/** dbids of the rows of content -1 that accept writes now (answer and are not in recovery). */
export async function writableCoordinators(c: TestCluster, extra: SegmentRow[] = []): Promise<number[]> {
  const rows = [...(await coordinatorPair(c)).rows, ...extra];
  const seen = new Set<number>();
  const writable: number[] = [];
  for (const row of rows) {
    if (seen.has(row.dbid)) continue;
    seen.add(row.dbid);
    const inRecovery = await withSegmentClient(row, TRUST, { connectTimeoutMs: 1000, statementTimeoutMs: 2000 }, async (client) => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r).catch(() => undefined);
    if (inRecovery === false) writable.push(row.dbid);
  }
  return writable.sort((a, b) => a - b);
}

/** A commit on `row` with synchronous_commit = local (what a client of a zombie coordinator would get acknowledged). */
export const localCommit = (row: SegmentRow): Promise<void> =>
  withSegmentClient(row, TRUST, { connectTimeoutMs: 2000, statementTimeoutMs: 5000 }, async (client) => {
    await client.query('SET synchronous_commit = local');
    await client.query('CREATE TABLE IF NOT EXISTS zombie_writes (id int)');
    await client.query('INSERT INTO zombie_writes VALUES (1)');
  });

/** Runs ActivateStandby as `ftsctl activatestandby` builds it (on the given adapters), with its own execution name. */
export async function activate(c: TestCluster, options: { force?: boolean; ignoreLag?: boolean } = {}, adapters: Partial<ClusterAdapters> = {}, executionName?: string): Promise<WorkflowRunResult> {
  const snapshot = await c.catalog.load(c.clusterId);
  const input = activateStandbyRequest(c.clusterId, snapshot.version, options);
  return runWorkflowLocally(adaptersOf(c, adapters), 'ActivateStandby', input, { executionName: executionName ?? `attack-${randomUUID()}`, retryIntervalMs: 0 });
}

/** Runs InitStandby with `input` (clusterId and a 1 s poll added). */
export const initStandby = (c: TestCluster, input: Record<string, unknown>, adapters: Partial<ClusterAdapters> = {}): Promise<WorkflowRunResult> =>
  runWorkflowLocally(adaptersOf(c, adapters), 'InitStandby', { clusterId: c.clusterId, pollSeconds: 1, ...input }, { waitMs: 200, retryIntervalMs: 0 });

/** History descriptions of the cluster, oldest first. */
export const historyText = async (c: TestCluster): Promise<string[]> => (await c.catalog.history(c.clusterId)).map((h) => `${h.time} dbid ${h.dbid}: ${h.description}`);

/** PID of the postmaster of a data directory. */
export function postmasterOf(datadir: string): number {
  const pid = Number(readFileSync(join(datadir, 'postmaster.pid'), 'utf8').split('\n')[0].trim());
  if (!(pid > 0)) throw new Error(`no postmaster.pid in ${datadir}`);
  return pid;
}

/** PIDs of the live children of `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid && rest[0] !== 'Z') children.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return children;
}

/**
 * SIGSTOP/SIGCONT with bookkeeping: `thawAll()` (afterEach) continues everything still
 * stopped. PostgreSQL's children call setsid(), so a signal to the postmaster's process
 * group reaches the postmaster alone: the whole instance is frozen process by process.
 */
export class Freezer {
  private readonly stopped = new Set<number>();

  /** Freezes the postmaster alone (its backends and walsender go on). */
  freezePostmaster(pid: number): void {
    process.kill(pid, 'SIGSTOP');
    this.stopped.add(pid);
  }

  /** Freezes the whole instance: the postmaster first (it forks nothing more), then every child. Returns the PIDs frozen. */
  freezeInstance(pid: number): number[] {
    this.freezePostmaster(pid);
    const children = childrenOf(pid);
    for (const child of children) {
      try {
        process.kill(child, 'SIGSTOP');
        this.stopped.add(child);
      } catch {
        /* exited meanwhile */
      }
    }
    return [pid, ...children];
  }

  thawAll(): void {
    for (const pid of [...this.stopped]) {
      this.stopped.delete(pid);
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* gone (killed by a fence) */
      }
    }
  }
}

/**
 * A loopback TCP proxy whose connections can be black-holed: while `blackhole` is on,
 * nothing passes in either direction and nothing is closed (no FIN, no RST): a network
 * path that silently drops everything. New connections are accepted and left hanging.
 */
export class BlackholeProxy {
  blackhole = false;
  port = 0;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    const track = (s: Socket): void => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => s.destroy());
    };
    this.server = createServer((client) => {
      track(client);
      if (this.blackhole) return;
      const upstream = connect(this.targetPort, '127.0.0.1');
      track(upstream);
      client.on('data', (d) => void (this.blackhole || upstream.write(d)));
      upstream.on('data', (d) => void (this.blackhole || client.write(d)));
      client.on('close', () => void (this.blackhole || upstream.destroy()));
      upstream.on('close', () => void (this.blackhole || client.destroy()));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Points a standby's replication connection at `port` (same conninfo otherwise) and waits until it streams through it. */
export async function routeReplication(standby: SegmentRow, port: number): Promise<void> {
  await withSegmentClient(standby, TRUST, { connectTimeoutMs: 2000, statementTimeoutMs: 5000 }, async (client: Client) => {
    const conninfo = (await client.query<{ primary_conninfo: string }>('SHOW primary_conninfo')).rows[0].primary_conninfo;
    const portSetting = /\bport\s*=\s*'?\d+'?/;
    if (!portSetting.test(conninfo)) throw new Error(`primary_conninfo of dbid ${standby.dbid} names no port: ${conninfo}`);
    const next = conninfo.replace(portSetting, `port='${port}'`);
    await client.query(`ALTER SYSTEM SET primary_conninfo = '${next.replace(/'/g, "''")}'`);
    await client.query('SELECT pg_reload_conf()');
  });
  await waitFor(`standby dbid ${standby.dbid} streaming through port ${port}`, async () =>
    withSegmentClient(standby, TRUST, { connectTimeoutMs: 1000, statementTimeoutMs: 2000 }, async (client) => {
      const r = (await client.query<{ status: string | null; sender_port: number | null }>('SELECT status, sender_port FROM pg_stat_wal_receiver')).rows[0];
      return r?.status === 'streaming' && r.sender_port === port ? true : undefined;
    }),
  );
}
