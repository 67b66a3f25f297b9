/**
 * In-memory fakes of the ports in lambdas/ports, for fast tests of workflow step logic.
 *
 * - {@link FakeCatalog}: the Catalog contract as the DynamoDB adapter implements it: the
 *   same input checks, the same validator (`parseChange` / `validateChange`) before
 *   anything is written, compare-and-set on the version, writes conditioned on the
 *   prober lease (owner, token, expiry), history kept in order. Operations lapse by
 *   `clock` (the real clock unless a test sets it), as the adapter's by its machine's. Each call is atomic (no
 *   await between its check and its write), like one DynamoDB transaction.
 * - {@link FakeSegments}: SegmentProbe, SegmentControl and SegmentHost over a scripted
 *   world of instances a test changes directly (`kill`, `crashHost`, `isolateHost`,
 *   `instance(dbid)`), so that "dbid 2 is dead" makes probes refused, a fence finds it
 *   stopped, a promotion makes its mirror a primary, and so on.
 *
 * Not modelled (use the real adapters in test/adapters and test/e2e for these): time
 * (probes never time out slowly, retries cost nothing, `durationMs` is 0), WAL beyond a
 * counter (a streaming mirror has received and flushed all of its primary's WAL; its
 * replay lag is 0 unless a test sets `replayLagBytes`), timelines beyond a `needsRewind`
 * flag, background host jobs (a rebuild started with `startRebuild` is over when the call
 * returns, unless a test scripts its job with `scriptedJobs` or `setJobStatus`), size
 * limits other than DynamoDB's 100 items per transaction, crash recovery, credentials,
 * connection slots, TransactionConflict retries.
 */
import { clusterStatusOf } from '../../lambdas/core/decide';
import { CatalogConflictError, ClusterNotFoundError, HostCommandError, LeaseLostError, NotLeaseHolderError, NotWritableError, SegmentUnreachableError, ValidationError, WrongInstanceError } from '../../lambdas/core/errors';
import { parseChange, validateChange } from '../../lambdas/core/catalog-change';
import { COORDINATOR_CONTENT, emptyMemory } from '../../lambdas/core/model';
import type { CatalogChange, ClusterSnapshot, ClusterStatus, HistoryRow, PendingFence, PendingOperation, PendingPromotion, ProberMemory, SegmentRow } from '../../lambdas/core/model';
import type { MirrorReplication, ProbeResult } from '../../lambdas/core/probe';
import { validateHistoryRows, validateSegmentRows } from '../../lambdas/core/rows';
import { parseSettings, type Settings } from '../../lambdas/core/settings';
import { checkClusterId, checkLeaseArgs, type Catalog, type Lease, type LeaseCondition } from '../../lambdas/ports/catalog';
import type { FenceReport, HostJob, HostJobStatus, ProbeOptions, RebuildMethod, SegmentControl, SegmentHost, SegmentProbe, StopReport, WalReceiverStatus } from '../../lambdas/ports/segments';

/** DynamoDB's limit on the items of one TransactWriteItems, which the adapter enforces. */
const MAX_TRANSACTION_ITEMS = 100;

interface StoredCluster {
  version: number;
  status: ClusterStatus;
  settings: Settings;
  segments: SegmentRow[];
  pending: Record<string, PendingPromotion>;
  fences: Record<string, PendingFence>;
  operations: Record<string, PendingOperation>;
  memory: ProberMemory;
  history: HistoryRow[];
  /** Never reset: the next acquisition gets a larger one. */
  leaseToken: number;
  leaseOwner?: string;
  leaseExpiresAt?: number;
}

/** Catalog in memory with the DynamoDB adapter's semantics (see the module comment). */
export class FakeCatalog implements Catalog {
  private readonly clusters = new Map<string, StoredCluster>();
  /** Called at the start of every `apply`, before the version is checked: a test can write in between (a concurrent writer). */
  beforeApply?: (clusterId: string) => void;
  /**
   * Called once an `apply` has committed, with the version it wrote and the change: a
   * test that throws here loses the answer of a write that stays (see {@link loseAnswerOnce}).
   */
  afterApply?: (clusterId: string, version: number, change: CatalogChange) => void;
  /** Number of successful `apply` calls, for tests that count writes. */
  writes = 0;
  /** The time `apply` validates at (operations lapse by it); the real clock unless a test sets it. */
  clock: () => Date = () => new Date();

