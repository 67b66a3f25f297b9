/**
 * A whole cluster on one machine: real PostgreSQL instances on loopback ports (coordinator,
 * standby, primaries and mirrors with synchronous streaming replication through slots),
 * the catalog in DynamoDB Local, the client endpoint (a loopback forwarder that follows the
 * acting coordinator), and optionally the prober as a background process.
 *
 * Everything `up` starts is recorded in a state file in the cluster's directory before it
 * starts, so `down` stops and removes it all, also after the CLI itself crashed; `down`
 * also finds instances by their postmaster.pid files should the state file be missing.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile, rename } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { ValidationError } from '../lambdas/core/errors';
import { COORDINATOR_CONTENT, pairsByContent, type SegmentRow } from '../lambdas/core/model';
import { planCluster, type PlacementHost } from '../lambdas/core/placement';
import { parseSettings, type Settings } from '../lambdas/core/settings';
import { DynamoDbCatalog } from '../lambdas/adapters/dynamodb/catalog';
import { createCatalogTables, DEFAULT_CATALOG_TABLE_NAMES } from '../lambdas/adapters/dynamodb/tables';
import { startDynamoDbLocal } from '../lambdas/adapters/local/dynamodb-local';
import { isRunning, killInstance, LocalSegmentHost } from '../lambdas/adapters/local/host';
import { freePort } from '../lambdas/adapters/local/net';
import { LocalClientEndpoint, LocalEndpointForwarder, readEndpointApplied } from '../lambdas/adapters/local/endpoint';
import type { ClientEndpoint } from '../lambdas/ports/endpoint';
import { localRecoveryProgress } from '../lambdas/adapters/local/startup-progress';
import { applyFtsRoleScript, chownToPgUser, initdbInstance, pgOsUser, writeInstanceConfig } from '../lambdas/adapters/local/postgres-binaries';
import { DEFAULT_FTS_ROLE, trustCredentials, withSegmentClient } from '../lambdas/adapters/postgres/connection';
import { PgSegmentControl } from '../lambdas/adapters/postgres/control';
import { mapLimit, PgSegmentProbe } from '../lambdas/adapters/postgres/probe';

/** Cluster id when none is given. */
export const DEFAULT_LOCAL_CLUSTER_ID = 'local';
/** Role every local instance trusts on 127.0.0.1 (no password): builds the instances, and is the host tools' replication user. */
export const LOCAL_SUPERUSER = 'postgres';
/** Role the local prober and workflows connect as (trusted on 127.0.0.1): made by scripts/fts-role.sql, no superuser, as in AWS. */
export const LOCAL_FTS_ROLE = DEFAULT_FTS_ROLE;
/** Address of every local instance. */
export const LOCAL_ADDRESS = '127.0.0.1';
const STATE_FILE = 'cluster.json';
const PROBER_LOG = 'prober.log';
const ENDPOINT_LOG = 'endpoint.out';

