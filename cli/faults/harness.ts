/**
 * The fault matrix's harness: local clusters shared between trials (a pool), one trial
 * of a scenario under a write workload on every content, and what every trial measures
 * whatever its fault:
 *
 * - failovers: changes of a content's acting primary in the catalog (polled, timed by
 *   the history row of the flip); false ones are those the scenario did not expect;
 * - lost commits: acknowledged rows missing on the acting primary at the end;
 * - split-brain commits: commits a client that never learned of the failover (a
 *   StaleWriter on the old primary's address, `synchronous_commit = local`) got
 *   acknowledged after the flip;
 * - the longest commit stall on healthy contents (and on the primary of a content whose
 *   mirror was faulted), bounded by grace period + probe interval + 2 s;
 * - stuck contents: contents that commit nothing any more once the fault is over;
 * - detection: fault to the prober's fail-over decision.
 *
 * Every wait polls a condition (durations of faults are scenario parameters), and
 * everything a trial starts is stopped in `finally`, also when the scenario throws. After
 * a trial the cluster is brought back (addresses, stopped instances, an old primary
 * rewound into a mirror) and reused when it is healthy again, else replaced.
 */
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Client } from 'pg';
import { COORDINATOR_CONTENT, emptyMemory, pairsByContent, type ClusterSnapshot, type HistoryRow, type SegmentRow } from '../../lambdas/core/model';
import type { Settings } from '../../lambdas/core/settings';
import { isRunning, killInstance, postmasterPid } from '../../lambdas/adapters/local/host';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import type { MetricName } from '../../lambdas/ports/telemetry';
import { longestStallMs, StaleWriter, Timeline, WORKLOAD_TABLE, Workload } from '../failover-drill';
import { downLocalCluster, LOCAL_SUPERUSER, startBackgroundProber, upLocalCluster, type LocalCluster } from '../local-cluster';
import { startLocalProber, timelineTelemetry, type LocalProber, type LocalProberOptions, type TimelineEvent } from '../local-prober';

/** Prober settings of the matrix's clusters: short trials (the end-to-end tests' TEST_SETTINGS). */
export const FAULT_SETTINGS = { probeIntervalSeconds: 1, probeTimeoutSeconds: 1, probeRetries: 1, probeRetryDelaySeconds: 0.2, mirrorDownGracePeriodSeconds: 2 };

/** What kind of cluster a scenario needs. Clusters of the same kind are shared. */
export interface FaultClusterSpec {
  /** Prober settings over FAULT_SETTINGS. */
  settings?: Record<string, number>;
  /** Its own DynamoDB Local (a scenario that stops it must not stop everybody's). */
  ownDynamo?: boolean;
}

/** A cluster of the matrix: two segment hosts, one primary each, group mirroring, no coordinator. */
export interface FaultCluster extends LocalCluster {
  clusterId: string;
  dir: string;
  /** Rows as built: every instance's own address and data directory. */
  built: SegmentRow[];
  settings: Settings;
  key: string;
}

/** Progress lines (stderr in the tool, nothing in tests). */
export type Log = (line: string) => void;

const credentials = trustCredentials(LOCAL_SUPERUSER);

/** One statement on its own connection as the superuser. */
export async function sql<R extends Record<string, unknown> = Record<string, unknown>>(row: SegmentRow, text: string, params?: unknown[], timeoutMs = 10_000): Promise<R[]> {
  return withSegmentClient(row, credentials, { connectTimeoutMs: Math.min(timeoutMs, 5000), statementTimeoutMs: timeoutMs, applicationName: 'fts_fault_matrix' }, async (c: Client) => (await c.query<R>(text, params)).rows);
}

/** Clusters shared between trials and scenarios of the same kind; at most one idle cluster is kept. */
export class ClusterPool {
  private idle: FaultCluster[] = [];
  private readonly all = new Set<FaultCluster>();
  private counter = 0;

  constructor(private readonly options: { dynamoEndpoint?: string; log?: Log } = {}) {}

  /** A healthy cluster of this kind: the idle one if it is of that kind and still healthy, else a new one. */
  async acquire(spec: FaultClusterSpec = {}): Promise<FaultCluster> {
    const key = JSON.stringify({ settings: spec.settings ?? {}, ownDynamo: spec.ownDynamo ?? false });
    for (const c of this.idle.splice(0)) {
      if (c.key === key && (await clusterHealth(c)) === undefined) return c;
      await this.discard(c);
    }
    const clusterId = `faults-${process.pid}-${++this.counter}`;
    const dir = await mkdtemp(join(tmpdir(), 'fts-faults-'));
    this.options.log?.(`  building cluster ${clusterId}${spec.ownDynamo ? ' with its own DynamoDB Local' : ''}`);
    const cluster = await upLocalCluster(
      { clusterId, hosts: 2, primariesPerHost: 1, mirroring: 'group', coordinator: false, standby: false, settings: { ...FAULT_SETTINGS, ...spec.settings } },
      { dir, dynamoEndpoint: spec.ownDynamo ? undefined : this.options.dynamoEndpoint },
    ).catch(async (e: unknown) => {
      await downLocalCluster(dir).catch(() => undefined);
      throw e;
    });
    const fc: FaultCluster = { ...cluster, clusterId, dir: cluster.state.dir, built: structuredClone(cluster.state.rows), settings: cluster.state.settings, key };
    this.all.add(fc);
    return fc;
  }