  /** Creates the cluster at version 1 with one history row; ValidationError on bad rows or settings, or when it exists. */
  async initialize(clusterId: string, segments: SegmentRow[], settings: Settings, time: string): Promise<void> {
    checkClusterId(clusterId);
    const rows = validateSegmentRows(segments);
    if (!rows.length) throw new ValidationError(`cluster ${clusterId} needs at least one segment row`);
    const stored = parseSettings(settings);
    const first = rows.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p') ?? [...rows].sort((a, b) => a.dbid - b.dbid)[0];
    const contents = new Set(rows.filter((r) => r.content !== COORDINATOR_CONTENT).map((r) => r.content)).size;
    const history = validateHistoryRows([
      { time, dbid: first.dbid, description: `cluster ${clusterId} initialized with ${rows.length} segment instances (${contents} contents) at catalog version 1` },
    ]);
    if (this.clusters.has(clusterId)) throw new ValidationError(`cluster ${clusterId} already exists in the catalog; destroy it first`);
    this.clusters.set(clusterId, {
      version: 1,
      status: clusterStatusOf(rows),
      settings: stored,
      segments: clone(rows),
      pending: {},
      fences: {},
      operations: {},
      memory: emptyMemory(),
      history,
      leaseToken: 0,
    });
  }

  /** A copy of the cluster's state (rows by dbid, markers and operations by content, fences by dbid). */
  async load(clusterId: string): Promise<ClusterSnapshot> {
    return this.snapshot(clusterId);
  }

  async loadSettings(clusterId: string): Promise<Settings> {
    return clone(this.get(clusterId).settings);
  }

  /** Synchronous read, so that `apply` checks and writes without yielding in between. */
  private snapshot(clusterId: string): ClusterSnapshot {
    const c = this.get(clusterId);
    return clone({
      clusterId,
      version: c.version,
      status: c.status,
      segments: [...c.segments].sort((a, b) => a.dbid - b.dbid),
      pendingPromotions: Object.values(c.pending).sort((a, b) => a.content - b.content),
      pendingFences: Object.values(c.fences).sort((a, b) => a.dbid - b.dbid),
      pendingOperations: Object.values(c.operations).sort((a, b) => a.content - b.content),
      memory: c.memory,
    });
  }

  /**
   * As DynamoDbCatalog.apply: input checks, then CatalogConflictError when the version
   * moved, then the catalog-change validator, then (with `lease`) NotLeaseHolderError
   * unless that lease is held and live at `lease.now`; nothing is written on any error.
   */
  async apply(clusterId: string, expectedVersion: number, change: CatalogChange, lease?: LeaseCondition): Promise<number> {
    if (!Number.isInteger(expectedVersion) || expectedVersion < 1) throw new ValidationError(`expected version must be an integer >= 1, got ${expectedVersion}`);
    const parsed = parseChange(change);
    const itemCount = 1 + parsed.rows.length + parsed.history.length;
    if (itemCount > MAX_TRANSACTION_ITEMS) {
      throw new ValidationError(`a catalog change of ${itemCount} items exceeds the ${MAX_TRANSACTION_ITEMS} of one transaction; a change that large is a bug`);
    }
    this.beforeApply?.(clusterId);
    const c = this.get(clusterId);
    if (c.version !== expectedVersion) throw new CatalogConflictError(clusterId, expectedVersion);
    const { pending, fences, operations, segments } = validateChange(this.snapshot(clusterId), parsed, this.clock());
    if (lease) {
      checkLeaseArgs(lease.owner, 1, lease.now);
      if (!(c.leaseOwner === lease.owner && c.leaseToken === lease.token && c.leaseExpiresAt !== undefined && c.leaseExpiresAt >= lease.now)) {
        throw new NotLeaseHolderError(`catalog of cluster ${clusterId} not written: the prober lease (owner ${lease.owner}, token ${lease.token}) is no longer held; ${describeHolder(c, lease.now)}`);
      }
    }
    // The validator ran on a copy: write the result in one go.
    c.segments = clone(segments);
    if (parsed.status !== undefined) c.status = parsed.status;
    if (pending) c.pending = clone(pending);
    if (fences) c.fences = clone(fences);
    if (operations) c.operations = clone(operations);
    c.history.push(...clone(parsed.history));
    c.version = expectedVersion + 1;
    this.writes += 1;
    this.afterApply?.(clusterId, c.version, clone(change));
    return c.version;
  }

  /**
   * The next `apply` whose change `matches` commits, and then throws CatalogConflictError
   * instead of returning, as DynamoDB's answer to a committed transaction that the SDK
   * retried (its version condition fails the second time): the caller does not know its
   * write is in. Once only.
   */
  loseAnswerOnce(matches: (change: CatalogChange) => boolean = () => true): void {
    this.afterApply = (clusterId, version, change) => {
      if (!matches(change)) return;
      this.afterApply = undefined;
      throw new CatalogConflictError(clusterId, version - 1);
    };
  }

  /** History oldest first: the newest `limit` rows (all when omitted). */
  async history(clusterId: string, limit?: number): Promise<HistoryRow[]> {
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new ValidationError(`history limit must be an integer >= 0, got ${limit}`);
    const rows = this.get(clusterId).history;
    if (limit === 0) return [];
    return clone(limit === undefined ? rows : rows.slice(-limit));
  }