/** The spec `ftsctl local up` takes (flags or a JSON file). */
export const localClusterSpecSchema = z
  .object({
    /** Catalog cluster id; also names the cluster's directory. */
    clusterId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/, 'must be 1 to 48 letters, digits, - or _').default(DEFAULT_LOCAL_CLUSTER_ID),
    /** Segment hosts, named sdw1..sdwN (all on 127.0.0.1). */
    hosts: z.number().int('must be a whole number').min(1, 'must be at least 1').max(16, 'must be at most 16').default(2),
    primariesPerHost: z.number().int('must be a whole number').min(1, 'must be at least 1').max(8, 'must be at most 8').default(1),
    mirroring: z.enum(['group', 'spread', 'none']).default('group'),
    /** A coordinator instance (content -1) on host cdw. */
    coordinator: z.boolean().default(true),
    /** A standby coordinator on host scdw streaming from the coordinator. */
    standby: z.boolean().default(true),
    /** Ports basePort, basePort+1, ... in dbid order; free ports picked by the system when absent. */
    basePort: z.number().int('must be a whole number').min(1024, 'must be from 1024 to 65000').max(65000, 'must be from 1024 to 65000').optional(),
    /** Port of the client endpoint (a loopback forwarder that follows the acting coordinator); a free port when absent. */
    endpointPort: z.number().int('must be a whole number').min(1024, 'must be from 1024 to 65000').max(65000, 'must be from 1024 to 65000').optional(),
    /** Prober settings (see lambdas/core/settings.ts); defaults when absent. */
    settings: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .refine((s) => s.coordinator || !s.standby, { message: 'a standby needs a coordinator (set coordinator: true or standby: false)', path: ['standby'] })
  .refine((s) => s.coordinator || s.endpointPort === undefined, { message: 'the client endpoint leads to the coordinator: set coordinator: true or leave endpointPort out', path: ['endpointPort'] });

/** A validated spec. */
export type LocalClusterSpec = z.output<typeof localClusterSpecSchema>;

/** Parses a spec; ValidationError names every problem. */
export function parseLocalClusterSpec(input: unknown): LocalClusterSpec & { parsedSettings: Settings } {
  const result = localClusterSpecSchema.safeParse(input ?? {});
  if (!result.success) {
    const issues = result.error.issues.map((i) => {
      if (i.code === 'unrecognized_keys') return `unknown option(s) ${i.keys.join(', ')}; known options are ${Object.keys(localClusterSpecSchema.shape).join(', ')}`;
      return `${i.path.join('.') || 'spec'}: ${i.message}`;
    });
    throw new ValidationError(`invalid cluster spec: ${issues.join('; ')}`, issues);
  }
  return { ...result.data, parsedSettings: parseSettings(result.data.settings ?? {}) };
}

/** Where a cluster lives: `$FTS_LOCAL_DIR/<id>`, by default under the system temp directory. */
export function localClusterDir(clusterId: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(env.FTS_LOCAL_DIR ?? join(tmpdir(), 'fts-local'), clusterId);
}

/**
 * Plans the catalog rows of a local cluster: gpinitsystem's layout over hosts sdw1..sdwN
 * (coordinator on cdw, standby on scdw), every address 127.0.0.1, data directories under
 * `<dir>/<host>/`, ports 0 (assigned by `up`). Throws ValidationError for a spec the
 * planner rejects (spread with too few hosts, ...).
 */
export function planLocalCluster(spec: LocalClusterSpec, dir: string): SegmentRow[] {
  const host = (hostname: string): PlacementHost => ({ hostname, address: LOCAL_ADDRESS });
  const rows = planCluster({
    hosts: Array.from({ length: spec.hosts }, (_, i) => host(`sdw${i + 1}`)),
    primariesPerHost: spec.primariesPerHost,
    mirroring: spec.mirroring,
    preserveHostOrder: true,
    coordinator: spec.coordinator ? { host: host('cdw'), standbyHost: spec.standby ? host('scdw') : undefined } : undefined,
  });
  return rows.map((r) => ({
    ...r,
    port: 0,
    datadir: join(dir, r.hostname, r.content === COORDINATOR_CONTENT ? 'coordinator' : r.preferredRole === 'p' ? 'primary' : 'mirror', `gpseg${r.content}`),
  }));
}

/** What the state file records; everything `down` needs. */
export interface LocalClusterState {
  clusterId: string;
  dir: string;
  /** `starting` until every instance runs and the catalog is written. */
  phase: 'starting' | 'ready';
  /** Rows as built (the catalog is the truth once ready). */
  rows: SegmentRow[];
  settings: Settings;
  dynamo: { endpoint: string; pid?: number };
  /** The background prober, when running. */
  proberPid?: number;
  /** Where clients connect: the loopback forwarder that follows the acting coordinator (clusters with a coordinator). */
  endpoint?: { address: string; port: number };
  /** The background endpoint forwarder (`cli/endpoint-daemon.ts`), when running. */
  endpointPid?: number;
  createdAt: string;
}

/** A running local cluster. */
export interface LocalCluster {
  state: LocalClusterState;
  catalog: DynamoDbCatalog;
  host: LocalSegmentHost;
  control: PgSegmentControl;
  probe: PgSegmentProbe;
  /** JSON-lines log of the background prober (timeline events). */
  proberLog: string;
  /** The client endpoint, which follows the acting coordinator; absent without a coordinator. */
  endpoint?: ClientEndpoint;
  /**
   * Stops the endpoint forwarder this process runs for the cluster (`backgroundEndpoint:
   * false`); a no-op otherwise (`downLocalCluster` stops the background one).
   */
  stopEndpoint(): Promise<void>;
}

/** Options of {@link upLocalCluster}. */
export interface UpOptions {
  /** Cluster directory; default {@link localClusterDir}. */
  dir?: string;
  /** A DynamoDB (Local) endpoint to use instead of starting one (tests share one). */
  dynamoEndpoint?: string;
  /** Start the prober as a background process (the CLI does; tests run it in-process). Default false. */
  backgroundProber?: boolean;
  /**
   * Run the client endpoint's forwarder as a background process (`cli/endpoint-daemon.ts`,
   * stopped by `downLocalCluster`); false runs it in this process until
   * `LocalCluster.stopEndpoint()` or `downLocalCluster` (tests). Default true.
   */
  backgroundEndpoint?: boolean;
  /** Progress lines. */
  onProgress?: (line: string) => void;
}

/** Connection string of an instance (password-less on loopback, database postgres). */
export const connectionString = (row: SegmentRow): string => `postgresql://${LOCAL_SUPERUSER}@${row.address}:${row.port}/postgres`;

/** A DynamoDB client for DynamoDB Local (fixed dummy credentials, the SDK's standard retry). */
export function localDynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 5 });
}

