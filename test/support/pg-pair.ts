/**
 * A real primary/mirror pair of PostgreSQL instances for tests: one content, the
 * primary (dbid 2) initialized with initdb, the mirror (dbid 3) made from it with
 * pg_basebackup through its replication slot, both on free loopback ports, sync rep on
 * by default. `destroy()` crashes whatever still runs (pg_ctl stop -m immediate, then
 * SIGKILL) and removes the temp directory; call it from afterAll.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeAnswer } from '../../lambdas/core/probe';
import { parseSettings, type Settings } from '../../lambdas/core/settings';
import { isRunning, killInstance, LocalSegmentHost } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { chownToPgUser, initdbInstance, writeInstanceConfig, type InstanceConfig } from '../../lambdas/adapters/local/postgres-binaries';
import { trustCredentials, type PgCredentialsProvider } from '../../lambdas/adapters/postgres/connection';
import { PgSegmentControl } from '../../lambdas/adapters/postgres/control';
import { PgSegmentProbe } from '../../lambdas/adapters/postgres/probe';

/** Options of {@link createPair}; all optional. */
export interface PairOptions {
  /** Turn sync rep on and wait until the mirror is the synchronous standby; default true. */
  syncRep?: boolean;
  /** Create the mirror at all; default true. */
  withMirror?: boolean;
  /** Content id; default 0. */
  content?: number;
  /** dbids of the primary and the mirror; default 2 and 3. */
  primaryDbid?: number;
  mirrorDbid?: number;
  /** Extra instance config for both (e.g. `extraHbaLines`); port is chosen here. */
  instanceConfig?: Partial<Omit<InstanceConfig, 'port'>>;
}

/** A running pair and the adapters acting on it. */
export interface PgPair {
  /** Temp directory holding both data directories (and their logs). */
  root: string;
  primary: SegmentRow;
  /** Undefined when created with `withMirror: false`. */
  mirror?: SegmentRow;
  /** Catalog rows: primary then mirror. */
  rows: SegmentRow[];
  credentials: PgCredentialsProvider;
  host: LocalSegmentHost;
  control: PgSegmentControl;
  probe: PgSegmentProbe;
  /** Fast settings for tests: 2 s timeout, 1 retry, 0.1 s apart. */
  settings: Settings;
  /** Runs one statement on an instance as the superuser. */
  query<R extends Record<string, unknown> = Record<string, unknown>>(segment: SegmentRow, sql: string, params?: unknown[]): Promise<R[]>;
  /** Waits until `primary` reports `mirror` streaming (and the synchronous standby when `sync`). */
  waitForStreaming(primary: SegmentRow, mirror: SegmentRow, sync: boolean, timeoutMs?: number): Promise<ProbeAnswer>;
  /** Registers another data directory for `destroy` to stop. */
  track(datadir: string): void;
  /** Stops everything (immediate) and removes the temp directory. Never throws. */
  destroy(): Promise<void>;
}

/** Polls `check` until it returns a value other than undefined; throws after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const row = (dbid: number, content: number, role: 'p' | 'm', port: number, datadir: string): SegmentRow => ({
  dbid,
  content,
  role,
  preferredRole: role,
  mode: 's',
  status: 'u',
  port,
  hostname: 'localhost',
  address: '127.0.0.1',
  datadir,
});

/** Creates and starts a pair; on failure stops what it started before rethrowing. */
export async function createPair(options: PairOptions = {}): Promise<PgPair> {
  const syncRep = options.syncRep ?? true;
  const withMirror = options.withMirror ?? true;
  const content = options.content ?? 0;
  const root = await mkdtemp(join(tmpdir(), 'fts-pg-'));
  // The PostgreSQL OS user creates nothing here itself, but must traverse into its data directories.
  await chownToPgUser(root);
  const datadirs = new Set<string>();
  const credentials = trustCredentials('postgres');
  const control = new PgSegmentControl({ credentials, connectTimeoutMs: 5000 });
  const host = new LocalSegmentHost({ replicationCredentials: credentials, control, pgCtlTimeoutSeconds: 60 });
  const probe = new PgSegmentProbe({ credentials });
  const settings = parseSettings({ probeTimeoutSeconds: 2, probeRetries: 1, probeRetryDelaySeconds: 0.1, probeIntervalSeconds: 1, mirrorDownGracePeriodSeconds: 0 });

  const destroy = async (): Promise<void> => {
    for (const dir of datadirs) {
      try {
        await host.stop({ ...row(0, content, 'p', 1, dir) }, 'immediate');
      } catch {
        // Fall through to SIGKILL.
      }
      try {
        if (isRunning(dir)) await killInstance(dir);
      } catch {
        // Nothing more to do; the directory goes anyway.
      }
    }
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  };

  const query = async <R extends Record<string, unknown>>(segment: SegmentRow, sql: string, params?: unknown[]): Promise<R[]> => {
    const client = new Client({ host: segment.address, port: segment.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  const waitForStreaming = (primary: SegmentRow, mirror: SegmentRow, sync: boolean, timeoutMs = 30_000): Promise<ProbeAnswer> =>
    waitFor(`dbid ${primary.dbid} to report mirror dbid ${mirror.dbid} streaming${sync ? ' in sync' : ''}`, async () => {
      const r = await probe.probe(primary, { ...settings, probeRetries: 0 }, mirror);
      if (!r.ok) throw new Error(r.message);
      return r.mirror.state === 'streaming' && (!sync || r.mirror.syncState === 'sync') ? r : undefined;
    }, timeoutMs);

  try {
    const primaryDir = join(root, `dbid${options.primaryDbid ?? 2}`);
    const primary = row(options.primaryDbid ?? 2, content, 'p', await freePort(), primaryDir);
    datadirs.add(primaryDir);
    await initdbInstance(primaryDir, { noSync: true });
    await writeInstanceConfig(primaryDir, { ...options.instanceConfig, port: primary.port });
    await host.start(primary);

    let mirror: SegmentRow | undefined;
    if (withMirror) {
      const mirrorDir = join(root, `dbid${options.mirrorDbid ?? 3}`);
      mirror = row(options.mirrorDbid ?? 3, content, 'm', await freePort(), mirrorDir);
      datadirs.add(mirrorDir);
      // pg_basebackup through the slot, mirror config, start: the gprecoverseg -F path.
      await host.rebuildAsMirror(mirror, primary, 'basebackup');
      if (syncRep) await control.setSyncRep(primary, mirror, true);
      await waitForStreaming(primary, mirror, syncRep);
    }
    if (!syncRep || !mirror) {
      primary.mode = 'n';
      if (mirror) mirror.mode = 'n';
    }
    return {
      root,
      primary,
      mirror,
      rows: mirror ? [primary, mirror] : [primary],
      credentials,
      host,
      control,
      probe,
      settings,
      query,
      waitForStreaming,
      track: (dir) => void datadirs.add(dir),
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}