  /** Takes the lease when free, expired before `now`, or held by `owner`; the token grows every time. Null while another owner holds a live lease. */
  async acquireLease(clusterId: string, owner: string, ttlMs: number, now: number): Promise<Lease | null> {
    checkLeaseArgs(owner, ttlMs, now);
    const c = this.get(clusterId);
    if (c.leaseOwner !== undefined && !(c.leaseExpiresAt! < now) && c.leaseOwner !== owner) return null;
    c.leaseToken += 1;
    c.leaseOwner = owner;
    c.leaseExpiresAt = now + ttlMs;
    return { clusterId, owner, token: c.leaseToken, expiresAt: now + ttlMs };
  }

  /** Extends a lease still held and live at `now`, storing `memory`; LeaseLostError otherwise. */
  async renewLease(lease: Lease, ttlMs: number, now: number, memory?: ProberMemory): Promise<Lease> {
    checkLeaseArgs(lease.owner, ttlMs, now);
    const c = this.clusters.get(lease.clusterId);
    if (!c || !(c.leaseOwner === lease.owner && c.leaseToken === lease.token && c.leaseExpiresAt! >= now)) {
      throw new LeaseLostError(`prober lease of cluster ${lease.clusterId} (owner ${lease.owner}, token ${lease.token}) is lost: ${c ? describeHolder(c, now) : 'the cluster is not in the catalog'}`);
    }
    c.leaseExpiresAt = now + ttlMs;
    if (memory) c.memory = { ...emptyMemory(), ...clone(memory) };
    return { ...lease, expiresAt: now + ttlMs };
  }

  /** Gives the lease up if this holder still has it; the token stays, so the next one is larger. */
  async releaseLease(lease: Lease): Promise<void> {
    const c = this.clusters.get(lease.clusterId);
    if (c && c.leaseOwner === lease.owner && c.leaseToken === lease.token) {
      delete c.leaseOwner;
      delete c.leaseExpiresAt;
    }
  }

  async destroy(clusterId: string): Promise<void> {
    this.clusters.delete(clusterId);
  }

  private get(clusterId: string): StoredCluster {
    checkClusterId(clusterId);
    const c = this.clusters.get(clusterId);
    if (!c) throw new ClusterNotFoundError(clusterId);
    return c;
  }
}

const clone = <T>(value: T): T => structuredClone(value);

function describeHolder(c: StoredCluster, now: number): string {
  if (c.leaseOwner === undefined) return 'the lease was released';
  const expiresAt = c.leaseExpiresAt ?? 0;
  return `now held by ${c.leaseOwner} with token ${c.leaseToken}${expiresAt < now ? `, expired ${now - expiresAt} ms ago` : ''}`;
}

// ---------------------------------------------------------------------------------

/** One PostgreSQL instance of the fake world. Tests may change any field directly. */
export interface FakeInstance {
  /** Identity as `fts.dbid`, `fts.content` and `pg_control_system()` report it. */
  dbid: number;
  content: number;
  systemIdentifier: string;
  /** Where it runs: probes and SQL find it by address:port, host commands by hostname and data directory. */
  hostname: string;
  address: string;
  port: number;
  datadir: string;
  running: boolean;
  /** A standby (`standby.signal`); false for a primary. */
  inRecovery: boolean;
  /** The primary its `primary_conninfo` names (a standby streams from it when both run). */
  upstreamDbid?: number;
  /** The mirror `synchronous_standby_names` names; undefined: sync rep off. */
  syncStandbyDbid?: number;
  /** Was a primary and was then fenced: it may have diverged and cannot stream until rebuilt. */
  needsRewind: boolean;
  /** Fenced (standby config written, stopped); cleared by a rebuild. */
  fenced: boolean;
  /** Cannot write or flush (full or read-only disk): write checks and commits fail with an I/O error. */
  diskFailure: boolean;
  /** A frozen postmaster: answers nothing, a fence has to kill it. */
  frozen: boolean;
  /** WAL position (bytes); a streaming standby has replayed all of its upstream's. */
  lsn: number;
  /** Replication slots (mirror dbids) on this instance. */
  slots: number[];
  startedAt: string;
  /**
   * A standby's last WAL position received and flushed (`pg_last_wal_receive_lsn()`) once
   * its stream ended: a primary's fast stop sends its streaming standbys everything up to
   * and including the shutdown checkpoint. While it streams it reports its upstream's position.
   */
  receivedLsn?: number;
  /** WAL a streaming standby received but has not replayed yet (its primary's `flush_lsn - replay_lsn`); 0 when unset. */
  replayLagBytes?: number;
  /**
   * Its WAL receiver still looks connected (streaming, sync), but nothing new reaches it
   * (a stalled network between the pair): a primary's shutdown checkpoint never arrives.
   */
  receiveStalled?: boolean;
  /** A fast stop does not end cleanly (a backend crashed during the shutdown checkpoint): the control file says `in production`. */
  uncleanStop?: boolean;
  /**
   * Its WAL receiver never gets to `streaming` (a standby whose WAL does not follow its
   * primary's, a receiver that keeps restarting): `walReceiver` reports this state, and
   * it streams from nothing. A full copy (a new instance) does not inherit it; a rewind does.
   */
  stuckReceiver?: 'startup' | 'waiting';
  /** With `stuckReceiver`: the number of `walReceiver` calls it still answers so; then it streams. Unset: for good. */
  stuckReceiverPolls?: number;
}