/** The catalog of a local cluster. */
export const localCatalog = (endpoint: string): DynamoDbCatalog => new DynamoDbCatalog({ client: localDynamoClient(endpoint), tables: { ...DEFAULT_CATALOG_TABLE_NAMES } });

/**
 * The adapters a local cluster is run with: probe and control connect as
 * {@link LOCAL_FTS_ROLE} (no superuser; trust on loopback), the host tools (pg_basebackup,
 * pg_rewind, the mirrors' primary_conninfo) as {@link LOCAL_SUPERUSER}, the replication user.
 */
export function localAdapters(): Pick<LocalCluster, 'host' | 'control' | 'probe'> {
  const credentials = trustCredentials(LOCAL_FTS_ROLE);
  const control = new PgSegmentControl({ credentials });
  return {
    control,
    probe: new PgSegmentProbe({ credentials, recoveryProgress: localRecoveryProgress }),
    host: new LocalSegmentHost({ replicationCredentials: trustCredentials(LOCAL_SUPERUSER), control }),
  };
}

/** Reads a cluster's state file; undefined when there is none. */
export function readLocalState(dir: string): LocalClusterState | undefined {
  const file = join(dir, STATE_FILE);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as LocalClusterState;
}

/** Opens a running cluster from its directory (for `state`, `kill`, tests). */
export function openLocalCluster(dir: string): LocalCluster {
  const state = readLocalState(dir);
  if (!state) throw new ValidationError(`no local cluster in ${dir} (run \`ftsctl local up\` first)`);
  return { state, catalog: localCatalog(state.dynamo.endpoint), ...localAdapters(), proberLog: join(dir, PROBER_LOG), ...endpointOf(state) };
}

/** The endpoint fields of a LocalCluster. */
function endpointOf(state: LocalClusterState): Pick<LocalCluster, 'endpoint' | 'stopEndpoint'> {
  return { endpoint: state.endpoint ? new LocalClientEndpoint(state.dir) : undefined, stopEndpoint: () => stopInProcessEndpoint(state.dir) };
}

/**
 * The client endpoint of a local cluster (a cluster or its directory). ValidationError
 * when the cluster has none (no coordinator).
 */
export function localEndpoint(clusterOrDir: LocalCluster | string): LocalClientEndpoint {
  const state = typeof clusterOrDir === 'string' ? readLocalState(clusterOrDir) : clusterOrDir.state;
  if (!state) throw new ValidationError(`no local cluster in ${clusterOrDir as string} (run \`ftsctl local up\` first)`);
  if (!state.endpoint) throw new ValidationError(`cluster ${state.clusterId} has no client endpoint: it has no coordinator`);
  return new LocalClientEndpoint(state.dir);
}

async function writeState(state: LocalClusterState): Promise<void> {
  const file = join(state.dir, STATE_FILE);
  await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2));
  await rename(`${file}.tmp`, file); // never a half-written state file after a crash
}

/** Whether a local port can be bound right now. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, LOCAL_ADDRESS, () => server.close(() => resolve(true)));
  });
}

async function assignPorts(rows: SegmentRow[], basePort: number | undefined): Promise<void> {
  const taken = new Set<number>();
  for (const [i, row] of rows.entries()) {
    if (basePort !== undefined) {
      row.port = basePort + i;
      if (row.port > 65535) throw new ValidationError(`basePort ${basePort} leaves no room for ${rows.length} instances`);
      if (!(await portIsFree(row.port))) throw new ValidationError(`port ${row.port} (dbid ${row.dbid}, basePort ${basePort} + ${i}) is in use; pick another basePort or leave it out`);
    } else {
      do row.port = await freePort();
      while (taken.has(row.port));
    }
    taken.add(row.port);
  }
}

/**
 * Started as root, PostgreSQL runs as an unprivileged user, which must be able to reach
 * the cluster directory: every existing ancestor must be searchable by others.
 */