  /** Gives a cluster back: kept for the next trial when `reusable`, else removed. */
  async release(cluster: FaultCluster, reusable: boolean): Promise<void> {
    if (reusable) this.idle.push(cluster);
    else await this.discard(cluster);
  }

  private async discard(cluster: FaultCluster): Promise<void> {
    this.all.delete(cluster);
    this.idle = this.idle.filter((c) => c !== cluster);
    await downLocalCluster(cluster.dir).catch(() => undefined);
  }

  /** Stops and removes every cluster it made. */
  async destroyAll(): Promise<void> {
    for (const c of [...this.all]) await this.discard(c);
  }
}

/** Why a cluster is not healthy (status up, every acting primary writable with sync rep on and its mirror streaming in sync), or undefined. */
export async function clusterHealth(cluster: FaultCluster): Promise<string | undefined> {
  const snapshot = await cluster.catalog.load(cluster.clusterId);
  if (snapshot.status !== 'up') return `catalog status ${snapshot.status}`;
  if (snapshot.pendingPromotions.length) return 'a promotion is pending';
  if (snapshot.pendingFences?.length) return `a fence is owed to dbid ${snapshot.pendingFences.map((f) => f.dbid).join(', ')}`;
  const settings = { ...cluster.settings, probeRetries: 0 };
  for (const pair of pairsByContent(snapshot.segments)) {
    if (!pair.primary || !pair.mirror) continue;
    const p = await cluster.probe.probe(pair.primary, settings, pair.mirror);
    if (!p.ok) return `primary dbid ${pair.primary.dbid}: ${p.kind}`;
    if (p.inRecovery || !p.syncRepOn || p.mirror.state !== 'streaming' || p.mirror.syncState !== 'sync') {
      return `primary dbid ${pair.primary.dbid}: ${p.inRecovery ? 'in recovery' : `sync rep ${p.syncRepOn ? 'on' : 'off'}, mirror ${p.mirror.state} ${p.mirror.syncState}`}`;
    }
    const m = await cluster.probe.probe(pair.mirror, settings);
    if (!m.ok || !m.inRecovery) return `mirror dbid ${pair.mirror.dbid}: ${m.ok ? 'not in recovery' : m.kind}`;
  }
  return undefined;
}