/** Options of {@link FakeSegments}. */
export interface FakeSegmentsOptions {
  /** Clock for start times (default: a fixed instant). */
  now?: () => Date;
}

/**
 * A scripted world of instances behind SegmentProbe, SegmentControl and SegmentHost.
 * Every SQL-level call finds the instance at the row's address:port and checks its
 * identity (WrongInstanceError otherwise), like the PostgreSQL adapters; host commands
 * find it by hostname and data directory, like the fence script. `calls` records what
 * was asked, in order (`probe 2`, `fence 2`, `promote 4`, ...).
 */
export class FakeSegments implements SegmentProbe, SegmentControl, SegmentHost {
  private readonly instances = new Map<number, FakeInstance>();
  /** Hosts the control plane cannot reach (SQL and host commands); their instances run on and replicate. */
  readonly isolatedHosts = new Set<string>();
  /** Hosts that are down: their instances are stopped and host commands fail. */
  readonly downHosts = new Set<string>();
  readonly calls: string[] = [];
  /** Background jobs by id: a rebuild started with `startRebuild` runs at once, so its status is final when it returns. */
  private readonly jobs = new Map<string, HostJobStatus>();
  /** Every job `startRebuild` returned, in order. */
  readonly jobsStarted: HostJob[] = [];
  /**
   * Statuses of the next rebuilds `startRebuild` starts, in order: such a job reports its
   * status and the rebuild is not run (a copy still running, a process lost, a failure).
   * Once they are used up, rebuilds run at once as usual.
   */
  readonly scriptedJobs: HostJobStatus[] = [];
  private readonly now: () => Date;

  constructor(options: FakeSegmentsOptions = {}) {
    this.now = options.now ?? (() => new Date('2026-01-01T00:00:00.000Z'));
  }

  /**
   * A world as the catalog rows describe it: up rows run, down rows are stopped; acting
   * primaries are writable with sync rep on towards an in-sync mirror; mirrors stream
   * from their content's primary. System identifiers come from the rows, else one per content.
   */
  static fromRows(rows: readonly SegmentRow[], options: FakeSegmentsOptions = {}): FakeSegments {
    const world = new FakeSegments(options);
    for (const row of rows) {
      const primary = rows.find((r) => r.content === row.content && r.role === 'p');
      const mirror = rows.find((r) => r.content === row.content && r.role === 'm');
      world.add({
        dbid: row.dbid,
        content: row.content,
        systemIdentifier: row.systemIdentifier ?? String(7_000_000_000_000_000_000n + BigInt(row.content + 1)),
        hostname: row.hostname,
        address: row.address,
        port: row.port,
        datadir: row.datadir,
        running: row.status === 'u',
        inRecovery: row.role === 'm',
        ...(row.role === 'm' && primary ? { upstreamDbid: primary.dbid } : {}),
        ...(row.role === 'p' && mirror && row.mode === 's' ? { syncStandbyDbid: mirror.dbid } : {}),
        ...(row.role === 'p' && mirror ? { slots: [mirror.dbid] } : {}),
      });
    }
    return world;
  }

  /** Adds (or replaces) the instance of a dbid; unspecified fields take a healthy default. */
  add(instance: Pick<FakeInstance, 'dbid' | 'content' | 'hostname' | 'address' | 'port' | 'datadir'> & Partial<FakeInstance>): FakeInstance {
    const full: FakeInstance = {
      systemIdentifier: String(7_000_000_000_000_000_000n + BigInt(instance.content + 1)),
      running: true,
      inRecovery: false,
      needsRewind: false,
      fenced: false,
      diskFailure: false,
      frozen: false,
      lsn: 0x3000000,
      slots: [],
      startedAt: this.now().toISOString(),
      ...instance,
    };
    this.instances.set(full.dbid, full);
    return full;
  }

  /** The live instance of a dbid (mutable); throws when there is none. */
  instance(dbid: number): FakeInstance {
    const inst = this.instances.get(dbid);
    if (!inst) throw new Error(`the fake world has no instance of dbid ${dbid}`);
    return inst;
  }