function checkReachableByPgUser(dir: string): void {
  const user = pgOsUser();
  if (!user) return;
  for (let d = dirname(dir); ; d = dirname(d)) {
    if (existsSync(d)) {
      const st = statSync(d);
      if (st.uid !== user.uid && (st.mode & 0o001) === 0) {
        throw new ValidationError(`PostgreSQL runs as OS user ${user.name}, which cannot reach ${dir}: ${d} is not searchable by others (chmod o+x ${d}, or choose another directory with --dir or FTS_LOCAL_DIR)`);
      }
    }
    if (d === dirname(d)) return;
  }
}

/** True when a live process with this pid runs a command line matching `pattern`. */
function processMatches(pid: number | undefined, pattern: RegExp): boolean {
  if (!pid) return false;
  try {
    return pattern.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return false;
  }
}

/** Whether anything of a cluster in `dir` still runs. */
export function localClusterRuns(dir: string): boolean {
  const state = readLocalState(dir);
  if (!state) return findDatadirs(dir).some(isRunning);
  return (
    processMatches(state.dynamo.pid, /DynamoDBLocal/) ||
    processMatches(state.proberPid, /prober-daemon/) ||
    processMatches(state.endpointPid, /endpoint-daemon/) ||
    inProcessForwarders.has(resolve(dir)) ||
    state.rows.some((r) => isRunning(r.datadir))
  );
}

/**
 * Builds and starts a cluster and returns when every instance runs, every mirror
 * streams in sync, the catalog is written and (if asked) the prober has taken its lease.
 * A bad spec changes nothing; a failure half-way stops and removes what was started.
 */
export async function upLocalCluster(specInput: unknown, options: UpOptions = {}): Promise<LocalCluster> {
  const spec = parseLocalClusterSpec(specInput);
  const dir = options.dir ?? localClusterDir(spec.clusterId);
  const progress = options.onProgress ?? (() => undefined);
  if (localClusterRuns(dir)) throw new ValidationError(`cluster ${spec.clusterId} already runs in ${dir}; run \`ftsctl local down\` first`);
  checkReachableByPgUser(dir);
  const rows = planLocalCluster(spec, dir);
  await assignPorts(rows, spec.basePort);
  const endpointPort = spec.coordinator ? await assignEndpointPort(rows, spec.endpointPort) : undefined;

  if (existsSync(dir)) await downLocalCluster(dir); // leftovers of a crashed run
  await mkdir(dir, { recursive: true });
  await chownToPgUser(dir);
  const state: LocalClusterState = {
    clusterId: spec.clusterId,
    dir,
    phase: 'starting',
    rows,
    settings: spec.parsedSettings,
    dynamo: { endpoint: options.dynamoEndpoint ?? '' },
    createdAt: new Date().toISOString(),
  };
  await writeState(state);
  try {
    if (!options.dynamoEndpoint) {
      progress('starting DynamoDB Local');
      const dbPath = join(dir, 'dynamodb');
      await mkdir(dbPath, { recursive: true });
      const ddb = await startDynamoDbLocal({ detached: true, dbPath });
      state.dynamo = { endpoint: ddb.endpoint, pid: ddb.pid };
      await writeState(state);
    }
    const catalog = localCatalog(state.dynamo.endpoint);
    await createCatalogTables(localDynamoClient(state.dynamo.endpoint), catalog.tables);
    const adapters = localAdapters();

    const primaries = rows.filter((r) => r.role === 'p');
    progress(`initializing ${primaries.length} primaries (initdb)`);
    await mapLimit(primaries, 2, async (row) => {
      // Parents traversable by the PostgreSQL OS user; the data directory itself is its own.
      await mkdir(dirname(row.datadir), { recursive: true, mode: 0o755 });
      await initdbInstance(row.datadir, { noSync: true });
      await writeInstanceConfig(row.datadir, { port: row.port, dbid: row.dbid, content: row.content });
      await adapters.host.start(row);
      // The control plane's role (mirrors and the standby get it by replication).
      await applyFtsRoleScript({ address: row.address, port: row.port, superuser: LOCAL_SUPERUSER, role: LOCAL_FTS_ROLE });
    });
    // Both instances of a content share the primary's system identifier (the mirror is
    // its physical copy); probes and workflow steps refuse an instance with another one.
    await mapLimit(primaries, 2, async (primary) => {
      const id = await withSegmentClient(primary, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 10_000 }, async (c) => {
        return (await c.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0].id;
      });
      for (const row of rows) if (row.content === primary.content) row.systemIdentifier = id;
    });
    const pairs = pairsByContent(rows).filter((p) => p.primary && p.mirror);
    progress(`creating ${pairs.length} mirrors (pg_basebackup through a slot)`);
    await mapLimit(pairs, 2, async ({ primary, mirror }) => {
      await mkdir(dirname(mirror!.datadir), { recursive: true, mode: 0o755 });
      await adapters.host.rebuildAsMirror(mirror!, primary!, 'basebackup');
      await adapters.control.setSyncRep(primary!, mirror!, true);
      await waitForSync(adapters.probe, primary!, mirror!, spec.parsedSettings);
    });
    if (endpointPort !== undefined) {
      progress(`starting the client endpoint on ${LOCAL_ADDRESS}:${endpointPort}`);
      await startLocalEndpoint(state, endpointPort, options.backgroundEndpoint ?? true);
    }
    progress('writing the catalog');
    await catalog.destroy(spec.clusterId); // a shared DynamoDB may hold a stale cluster of this id
    await catalog.initialize(spec.clusterId, rows, spec.parsedSettings, new Date().toISOString());
    state.phase = 'ready';
    await writeState(state);
    const cluster: LocalCluster = { state, catalog, ...adapters, proberLog: join(dir, PROBER_LOG), ...endpointOf(state) };
    if (options.backgroundProber) {
      progress('starting the prober');
      await startBackgroundProber(cluster);
    }
    return cluster;
  } catch (e) {
    await downLocalCluster(dir).catch(() => undefined);
    throw e;
  }
}