/** Polls `check` until it returns something other than undefined; throws `failure` (or a timeout message) after `timeoutMs`. */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 100, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (signal?.aborted) throw new Error(`stopped while waiting for ${what}`);
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${(timeoutMs / 1000).toFixed(0)} s${lastError ? ` (${(lastError as Error).message})` : ''}`);
    await delay(intervalMs, undefined, { signal }).catch(() => undefined);
  }
}

/** Starts an in-process prober of the cluster whose events go to `timeline`. */
export function startProber(cluster: FaultCluster, timeline: Timeline, options: Partial<LocalProberOptions> = {}): LocalProber {
  // Passed as a variable: adapters the prober may take (the host, for fencing) reach it when it does.
  const proberOptions = {
    clusterId: cluster.clusterId,
    catalog: cluster.catalog,
    probe: cluster.probe,
    control: cluster.control,
    host: cluster.host,
    telemetry: timelineTelemetry(timeline.push),
    retryIntervalMs: 0,
    ...options,
  };
  return startLocalProber(proberOptions);
}

/** Whether the primary reports `mirror` connected (streaming or catching up). */
async function mirrorConnected(cluster: FaultCluster, primary: SegmentRow, mirror: SegmentRow): Promise<boolean> {
  const p = await cluster.probe.probe(primary, { ...cluster.settings, probeRetries: 0 }, mirror);
  return p.ok && !p.inRecovery && (p.mirror.state === 'streaming' || p.mirror.state === 'catchup');
}

async function waitConnected(cluster: FaultCluster, primary: SegmentRow, mirror: SegmentRow, timeoutMs: number): Promise<boolean> {
  return pollUntil('mirror connected', async () => ((await mirrorConnected(cluster, primary, mirror)) ? true : undefined), timeoutMs, 200).then(
    () => true,
    () => false,
  );
}

/** Options of {@link restoreCluster}. */
export interface RestoreOptions {
  log?: Log;
  /** dbids that were acting primaries before the trial: one that is a mirror now is rewound at once (its timeline diverged). */
  formerPrimaries?: number[];
  timeoutMs?: number;
}

/**
 * Brings a cluster back after a trial, as an operator would: catalog addresses back to
 * the instances' own, fences the catalog owes carried out by the prober first, an acting
 * primary that is down started, a mirror that is down started, an old primary (stopped,
 * fenced, crashed or running as a zombie) rewound into a mirror of the new primary
 * (gprecoverseg; a base backup when the rewind fails); then waits until a prober has
 * marked every pair in sync, and clears the prober's memory (nothing a trial left, such as
 * a remembered failover attempt, reaches the next). Throws when it does not get there.
 */
export async function restoreCluster(cluster: FaultCluster, options: RestoreOptions = {}): Promise<void> {
  const log = options.log ?? (() => undefined);
  const timeoutMs = options.timeoutMs ?? 120_000;
  const timeline = new Timeline();
  const prober = startProber(cluster, timeline, { owner: 'fault-matrix-restore' });
  try {
    const id = cluster.clusterId;
    let snapshot = await cluster.catalog.load(id);
    const built = new Map(cluster.built.map((r) => [r.dbid, r]));
    const moved = snapshot.segments.filter((r) => {
      const b = built.get(r.dbid);
      return b && (b.port !== r.port || b.address !== r.address);
    });
    if (moved.length) {
      const time = new Date().toISOString();
      await cluster.catalog.apply(id, snapshot.version, {
        rows: moved.map((r) => ({ ...r, address: built.get(r.dbid)!.address, port: built.get(r.dbid)!.port })),
        history: moved.map((r) => ({ time, dbid: r.dbid, description: `fault matrix: address of dbid ${r.dbid} restored to ${built.get(r.dbid)!.address}:${built.get(r.dbid)!.port}` })),
      });
      snapshot = await cluster.catalog.load(id);
    }
    // A fence owed to an old primary is the prober's to carry out: rebuilt first, the mirror would be stopped again.
    await pollUntil('the fences the catalog owes', async () => (((snapshot = await cluster.catalog.load(id)).pendingFences ?? []).length ? undefined : true), 60_000, 250);
    for (const pair of pairsByContent(snapshot.segments)) {
      const primary = pair.primary;
      const mirror = pair.mirror;
      if (!primary || pair.content === COORDINATOR_CONTENT) continue;
      if (!isRunning(primary.datadir)) {
        log(`  restore: starting primary dbid ${primary.dbid}`);
        await cluster.host.start(primary);
      }
      if (!mirror) continue;
      const diverged = options.formerPrimaries?.includes(mirror.dbid) ?? false;
      if (!diverged && (await waitConnected(cluster, primary, mirror, 5000))) continue;
      if (!diverged && !isRunning(mirror.datadir) && existsSync(join(mirror.datadir, 'standby.signal'))) {
        log(`  restore: starting mirror dbid ${mirror.dbid}`);
        await cluster.host.start(mirror).catch(() => undefined);
        if (await waitConnected(cluster, primary, mirror, 15_000)) continue;
      }
      log(`  restore: rewinding dbid ${mirror.dbid} into a mirror of dbid ${primary.dbid}`);
      await cluster.host.stop(mirror, 'immediate').catch(() => killInstance(mirror.datadir));
      try {
        await cluster.host.rebuildAsMirror(mirror, primary, 'rewind');
      } catch (e) {
        log(`  restore: pg_rewind of dbid ${mirror.dbid} failed (${(e as Error).message}); base backup instead`);
        await cluster.host.stop(mirror, 'immediate').catch(() => killInstance(mirror.datadir));
        await cluster.host.rebuildAsMirror(mirror, primary, 'basebackup');
      }
    }
    let why: string | undefined = 'not checked';
    await pollUntil(`cluster ${id} back in sync`, async () => ((why = await clusterHealth(cluster)) === undefined ? true : undefined), timeoutMs, 250).catch((e: Error) => {
      throw new Error(`${e.message}: ${why}`);
    });
  } finally {
    await prober.stop();
  }
  await clearProberMemory(cluster);
}

/** Stores an empty prober memory with the lease (taken and given back at once); nothing when another prober holds it. */
async function clearProberMemory(cluster: FaultCluster): Promise<void> {
  const snapshot = await cluster.catalog.load(cluster.clusterId);
  if (JSON.stringify(snapshot.memory) === JSON.stringify(emptyMemory())) return;
  const lease = await cluster.catalog.acquireLease(cluster.clusterId, 'fault-matrix-reset', 10_000, Date.now());
  if (!lease) return;
  try {
    await cluster.catalog.renewLease(lease, 10_000, Date.now(), emptyMemory());
  } finally {
    await cluster.catalog.releaseLease(lease).catch(() => undefined);
  }
}

/** A catalog flip: the acting primary of a content changed. */
export interface Flip {
  content: number;
  fromDbid: number;
  toDbid: number;
  /** Epoch ms: the flip's history row when found, else when it was first seen. */
  at: number;
}

/** Polls the catalog and records every change of a content's acting primary. */
class FlipMonitor {
  readonly flips: Flip[] = [];
  private stopping = false;
  private running?: Promise<void>;
  private readonly acting = new Map<number, number>();

  constructor(
    private readonly cluster: FaultCluster,
    initial: ClusterSnapshot,
  ) {
    for (const r of initial.segments) if (r.role === 'p') this.acting.set(r.content, r.dbid);
  }

  start(): void {
    this.running = (async () => {
      while (!this.stopping) {
        await this.poll().catch(() => undefined);
        await delay(200);
      }
    })();
  }

  async poll(): Promise<void> {
    const snapshot = await this.cluster.catalog.load(this.cluster.clusterId);
    for (const r of snapshot.segments) {
      if (r.role !== 'p') continue;
      const was = this.acting.get(r.content);
      if (was !== undefined && was !== r.dbid) this.flips.push({ content: r.content, fromDbid: was, toDbid: r.dbid, at: Date.now() });
      this.acting.set(r.content, r.dbid);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    await this.poll().catch(() => undefined);
  }
}

/** What a scenario expects of a trial. */
export interface Expectations {
  /** Contents whose failover (exactly one flip) is expected. */
  failover: number[];
  /** Contents whose acting primary is faulted (its stall is not measured). */
  primaryFault: number[];
  /** Contents whose mirror is faulted (its primary's stall is bounded). */
  mirrorFault: number[];
  /** Contents that may commit nothing until the cluster is restored (an operator must act). */
  unavailable: number[];
}

/** Outcome of one trial. */
export interface TrialResult {
  scenario: string;
  trial: number;
  /** `not-provoked`: the fault could not be brought about; nothing was judged but the safety targets. */
  status: 'pass' | 'fail' | 'not-provoked';
  /** Why it failed, one sentence each. */
  failures: string[];
  notes: string[];
  failovers: number;
  falseFailovers: number;
  lostCommits: number;
  splitBrainCommits: number;
  /** Longest commit stall on healthy contents and on primaries whose mirror was faulted (ms); absent when every content's primary was faulted. */
  maxStallMs?: number;
  /** Fault to the fail-over decision (ms), when a failover was expected and decided. */
  detectionMs?: number;
  stuckContents: number[];
  acknowledged: number;
  durationMs: number;
}

/** Parameters of a scenario (durations of faults, timeouts, counts). */
export type ScenarioParams = Record<string, number>;

/** One scenario of the matrix. */
export interface Scenario {
  name: string;
  title: string;
  /** The expected outcome, as the table shows it. */
  expected: string;
  cluster?: FaultClusterSpec;
  /** Start the standard in-process prober before `run` (default true). */
  prober?: boolean;
  params?: ScenarioParams;
  /** Longest `run` may take (ms); default 180 s. */
  timeoutMs?: number;
  run(t: Trial): Promise<void>;
}

/**
 * Decisions that change the catalog or an instance (a prober that is not the lease
 * holder must carry out none of them); alarms and waits are not among them.
 */
export const ACTING_DECISIONS = [
  'fail-over',
  'promote-again',
  'mark-mirror-down',
  'sync-rep-off',
  'sync-rep-on',
  'mark-in-sync',
  'mark-catching-up',
  'double-fault',
  'content-unavailable',
  'primary-back',
  'fence-zombie',
  'retry-fence',
];

/** One trial: the scenario's handle on the cluster, the workload and the measurements. */
export class Trial {
  readonly timeline = new Timeline();
  readonly workloads = new Map<number, Workload>();
  readonly staleWriters = new Map<number, StaleWriter>();
  readonly expectations: Expectations = { failover: [], primaryFault: [], mirrorFault: [], unavailable: [] };
  readonly failures: string[] = [];
  readonly notes: string[] = [];
  readonly startedAt = Date.now();
  readonly params: ScenarioParams;
  initial!: ClusterSnapshot;
  /** First fault: the stall window starts here. */
  faultAt?: number;
  /** Latest fault: detection is measured from here. */
  detectionFrom?: number;
  notProvoked?: string;
  private readonly extraTimelines: Timeline[] = [];
  private readonly probers: LocalProber[] = [];
  private readonly daemons: number[] = [];
  private readonly defers: (() => Promise<unknown> | unknown)[] = [];
  private readonly abort = new AbortController();
  private monitor?: FlipMonitor;

  constructor(
    readonly cluster: FaultCluster,
    readonly scenario: Scenario,
    readonly index: number,
    readonly log: Log,
  ) {
    this.params = { ...scenario.params };
  }

  get clusterId(): string {
    return this.cluster.clusterId;
  }

  get settings(): Settings {
    return this.cluster.settings;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The contents of the cluster (segments only). */
  contents(): number[] {
    return pairsByContent(this.initial.segments)
      .map((p) => p.content)
      .filter((c) => c !== COORDINATOR_CONTENT);
  }

  /** The acting primary of a content when the trial began. */
  primaryOf(content: number): SegmentRow {
    const r = this.initial.segments.find((s) => s.content === content && s.role === 'p');
    if (!r) throw new Error(`content ${content} has no acting primary`);
    return r;
  }

  /** The mirror of a content when the trial began. */
  mirrorOf(content: number): SegmentRow {
    const r = this.initial.segments.find((s) => s.content === content && s.role === 'm');
    if (!r) throw new Error(`content ${content} has no mirror`);
    return r;
  }

  /** The instance's own address (as built), whatever the catalog says now. */
  direct(dbid: number): SegmentRow {
    const current = this.initial.segments.find((s) => s.dbid === dbid);
    const built = this.cluster.built.find((s) => s.dbid === dbid);
    if (!current || !built) throw new Error(`no dbid ${dbid}`);
    return { ...current, address: built.address, port: built.port, datadir: built.datadir };
  }

  /** The catalog row of a dbid now. */
  async row(dbid: number): Promise<SegmentRow> {
    const r = (await this.cluster.catalog.load(this.clusterId)).segments.find((s) => s.dbid === dbid);
    if (!r) throw new Error(`no dbid ${dbid}`);
    return r;
  }

  /** Declares what the scenario expects (merged into earlier declarations). */
  expect(e: Partial<Expectations>): void {
    for (const k of Object.keys(e) as (keyof Expectations)[]) this.expectations[k] = [...new Set([...this.expectations[k], ...(e[k] ?? [])])];
  }

  /** Marks the moment of a fault (now, or `at`). */
  fault(at = Date.now()): number {
    this.faultAt ??= at;
    this.detectionFrom = at;
    return at;
  }

  fail(reason: string): void {
    if (!this.failures.includes(reason)) this.failures.push(reason);
  }

  note(text: string): void {
    this.notes.push(text);
  }

  /** The fault did not happen (e.g. a disk that cannot be made to fail without root): the trial is reported as such. */
  notProvokedBecause(reason: string): void {
    this.notProvoked = reason;
  }

  /** Runs `fn` when the trial ends, also on failure (last registered first). */
  defer(fn: () => Promise<unknown> | unknown): void {
    this.defers.push(fn);
  }

  /** Waits `ms` (a fault's duration, a scenario parameter); ends early when the trial is stopped. */
  async sleep(ms: number): Promise<void> {
    await delay(ms, undefined, { signal: this.signal }).catch(() => undefined);
    if (this.signal.aborted) throw new Error('the trial was stopped');
  }

  /** Polls `check` until it returns a value; throws `what: not within N s` after `timeoutMs`. */
  waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
    return pollUntil(what, check, timeoutMs, intervalMs, this.signal);
  }

  /** Every event of every prober of the trial at or after `since`. */
  events(since = this.startedAt): TimelineEvent[] {
    for (const t of this.extraTimelines) t.poll();
    return [this.timeline, ...this.extraTimelines]
      .flatMap((t) => t.events)
      .filter((e) => e.at >= since)
      .sort((a, b) => a.at - b.at);
  }

  /** Metric events of `name` at or after `since`. */
  metric(name: MetricName, since = this.startedAt): TimelineEvent[] {
    return this.events(since).filter((e) => e.level === 'metric' && e.message === name);
  }

  /** Decisions of kind `kind` logged at or after `since` (any prober), optionally of one content. */
  decisions(kind: string, since = this.startedAt, content?: number, timeline?: Timeline): TimelineEvent[] {
    const events = timeline ? (timeline.poll(), timeline.events.filter((e) => e.at >= since)) : this.events(since);
    return events.filter((e) => e.decision === kind && (content === undefined || e.content === content));
  }

  /** History rows written at or after `since`. */
  async history(since = this.startedAt): Promise<HistoryRow[]> {
    return (await this.cluster.catalog.history(this.clusterId)).filter((h) => Date.parse(h.time) >= since - 1000);
  }

  /** Waits until `n` probe rounds have ended after now (of the trial's in-process probers, or of `timeline`). */
  async waitRounds(n: number, timeline: Timeline = this.timeline, timeoutMs = 60_000): Promise<void> {
    const since = Date.now();
    await this.waitFor(`${n} probe rounds`, async () => {
      timeline.poll();
      return timeline.events.filter((e) => e.at >= since && e.level === 'metric' && e.message === 'RoundDurationMs').length >= n ? true : undefined;
    }, timeoutMs);
  }

  /** Starts an in-process prober (several may run; they compete for the lease). */
  startProber(options: Partial<LocalProberOptions> = {}): LocalProber {
    const prober = startProber(this.cluster, this.timeline, options);
    this.probers.push(prober);
    return prober;
  }

  /** Waits until the prober `owner` (any when absent) of the in-process timeline holds the lease. */
  async waitForLease(owner?: string, timeoutMs = 60_000): Promise<void> {
    const since = this.startedAt;
    await this.waitFor(owner ? `the prober ${owner} to take the lease` : 'a prober to take the lease', async () =>
      this.timeline.events.some((e) => e.at >= since && e.message === 'prober lease acquired' && (owner === undefined || String(e.owner).startsWith(owner))) ? true : undefined,
    timeoutMs);
  }

  /**
   * Starts the prober as a background process (`ftsctl local up`'s daemon) and waits
   * until it holds the lease; it is killed when the trial ends. Its timeline is returned
   * and counted among the trial's events.
   */
  async startDaemon(): Promise<{ pid: number; timeline: Timeline }> {
    // A fresh log: the daemon's start is recognized by the lease line in it.
    if (existsSync(this.cluster.proberLog)) renameSync(this.cluster.proberLog, `${this.cluster.proberLog}.${Date.now()}`);
    const timeline = new Timeline(this.cluster.proberLog);
    this.extraTimelines.push(timeline);
    const pid = await startBackgroundProber(this.cluster);
    this.daemons.push(pid);
    return { pid, timeline };
  }

  /** SIGSTOPs a process group (a postmaster and its backends, a daemon); thawed when the trial ends at the latest. Returns the thaw. */
  freeze(pid: number): () => void {
    signalGroup(pid, 'SIGSTOP');
    let thawed = false;
    const thaw = (): void => {
      if (thawed) return;
      thawed = true;
      signalGroup(pid, 'SIGCONT');
    };
    this.defer(thaw);
    return thaw;
  }

  /**
   * SIGSTOPs a whole instance, as a paused VM or a hung host: the postmaster first (so it
   * forks nothing new), then every process it started. PostgreSQL's children each run in
   * a session of their own, so the postmaster's process group alone would leave the
   * walsender and every open session running. Thawed when the trial ends at the latest.
   */
  freezeInstance(row: SegmentRow): () => void {
    const pid = postmasterPid(row.datadir);
    if (pid === undefined || !isRunning(row.datadir)) throw new Error(`dbid ${row.dbid} does not run`);
    signalPid(pid, 'SIGSTOP');
    const children = childrenOf(pid);
    for (const c of children) signalPid(c, 'SIGSTOP');
    let thawed = false;
    const thaw = (): void => {
      if (thawed) return;
      thawed = true;
      for (const c of children) signalPid(c, 'SIGCONT');
      signalPid(pid, 'SIGCONT');
    };
    this.defer(thaw);
    return thaw;
  }

  /** The acting primary of `content` in the catalog now. */
  async actingPrimary(content: number): Promise<SegmentRow | undefined> {
    return (await this.cluster.catalog.load(this.clusterId)).segments.find((s) => s.content === content && s.role === 'p');
  }

  /**
   * Waits for the failover of `content`: the catalog names another acting primary and
   * the content's workload committed on it. Returns the new primary.
   */
  async waitForFailover(content: number, timeoutMs = this.params.failoverTimeoutMs ?? 30_000): Promise<SegmentRow> {
    const old = this.primaryOf(content);
    const since = this.detectionFrom ?? this.startedAt;
    const row = await this.waitFor(`failover of content ${content}`, async () => {
      const r = await this.actingPrimary(content);
      return r && r.dbid !== old.dbid ? r : undefined;
    }, timeoutMs, 200);
    await this.waitFor(`a commit on the new primary dbid ${row.dbid} of content ${content}`, async () => (this.workloads.get(content)?.firstAckBy(row.dbid, since) ? true : undefined), 30_000, 50);
    return row;
  }

  /**
   * A client that never learned of the failover tries one `synchronous_commit = local`
   * write on an instance: `accepted`, `read-only` (in recovery), or `unreachable`.
   */
  async staleWrite(row: SegmentRow): Promise<'accepted' | 'read-only' | 'unreachable'> {
    try {
      await withSegmentClient(row, credentials, { connectTimeoutMs: 1000, statementTimeoutMs: 2000, applicationName: 'fts_fault_matrix' }, async (c) => {
        await c.query('SET synchronous_commit = local');
        await c.query(`INSERT INTO ${WORKLOAD_TABLE} (id) VALUES ($1)`, [-Date.now() * 1000 - 999]);
      });
      return 'accepted';
    } catch (e) {
      return (e as { code?: string }).code === '25006' ? 'read-only' : 'unreachable';
    }
  }

  /**
   * The old primary `old` must be fenced: stopped, or read-only. Polls until it is (a
   * pass) or until it accepts a write or `windowMs` passes (a failure).
   */
  async expectFenced(old: SegmentRow, windowMs = this.params.fenceWindowMs ?? 15_000): Promise<void> {
    const deadline = Date.now() + windowMs;
    for (;;) {
      if (!isRunning(old.datadir)) {
        this.note(`old primary dbid ${old.dbid} is stopped`);
        return;
      }
      const answer = await this.staleWrite(old);
      if (answer === 'accepted') {
        this.fail(`old primary dbid ${old.dbid} accepted a synchronous_commit = local write after the failover: not fenced`);
        return;
      }
      if (answer === 'read-only') {
        this.note(`old primary dbid ${old.dbid} runs read-only`);
        return;
      }
      if (Date.now() > deadline) {
        this.fail(`old primary dbid ${old.dbid} was neither stopped nor read-only ${(windowMs / 1000).toFixed(0)} s after its thaw or restart`);
        return;
      }
      await this.sleep(200);
    }
  }

  /** Workloads, stale writers and the flip monitor, then enough commits on every content. */
  async begin(startProber: boolean): Promise<void> {
    this.initial = await this.cluster.catalog.load(this.clusterId);
    if (startProber) {
      this.startProber({ owner: `fault-matrix-${this.scenario.name}` });
      await this.waitForLease();
    }
    for (const content of this.contents()) {
      const w = new Workload(this.cluster.catalog, this.clusterId, content);
      await w.prepare();
      w.start();
      this.workloads.set(content, w);
      const s = new StaleWriter(this.primaryOf(content));
      s.start();
      this.staleWriters.set(content, s);
    }
    this.monitor = new FlipMonitor(this.cluster, this.initial);
    this.monitor.start();
    await this.waitFor('20 commits on every content', async () => ([...this.workloads.values()].every((w) => w.acks.length >= 20) ? true : undefined), 30_000, 50);
  }

  /** Runs the scenario with its time limit; its failure is the trial's. Deferred cleanups run in any case. */
  async runScenario(): Promise<void> {
    const limit = this.scenario.timeoutMs ?? 180_000;
    let timer: NodeJS.Timeout | undefined;
    const run = this.scenario.run(this);
    try {
      await Promise.race([
        run,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the scenario did not end within ${(limit / 1000).toFixed(0)} s`)), limit);
        }),
      ]);
    } catch (e) {
      this.fail((e as Error).message);
      this.abort.abort();
      await Promise.race([run.catch(() => undefined), delay(30_000)]);
    } finally {
      clearTimeout(timer);
      await this.runDefers();
    }
  }

  private async runDefers(): Promise<void> {
    for (const fn of this.defers.splice(0).reverse()) {
      try {
        await fn();
      } catch (e) {
        this.note(`cleanup: ${(e as Error).message}`);
      }
    }
  }

  /** Contents (not expected unavailable) that commit nothing within `timeoutMs` from now. */
  async stuckContents(timeoutMs = this.params.stuckTimeoutMs ?? 20_000): Promise<number[]> {
    const since = Date.now();
    const stuck: number[] = [];
    await Promise.all(
      this.contents()
        .filter((c) => !this.expectations.unavailable.includes(c))
        .map(async (c) => {
          const w = this.workloads.get(c)!;
          await pollUntil(`a commit on content ${c}`, async () => (w.acks.some((a) => a.at > since) ? true : undefined), timeoutMs, 50).catch(() => stuck.push(c));
        }),
    );
    return stuck.sort();
  }

  /** Stops the workloads, stale writers, monitor, probers and daemons. */
  async stopAll(): Promise<void> {
    await this.runDefers();
    await Promise.all([...this.workloads.values()].map((w) => w.stop().catch(() => undefined)));
    await Promise.all([...this.staleWriters.values()].map((s) => s.stop().catch(() => undefined)));
    await this.monitor?.stop();
    for (const pid of this.daemons.splice(0)) await killGroup(pid);
    await Promise.all(this.probers.splice(0).map((p) => p.stop().catch(() => undefined)));
  }

  /** Flips seen, timed by their history rows. */
  async flips(): Promise<Flip[]> {
    const flips = this.monitor?.flips ?? [];
    const history = await this.history().catch(() => [] as HistoryRow[]);
    return flips.map((f) => {
      const row = history.find((h) => h.dbid === f.toDbid && /to p, u, and [sn]/.test(h.description) && Date.parse(h.time) <= f.at);
      return row ? { ...f, at: Math.min(f.at, Date.parse(row.time)) } : f;
    });
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

/** Processes whose parent is `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(entry));
    } catch {
      /* ended meanwhile */
    }
  }
  return found;
}