  /** `kill -9` of the postmaster. */
  kill(dbid: number): void {
    this.instance(dbid).running = false;
  }

  /** The host dies: every instance on it stops, host commands fail until `restoreHost`. */
  crashHost(hostname: string): void {
    this.downHosts.add(hostname);
    for (const inst of this.instances.values()) if (inst.hostname === hostname) inst.running = false;
  }

  /** The host is back (its instances stay stopped until started). */
  restoreHost(hostname: string): void {
    this.downHosts.delete(hostname);
  }

  /** The control plane loses (or regains) its route to a host; replication between instances is unaffected. */
  isolateHost(hostname: string, isolated = true): void {
    if (isolated) this.isolatedHosts.add(hostname);
    else this.isolatedHosts.delete(hostname);
  }

  /** True when `mirror` streams from the primary it names: both run, the upstream is a primary, the mirror has not diverged. */
  streaming(mirror: FakeInstance): boolean {
    const upstream = mirror.upstreamDbid === undefined ? undefined : this.instances.get(mirror.upstreamDbid);
    return mirror.running && !mirror.frozen && mirror.inRecovery && !mirror.needsRewind && mirror.stuckReceiver === undefined
      && upstream !== undefined && upstream.running && !upstream.frozen && !upstream.inRecovery;
  }

  // SegmentProbe ----------------------------------------------------------------

  async probe(segment: SegmentRow, settings: Settings, mirror?: SegmentRow, options: ProbeOptions = {}): Promise<ProbeResult> {
    this.calls.push(`probe ${segment.dbid}`);
    const attempts = settings.probeRetries + 1;
    const fail = (kind: 'refused' | 'timeout' | 'wrong-instance' | 'disk', message: string, extra: object = {}): ProbeResult =>
      ({ ok: false, dbid: segment.dbid, kind, message: `dbid ${segment.dbid} (${segment.address}:${segment.port}): ${message}`, attempts: kind === 'wrong-instance' ? 1 : attempts, durationMs: 0, ...extra });
    if (this.isolatedHosts.has(segment.hostname)) return fail('timeout', 'timeout expired');
    const inst = this.at(segment);
    if (!inst || !inst.running) return fail('refused', 'connect ECONNREFUSED');
    if (inst.frozen) return fail('timeout', 'timeout expired');
    const mismatch = identityMismatch(segment, inst);
    if (mismatch) return fail('wrong-instance', mismatch);
    let wrote: boolean | undefined;
    if (options.writeCheck) {
      if (!inst.inRecovery && inst.diskFailure) return fail('disk', 'could not write heartbeat: No space left on device', { diskError: 'io' });
      wrote = !inst.inRecovery;
      if (wrote) inst.lsn += 1;
    }
    return {
      ok: true,
      dbid: segment.dbid,
      inRecovery: inst.inRecovery,
      mirror: this.replicationOf(inst, mirror?.dbid),
      syncRepOn: inst.syncStandbyDbid !== undefined,
      syncRepSettled: true,
      lsn: formatLsn(inst.lsn),
      startedAt: inst.startedAt,
      initializedAt: inst.startedAt,
      walSenderTimeoutMs: 6000,
      systemIdentifier: inst.systemIdentifier,
      ...(wrote !== undefined ? { wrote } : {}),
      attempts: 1,
      durationMs: 0,
    };
  }

  async probeAll(segments: readonly SegmentRow[], settings: Settings, catalogRows: readonly SegmentRow[] = []): Promise<ProbeResult[]> {
    return Promise.all(segments.map((s) => this.probe(s, settings, catalogRows.find((r) => r.content === s.content && r.dbid !== s.dbid))));
  }

  // SegmentControl --------------------------------------------------------------

  async promote(segment: SegmentRow): Promise<void> {
    this.calls.push(`promote ${segment.dbid}`);
    const inst = this.reach(segment);
    inst.inRecovery = false;
    delete inst.upstreamDbid;
    delete inst.syncStandbyDbid;
    delete inst.receivedLsn;
  }

  async setSyncRep(primary: SegmentRow, mirror: SegmentRow | undefined, on: boolean, guard?: () => boolean): Promise<void> {
    this.calls.push(`sync-rep ${on ? 'on' : 'off'} ${primary.dbid}`);
    if (on && !mirror) throw new ValidationError(`cannot turn sync rep on for primary dbid ${primary.dbid} without a mirror`);
    const inst = this.reach(primary);
    if (guard && !guard()) throw new NotLeaseHolderError(`not changing sync rep of dbid ${primary.dbid}: the guard refused`);
    if (on && mirror) inst.syncStandbyDbid = mirror.dbid;
    else delete inst.syncStandbyDbid;
  }