async function waitForSync(probe: PgSegmentProbe, primary: SegmentRow, mirror: SegmentRow, settings: Settings): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await probe.probe(primary, { ...settings, probeRetries: 0 }, mirror);
    if (r.ok && r.mirror.state === 'streaming' && r.mirror.syncState === 'sync') return;
    if (Date.now() > deadline) throw new Error(`mirror dbid ${mirror.dbid} is not streaming in sync from dbid ${primary.dbid} after 60 s`);
    await sleep(100);
  }
}

/** Starts `cli/prober-daemon.ts` detached, logging to prober.log; resolves once it holds the lease. */
export async function startBackgroundProber(cluster: LocalCluster): Promise<number> {
  const { state } = cluster;
  const log = openSync(join(state.dir, 'prober.out'), 'a');
  const child = spawn(process.execPath, [require.resolve('tsx/cli'), join(__dirname, 'prober-daemon.ts'), state.dir], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  child.unref();
  state.proberPid = child.pid;
  await writeState(state);
  const deadline = Date.now() + 60_000;
  while (!(existsSync(cluster.proberLog) && readFileSync(cluster.proberLog, 'utf8').includes('prober lease acquired'))) {
    if (child.exitCode !== null || !processMatches(child.pid, /prober-daemon/)) {
      throw new Error(`the prober exited at start; see ${join(state.dir, 'prober.out')}`);
    }
    if (Date.now() > deadline) throw new Error('the prober did not take its lease within 60 s');
    await sleep(100);
  }
  return child.pid!;
}

/** The port of the client endpoint: `endpointPort` when free and no instance's, else a free one. */
async function assignEndpointPort(rows: SegmentRow[], endpointPort: number | undefined): Promise<number> {
  const taken = new Set(rows.map((r) => r.port));
  if (endpointPort !== undefined) {
    const row = rows.find((r) => r.port === endpointPort);
    if (row) throw new ValidationError(`endpointPort ${endpointPort} is the port of dbid ${row.dbid}; pick another endpointPort (outside basePort and the ports after it) or leave it out`);
    if (!(await portIsFree(endpointPort))) throw new ValidationError(`endpointPort ${endpointPort} is in use; pick another endpointPort or leave it out`);
    return endpointPort;
  }
  let port: number;
  do port = await freePort();
  while (taken.has(port));
  return port;
}

/** Forwarders run by this process (`backgroundEndpoint: false`), by resolved cluster directory. */
const inProcessForwarders = new Map<string, LocalEndpointForwarder>();

/** Stops the forwarder this process runs for the cluster in `dir`, if any. */
async function stopInProcessEndpoint(dir: string): Promise<void> {
  const key = resolve(dir);
  const forwarder = inProcessForwarders.get(key);
  inProcessForwarders.delete(key);
  await forwarder?.stop();
}

/**
 * Points the client endpoint at the coordinator and starts its forwarder on `port`:
 * recorded in the state file first, so `down` stops it also after a crash.
 */
async function startLocalEndpoint(state: LocalClusterState, port: number, background: boolean): Promise<void> {
  const coordinator = state.rows.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p');
  if (!coordinator) throw new Error('a client endpoint needs a coordinator row');
  state.endpoint = { address: LOCAL_ADDRESS, port };
  await writeState(state);
  const revision = await new LocalClientEndpoint(state.dir).configure({ listen: state.endpoint, target: { address: coordinator.address, port: coordinator.port } });
  if (background) {
    await startBackgroundEndpoint(state, revision);
    return;
  }
  const forwarder = new LocalEndpointForwarder({ dir: state.dir });
  inProcessForwarders.set(resolve(state.dir), forwarder);
  try {
    await forwarder.start();
  } catch (e) {
    await stopInProcessEndpoint(state.dir);
    throw e;
  }
}

/** Starts `cli/endpoint-daemon.ts` detached, logging to endpoint.out; resolves once it applied `revision`. */
async function startBackgroundEndpoint(state: LocalClusterState, revision: number): Promise<number> {
  const out = join(state.dir, ENDPOINT_LOG);
  const log = openSync(out, 'a');
  const child = spawn(process.execPath, [require.resolve('tsx/cli'), join(__dirname, 'endpoint-daemon.ts'), state.dir], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  child.unref();
  state.endpointPid = child.pid;
  await writeState(state);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const applied = await readEndpointApplied(state.dir).catch(() => undefined);
    if (applied && applied.revision >= revision) return child.pid!;
    if (child.exitCode !== null || !processMatches(child.pid, /endpoint-daemon/)) throw new Error(`the client endpoint forwarder exited at start; see ${out}`);
    if (Date.now() > deadline) throw new Error(`the client endpoint forwarder did not start within 60 s; see ${out}`);
    await sleep(100);
  }
}

/** Data directories under `dir` (any folder holding a PG_VERSION file, two levels below a host). */
function findDatadirs(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 3 || !existsSync(d)) return;
    if (existsSync(join(d, 'PG_VERSION'))) {
      found.push(d);
      return;
    }
    for (const entry of readdirSync(d, { withFileTypes: true })) if (entry.isDirectory()) walk(join(d, entry.name), depth + 1);
  };
  walk(dir, 0);
  return found;
}