/** Sends a signal to a process group, else to the process; no error when it is gone. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* gone */
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs a process group (thawing it first is not needed) and waits until its leader is gone. */
export async function killGroup(pid: number): Promise<void> {
  signalGroup(pid, 'SIGKILL');
  await pollUntil(`process ${pid} to end`, async () => (alive(pid) ? undefined : true), 10_000, 50).catch(() => undefined);
}

/** Runs one trial of a scenario on a cluster of the pool. */
export async function runTrial(scenario: Scenario, pool: ClusterPool, index: number, log: Log = () => undefined): Promise<TrialResult> {
  const started = Date.now();
  const cluster = await pool.acquire(scenario.cluster);
  const t = new Trial(cluster, scenario, index, log);
  let stuck: number[] = [];
  let windowEnd: number;
  try {
    await t.begin(scenario.prober !== false);
    await t.runScenario();
    stuck = await t.stuckContents();
    windowEnd = Date.now();
  } catch (e) {
    t.fail(`harness: ${(e as Error).message}`);
    windowEnd = Date.now();
  } finally {
    await t.stopAll();
  }

  // What the trial did, before the cluster is put back together.
  const flips = await t.flips();
  const contents = t.initial ? t.contents() : [];
  const { failover, primaryFault, mirrorFault } = t.expectations;
  let falseFailovers = 0;
  for (const c of contents) {
    const n = flips.filter((f) => f.content === c).length;
    if (failover.includes(c)) {
      falseFailovers += Math.max(0, n - 1);
      // Not provoked: there was nothing to fail over (the safety checks still apply).
      if (n === 0 && !t.notProvoked && !t.failures.some((f) => f.includes(`content ${c}`))) t.fail(`no failover of content ${c}`);
      if (n > 1) t.fail(`content ${c} flipped ${n} times`);
    } else if (n > 0) {
      falseFailovers += n;
      t.fail(`false failover of content ${c} (dbid ${flips.find((f) => f.content === c)!.fromDbid} -> ${flips.find((f) => f.content === c)!.toDbid})`);
    }
  }
  let splitBrain = 0;
  const splitBrainIds = new Map<number, number[]>();
  for (const [content, writer] of t.staleWriters) {
    // Intervals during which the writer's instance was not the acting primary.
    let from: number | undefined;
    const counted: { id: number; afterMs: number }[] = [];
    let flipAt = 0;
    for (const f of flips.filter((x) => x.content === content)) {
      if (f.fromDbid === writer.target.dbid && from === undefined) from = flipAt = f.at;
      else if (f.toDbid === writer.target.dbid && from !== undefined) {
        counted.push(...writer.acksBetween(from, f.at).map((a) => ({ id: a.id, afterMs: a.at - flipAt })));
        from = undefined;
      }
    }
    if (from !== undefined) counted.push(...writer.acksBetween(from).map((a) => ({ id: a.id, afterMs: a.at - flipAt })));
    splitBrain += counted.length;
    if (counted.length) {
      splitBrainIds.set(content, counted.map((c) => c.id));
      const after = counted.map((c) => c.afterMs);
      t.fail(`${counted.length} split-brain commit(s) on content ${content}: old primary dbid ${writer.target.dbid} acknowledged synchronous_commit = local writes ${Math.min(...after)} to ${Math.max(...after)} ms after the flip`);
    }
  }
  const windowStart = t.faultAt ?? t.startedAt;
  const bound = (t.settings.mirrorDownGracePeriodSeconds + t.settings.probeIntervalSeconds + 2) * 1000;
  let maxStallMs: number | undefined;
  for (const c of contents) {
    if (primaryFault.includes(c) || failover.includes(c)) continue;
    const stall = longestStallMs(t.workloads.get(c)?.acks ?? [], windowStart, windowEnd);
    maxStallMs = Math.max(maxStallMs ?? 0, stall);
    if (stall > bound) t.fail(`commits on content ${c} stalled ${stall} ms (bound ${bound} ms: grace period + probe interval + 2 s)${mirrorFault.includes(c) ? ' while its mirror was faulted' : ''}`);
  }
  for (const c of stuck) t.fail(`content ${c} is stuck: no commit within ${((t.params.stuckTimeoutMs ?? 20_000) / 1000).toFixed(0)} s after the fault`);
  let detectionMs: number | undefined;
  if (failover.length && t.detectionFrom !== undefined) {
    const detected = t.events(t.detectionFrom).find((e) => e.decision === 'fail-over' && failover.includes(Number(e.content)));
    if (detected) detectionMs = detected.at - t.detectionFrom;
  }

  const dumpDir = process.env.FTS_FAULTS_TIMELINE_DIR;
  if (dumpDir) {
    // For a post-mortem: every prober event, the history and the flips of the trial.
    const file = join(dumpDir, `${scenario.name}-${index}-${process.pid}.json`);
    writeFileSync(file, JSON.stringify({ scenario: scenario.name, trial: index, faultAt: t.faultAt, flips, events: t.events(), history: await t.history().catch(() => []) }, null, 1));
    t.note(`timeline in ${file}`);
  }
  let reusable = false;
  try {
    await restoreCluster(cluster, { log, formerPrimaries: t.initial?.segments.filter((r) => r.role === 'p').map((r) => r.dbid) });
    reusable = true;
  } catch (e) {
    t.note(`cluster replaced: ${(e as Error).message}`);
  }
  let lost = 0;
  let acknowledged = 0;
  for (const [c, w] of t.workloads) {
    acknowledged += w.acks.length;
    try {
      const count = await w.lostCommits();
      lost += count.lost.length;
      if (count.lost.length) t.fail(`${count.lost.length} acknowledged commit(s) of content ${c} lost`);
    } catch (e) {
      if (!t.expectations.unavailable.includes(c) || reusable) t.fail(`lost commits of content ${c} not countable: ${(e as Error).message}`);
    }
  }
  // Whether the split-brain commits diverged: absent on the acting primary, or replicated to it before its promotion.
  for (const [content, ids] of splitBrainIds) {
    try {
      const acting = (await cluster.catalog.load(cluster.clusterId)).segments.find((r) => r.content === content && r.role === 'p')!;
      const found = await sql<{ id: string }>(acting, `SELECT id FROM ${WORKLOAD_TABLE} WHERE id = ANY($1::bigint[])`, [ids]);
      t.note(`split-brain commits on content ${content}: ${ids.length - found.length} of ${ids.length} missing on the acting primary dbid ${acting.dbid} (diverged), ${found.length} replicated to it before its promotion`);
    } catch (e) {
      t.note(`split-brain commits on content ${content}: divergence not checked (${(e as Error).message})`);
    }
  }
  await pool.release(cluster, reusable);

  const status: TrialResult['status'] = t.failures.length ? 'fail' : t.notProvoked ? 'not-provoked' : 'pass';
  if (t.notProvoked) t.note(`not provoked: ${t.notProvoked}`);
  return {
    scenario: scenario.name,
    trial: index,
    status,
    failures: t.failures,
    notes: t.notes,
    failovers: flips.length,
    falseFailovers,
    lostCommits: lost,
    splitBrainCommits: splitBrain,
    ...(maxStallMs !== undefined ? { maxStallMs } : {}),
    ...(detectionMs !== undefined ? { detectionMs } : {}),
    stuckContents: stuck,
    acknowledged,
    durationMs: Date.now() - started,
  };
}