  async ensureSlot(primary: SegmentRow, mirrorDbid: number): Promise<void> {
    this.calls.push(`ensure-slot ${primary.dbid} ${mirrorDbid}`);
    const inst = this.reach(primary);
    if (!inst.slots.includes(mirrorDbid)) inst.slots.push(mirrorDbid);
  }

  /** Drops the slot; HostCommandError while its mirror streams through it. */
  async dropSlot(primary: SegmentRow, mirrorDbid: number): Promise<void> {
    this.calls.push(`drop-slot ${primary.dbid} ${mirrorDbid}`);
    const inst = this.reach(primary);
    const user = this.instances.get(mirrorDbid);
    if (inst.slots.includes(mirrorDbid) && user && user.upstreamDbid === inst.dbid && this.streaming(user)) {
      throw new HostCommandError(`slot of dbid ${mirrorDbid} on dbid ${primary.dbid} is in use: its standby still streams`, 1);
    }
    inst.slots = inst.slots.filter((d) => d !== mirrorDbid);
  }

  async walReceiver(segment: SegmentRow): Promise<WalReceiverStatus> {
    this.calls.push(`wal-receiver ${segment.dbid}`);
    const inst = this.reach(segment);
    if (inst.stuckReceiver !== undefined && inst.inRecovery) {
      const state = inst.stuckReceiver;
      if (inst.stuckReceiverPolls !== undefined && --inst.stuckReceiverPolls <= 0) {
        delete inst.stuckReceiver;
        delete inst.stuckReceiverPolls;
      }
      return { inRecovery: true, state };
    }
    if (!this.streaming(inst)) {
      return { inRecovery: inst.inRecovery, state: inst.inRecovery ? 'waiting' : 'absent', ...(inst.inRecovery && inst.receivedLsn !== undefined ? { receivedLsn: formatLsn(inst.receivedLsn) } : {}) };
    }
    const upstream = this.instance(inst.upstreamDbid!);
    return { inRecovery: true, state: 'streaming', senderHost: upstream.address, senderPort: upstream.port, heardSecondsAgo: 0, replayLsn: formatLsn(replayedBy(inst, upstream)), receivedLsn: formatLsn(upstream.lsn) };
  }

  async checkpoint(segment: SegmentRow, _timeoutMs: number): Promise<void> {
    this.calls.push(`checkpoint ${segment.dbid}`);
    this.reach(segment);
  }

  async verifyWritable(segment: SegmentRow): Promise<void> {
    this.calls.push(`verify-writable ${segment.dbid}`);
    const inst = this.reach(segment);
    if (inst.inRecovery) throw new NotWritableError(`dbid ${segment.dbid} is in recovery: cannot execute INSERT in a read-only transaction`);
    if (inst.diskFailure) throw new NotWritableError(`dbid ${segment.dbid} could not commit: No space left on device`);
    const standby = inst.syncStandbyDbid === undefined ? undefined : this.instances.get(inst.syncStandbyDbid);
    if (inst.syncStandbyDbid !== undefined && !(standby && standby.upstreamDbid === inst.dbid && this.streaming(standby))) {
      throw new NotWritableError(`dbid ${segment.dbid}: the commit waited for synchronous standby dbid ${inst.syncStandbyDbid} past the timeout`);
    }
    inst.lsn += 1;
  }

  // SegmentHost -----------------------------------------------------------------

  async fence(segment: SegmentRow, newPrimary: SegmentRow | undefined): Promise<FenceReport> {
    this.calls.push(`fence ${segment.dbid}`);
    this.host(segment);
    const inst = this.onHost(segment);
    if (!inst) return { wasRunning: false, killed: false, missing: true };
    const report = { wasRunning: inst.running, killed: inst.running && inst.frozen, missing: false };
    if (!inst.inRecovery) inst.needsRewind = true;
    inst.inRecovery = true;
    if (newPrimary) inst.upstreamDbid = newPrimary.dbid;
    // Its synchronous_standby_names stays (the fence script writes only the standby config):
    // it matters again only if it is started as a primary (a switchover undone).
    inst.fenced = true;
    inst.running = false;
    inst.frozen = false;
    return report;
  }

  async start(segment: SegmentRow, options: { asPrimary?: boolean } = {}): Promise<void> {
    this.calls.push(`start ${segment.dbid}${options.asPrimary ? ' as primary' : ''}`);
    this.host(segment);
    const inst = this.onHost(segment);
    if (!inst) throw new HostCommandError(`no data directory ${segment.datadir} on ${segment.hostname}`, 1);
    // As the start script does: without standby.signal the instance comes up writable.
    if (options.asPrimary) {
      inst.inRecovery = false;
      delete inst.upstreamDbid;
      // A fence's standby config is gone with standby.signal; it is the primary it was.
      inst.fenced = false;
      inst.needsRewind = false;
    }
    if (!inst.running) {
      inst.running = true;
      inst.startedAt = this.now().toISOString();
    }
  }