async function killProcessGroup(pid: number | undefined, pattern: RegExp): Promise<void> {
  if (!processMatches(pid, pattern)) return;
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    try {
      process.kill(-pid!, signal);
    } catch {
      try {
        process.kill(pid!, signal);
      } catch {
        return;
      }
    }
    for (let i = 0; i < 50 && processMatches(pid, pattern); i++) await sleep(100);
    if (!processMatches(pid, pattern)) return;
  }
}

/**
 * Stops and removes everything of the cluster in `dir`: the prober, the client endpoint's forwarder, every instance
 * (crashed: the data goes anyway), DynamoDB Local when the cluster started it (else the
 * cluster's catalog items), and the directory. Safe to run twice and after a crash.
 */
export async function downLocalCluster(dir: string): Promise<{ stopped: number }> {
  const state = readLocalState(dir);
  await killProcessGroup(state?.proberPid, /prober-daemon/);
  await stopInProcessEndpoint(dir);
  await killProcessGroup(state?.endpointPid, /endpoint-daemon/);
  const datadirs = new Set([...(state?.rows.map((r) => r.datadir) ?? []), ...findDatadirs(dir)]);
  let stopped = 0;
  for (const datadir of datadirs) if (await killInstance(datadir).catch(() => false)) stopped += 1;
  if (state?.dynamo.pid) await killProcessGroup(state.dynamo.pid, /DynamoDBLocal/);
  else if (state?.dynamo.endpoint) await localCatalog(state.dynamo.endpoint).destroy(state.clusterId).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
  return { stopped };
}