  /**
   * Stops it; the control file's checkpoint is its WAL position. A fast stop of a running
   * primary writes the shutdown checkpoint there, last (its WAL then ends
   * {@link SHUTDOWN_CHECKPOINT_BYTES} further), and its walsenders send everything to the
   * standbys streaming from it (not to a `receiveStalled` one) before they exit. An
   * `uncleanStop` instance crashes instead: no shutdown checkpoint, `in production`.
   */
  async stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<StopReport> {
    this.calls.push(`stop ${segment.dbid}`);
    this.host(segment);
    const inst = this.onHost(segment);
    if (!inst) return { wasRunning: false };
    const wasRunning = inst.running;
    const checkpointLsn = inst.lsn;
    if (mode === 'fast' && wasRunning && !inst.frozen && !inst.inRecovery && !inst.uncleanStop) {
      const standbys = [...this.instances.values()].filter((i) => i.upstreamDbid === inst.dbid && this.streaming(i));
      inst.lsn += SHUTDOWN_CHECKPOINT_BYTES;
      for (const standby of standbys) standby.receivedLsn = standby.receiveStalled ? (standby.receivedLsn ?? checkpointLsn) : inst.lsn;
    }
    inst.running = false;
    inst.frozen = false;
    const crashed = mode === 'fast' && wasRunning && inst.uncleanStop;
    const clusterState = (mode === 'fast' && !crashed) || !wasRunning ? (inst.inRecovery ? 'shut down in recovery' : 'shut down') : inst.inRecovery ? 'in archive recovery' : 'in production';
    return { wasRunning, latestCheckpointLsn: formatLsn(checkpointLsn), clusterState };
  }

  /**
   * `rewind` needs the target's data directory, stopped, of the same system; `basebackup`
   * replaces whatever is there (or nothing) with a copy of the source. Either way the
   * result streams from `primary`.
   */
  async rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void> {
    this.calls.push(`rebuild ${mirror.dbid} from ${primary.dbid} (${method})`);
    this.host(mirror);
    const source = this.at(primary);
    if (!source || !source.running || source.frozen || source.inRecovery || identityMismatch(primary, source)) {
      throw new HostCommandError(`${method} of dbid ${mirror.dbid}: source dbid ${primary.dbid} is not a running primary at ${primary.address}:${primary.port}`, 1);
    }
    let target = this.onHost(mirror);
    if (method === 'rewind') {
      if (!target) throw new HostCommandError(`pg_rewind: no data directory ${mirror.datadir} on ${mirror.hostname}`, 1);
      if (target.running) throw new HostCommandError(`pg_rewind: target server dbid ${mirror.dbid} must be shut down cleanly`, 1);
      if (target.systemIdentifier !== source.systemIdentifier) throw new HostCommandError('pg_rewind: source and target clusters are from different systems', 1);
    } else {
      target = this.add({ dbid: mirror.dbid, content: mirror.content, hostname: mirror.hostname, address: mirror.address, port: mirror.port, datadir: mirror.datadir, systemIdentifier: source.systemIdentifier, running: false });
    }
    Object.assign(target, { inRecovery: true, upstreamDbid: source.dbid, needsRewind: false, fenced: false, frozen: false, lsn: source.lsn, running: true, startedAt: this.now().toISOString() });
    delete target.syncStandbyDbid;
    delete target.receivedLsn;
    if (!source.slots.includes(mirror.dbid)) source.slots.push(mirror.dbid);
  }

  /**
   * As `rebuildAsMirror`, run at once: the returned job is already over, `succeeded` or
   * `failed` with the error's message. A host that does not answer fails the start itself.
   */
  async startRebuild(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<HostJob> {
    this.host(mirror);
    const job: HostJob = { id: `job-${this.jobs.size + 1}-dbid-${mirror.dbid}`, dbid: mirror.dbid, startedAt: this.now().toISOString() };
    this.jobsStarted.push(job);
    const scripted = this.scriptedJobs.shift();
    if (scripted) {
      this.calls.push(`rebuild ${mirror.dbid} from ${primary.dbid} (${method}, scripted ${scripted.state})`);
      this.jobs.set(job.id, { ...scripted });
      return job;
    }
    try {
      await this.rebuildAsMirror(mirror, primary, method);
      this.jobs.set(job.id, { state: 'succeeded', exitCode: 0 });
    } catch (e) {
      this.jobs.set(job.id, { state: 'failed', exitCode: (e as HostCommandError).exitCode ?? 1, message: (e as Error).message });
    }
    return job;
  }

  async jobStatus(job: HostJob): Promise<HostJobStatus> {
    this.calls.push(`job-status ${job.id}`);
    return { ...(this.jobs.get(job.id) ?? { state: 'failed', message: `no job ${job.id} on the host` }) };
  }

  async cancelJob(job: HostJob): Promise<void> {
    this.calls.push(`cancel-job ${job.id}`);
  }

  /** Changes what a started job reports from now on (a copy that progresses, a process lost, a failure). */
  setJobStatus(id: string, status: HostJobStatus): void {
    if (!this.jobs.has(id)) throw new Error(`the fake world has no job ${id}`);
    this.jobs.set(id, { ...status });
  }

  async writeMirrorConfig(mirror: SegmentRow, primary: SegmentRow): Promise<void> {
    this.calls.push(`write-mirror-config ${mirror.dbid} -> ${primary.dbid}`);
    this.host(mirror);
    const inst = this.onHost(mirror);
    if (!inst) throw new HostCommandError(`no data directory ${mirror.datadir} on ${mirror.hostname}`, 1);
    inst.inRecovery = true;
    inst.upstreamDbid = primary.dbid;
  }

  // -----------------------------------------------------------------------------

  /** The instance listening at a row's address:port (a running one first). */
  private at(segment: SegmentRow): FakeInstance | undefined {
    const here = [...this.instances.values()].filter((i) => i.address === segment.address && i.port === segment.port);
    return here.find((i) => i.running) ?? here[0];
  }

  /** The instance in a row's data directory on its host. */
  private onHost(segment: SegmentRow): FakeInstance | undefined {
    return [...this.instances.values()].find((i) => i.hostname === segment.hostname && i.datadir === segment.datadir);
  }

  /** The row's instance for a SQL call: reachable, running, and the row's (identity checked). */
  private reach(segment: SegmentRow): FakeInstance {
    if (this.isolatedHosts.has(segment.hostname)) throw new SegmentUnreachableError(`dbid ${segment.dbid} (${segment.address}:${segment.port}): timeout expired`);
    const inst = this.at(segment);
    if (!inst || !inst.running || inst.frozen) throw new SegmentUnreachableError(`dbid ${segment.dbid} (${segment.address}:${segment.port}): ${inst?.frozen ? 'timeout expired' : 'connect ECONNREFUSED'}`);
    const mismatch = identityMismatch(segment, inst);
    if (mismatch) throw new WrongInstanceError(mismatch);
    return inst;
  }

  /** Host commands need the host up and reachable (SSM Run Command or the local host agent). */
  private host(segment: SegmentRow): void {
    if (this.downHosts.has(segment.hostname) || this.isolatedHosts.has(segment.hostname)) {
      throw new HostCommandError(`host ${segment.hostname} does not answer`);
    }
  }

  /** What a primary's walsender for `mirrorDbid` (or any FTS mirror) reports. */
  private replicationOf(primary: FakeInstance, mirrorDbid?: number): MirrorReplication {
    if (primary.inRecovery) return { state: 'absent', syncState: 'none' };
    const mirror = [...this.instances.values()].find((i) => (mirrorDbid === undefined || i.dbid === mirrorDbid) && i.upstreamDbid === primary.dbid && this.streaming(i));
    if (!mirror) return { state: 'absent', syncState: 'none' };
    return { state: 'streaming', syncState: primary.syncStandbyDbid === mirror.dbid ? 'sync' : 'async', flushLsn: formatLsn(primary.lsn), replayLsn: formatLsn(replayedBy(mirror, primary)) };
  }
}

/** Bytes a fast stop's shutdown checkpoint record adds to the WAL. */
const SHUTDOWN_CHECKPOINT_BYTES = 0x28;

/** The WAL position a streaming standby has replayed: its upstream's, less its replay lag. */
const replayedBy = (standby: FakeInstance, upstream: FakeInstance): number => Math.max(0, upstream.lsn - (standby.replayLagBytes ?? 0));

/** Why the instance is not the row's, as the PostgreSQL adapters word it; undefined when it is. */
function identityMismatch(segment: SegmentRow, inst: FakeInstance): string | undefined {
  if (inst.dbid !== segment.dbid || inst.content !== segment.content) {
    return `the instance at ${segment.address}:${segment.port} is fts.dbid ${inst.dbid}, fts.content ${inst.content}, not dbid ${segment.dbid} of content ${segment.content}`;
  }
  if (segment.systemIdentifier !== undefined && segment.systemIdentifier !== inst.systemIdentifier) {
    return `the instance at ${segment.address}:${segment.port} has system identifier ${inst.systemIdentifier}, not ${segment.systemIdentifier}`;
  }
  return undefined;
}

/** `X/Y` as PostgreSQL prints an LSN. */
const formatLsn = (bytes: number): string => `${Math.floor(bytes / 2 ** 32).toString(16).toUpperCase()}/${(bytes % 2 ** 32).toString(16).toUpperCase()}`;
