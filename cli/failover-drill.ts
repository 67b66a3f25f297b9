/**
 * What the demo, the benchmark and the end-to-end tests share: a write workload that
 * always writes to the acting primary the catalog names (as an application behind a
 * Greenplum coordinator would), the prober's timeline, and one measured failover.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import type { SegmentRow } from '../lambdas/core/model';
import type { Catalog } from '../lambdas/ports/catalog';
import { killInstance } from '../lambdas/adapters/local/host';
import { trustCredentials, withSegmentClient } from '../lambdas/adapters/postgres/connection';
import type { TimelineEvent } from './local-prober';
import { LOCAL_SUPERUSER } from './local-cluster';

/** The table the workload writes to on every content it writes to. */
export const WORKLOAD_TABLE = 'fts_workload';

/** One acknowledged commit. */
export interface Ack {
  id: number;
  /** dbid that acknowledged it. */
  dbid: number;
  /** Epoch ms of the acknowledgement. */
  at: number;
}

/** The workload's long-lived connection (one insert after another, like an application's). */
async function connect(row: Pick<SegmentRow, 'address' | 'port'>, timeoutMs: number): Promise<Client> {
  const client = new Client({ host: row.address, port: row.port, user: LOCAL_SUPERUSER, database: 'postgres', connectionTimeoutMillis: timeoutMs, query_timeout: 15_000 });
  client.on('error', () => undefined); // a killed server surfaces on the next query
  await client.connect();
  return client;
}

/** Where a workload through a client endpoint connects (the endpoint's listen address). */
export interface WorkloadEndpoint {
  address: string;
  port: number;
}

/**
 * Inserts rows one at a time into the acting primary of `content`, re-reading the
 * catalog after every failure; or, given `endpoint`, always through that one address
 * (a client of the coordinator's endpoint, which never reads the catalog), asking each
 * new connection which dbid it reached. Counts only what the server acknowledged.
 */
export class Workload {
  readonly acks: Ack[] = [];
  failures = 0;
  private nextId = 1;
  private running?: Promise<void>;
  private stopping = false;

  constructor(
    private readonly catalog: Catalog,
    private readonly clusterId: string,
    readonly content: number,
    private readonly endpoint?: WorkloadEndpoint,
  ) {}

  private async actingPrimary(): Promise<SegmentRow> {
    const snapshot = await this.catalog.load(this.clusterId);
    const row = snapshot.segments.find((r) => r.content === this.content && r.role === 'p');
    if (!row) throw new Error(`content ${this.content} has no acting primary in the catalog`);
    return row;
  }

  /** Runs `work` on one short connection to the acting primary. */
  private async onActingPrimary<T>(work: (client: Client) => Promise<T>): Promise<T> {
    return withSegmentClient(await this.actingPrimary(), trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 5000, statementTimeoutMs: 30_000 }, work);
  }

  /** Creates the table (replicated to the mirror like any other write); ids continue after an earlier workload's. */
  async prepare(): Promise<void> {
    await this.onActingPrimary(async (client) => {
      await client.query(`CREATE TABLE IF NOT EXISTS ${WORKLOAD_TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
      const { rows } = await client.query<{ max: string | null }>(`SELECT max(id) FROM ${WORKLOAD_TABLE}`);
      this.nextId = Number(rows[0]?.max ?? 0) + 1_000_000; // beyond ids that committed unacknowledged
    });
  }

  /** Starts writing in the background. */
  start(): void {
    this.stopping = false;
    this.running = this.loop();
  }

  private async loop(): Promise<void> {
    let client: Client | undefined;
    let dbid = 0;
    while (!this.stopping) {
      try {
        if (!client) {
          if (this.endpoint) {
            client = await connect(this.endpoint, 1000);
            dbid = Number((await client.query<{ dbid: string }>(`SELECT current_setting('fts.dbid') AS dbid`)).rows[0].dbid);
          } else {
            const row = await this.actingPrimary();
            client = await connect(row, 1000);
            dbid = row.dbid;
          }
        }
        const id = this.nextId++; // never reused: an unacknowledged id may still have committed
        await client.query(`INSERT INTO ${WORKLOAD_TABLE} (id) VALUES ($1)`, [id]);
        this.acks.push({ id, dbid, at: Date.now() });
      } catch {
        this.failures += 1;
        await client?.end().catch(() => undefined);
        client = undefined;
        await sleep(50);
      }
    }
    await client?.end().catch(() => undefined);
  }

  /** Stops writing and waits for the write in flight. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  /** First commit acknowledged by `dbid` at or after `since`. */
  firstAckBy(dbid: number, since: number): Ack | undefined {
    return this.acks.find((a) => a.dbid === dbid && a.at >= since);
  }

  /** Acknowledged commits missing from the current acting primary (must be none). */
  async lostCommits(): Promise<{ acknowledged: number; found: number; lost: number[] }> {
    // The acks before the read: a running workload acknowledges more while the SELECT runs.
    const acks = [...this.acks];
    const ids = await this.onActingPrimary(async (client) => new Set((await client.query<{ id: string }>(`SELECT id FROM ${WORKLOAD_TABLE}`)).rows.map((r) => Number(r.id))));
    const lost = acks.filter((a) => !ids.has(a.id)).map((a) => a.id);
    return { acknowledged: acks.length, found: acks.length - lost.length, lost };
  }
}

/** The prober's events, from its JSON-lines log (background prober) or pushed in-process. */
export class Timeline {
  readonly events: TimelineEvent[] = [];
  private offset = 0;

  constructor(private readonly file?: string) {}

  /** Adds an event (the in-process prober's sink). */
  push = (event: TimelineEvent): void => {
    this.events.push(event);
  };

  /** Reads what the log gained since the last call (only the new bytes). */
  poll(): TimelineEvent[] {
    if (!this.file || !existsSync(this.file)) return [];
    const size = statSync(this.file).size;
    if (size <= this.offset) return [];
    const buffer = Buffer.alloc(size - this.offset);
    const fd = openSync(this.file, 'r');
    try {
      readSync(fd, buffer, 0, buffer.length, this.offset);
    } finally {
      closeSync(fd);
    }
    const text = buffer.toString('utf8');
    const end = text.lastIndexOf('\n') + 1; // a line still being written waits for the next poll
    this.offset += Buffer.byteLength(text.slice(0, end));
    const fresh = text
      .slice(0, end)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as TimelineEvent);
    this.events.push(...fresh);
    return fresh;
  }

  /** Waits for the first event at or after `since` that matches. */
  async waitFor(what: string, match: (e: TimelineEvent) => boolean, since: number, timeoutMs = 60_000): Promise<TimelineEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.poll();
      const found = this.events.find((e) => e.at >= since && match(e));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(20);
    }
  }
}

/** Milestones of one failover, epoch ms. */
export interface FailoverMeasurement {
  content: number;
  killedDbid: number;
  newPrimaryDbid: number;
  killedAt: number;
  detectedAt: number;
  flippedAt: number;
  promotedAt: number;
  writableAt: number;
  /** First commit the workload got from the new primary. */
  firstCommitAt: number;
  detectionMs: number;
  /** Kill to first commit on the new primary at the address the catalog names. */
  rtoMs: number;
}

/** The timeline's milestones of a PromoteMirror run, by the messages the service logs. */
export const MILESTONES = {
  detected: (e: TimelineEvent): boolean => e.decision === 'fail-over',
  flipped: (e: TimelineEvent): boolean => e.message === 'catalog flipped',
  promoted: (e: TimelineEvent): boolean => e.message === 'mirror promoted',
  writable: (e: TimelineEvent): boolean => e.message === 'new primary accepts writes',
} as const;

/**
 * Kills the acting primary of the workload's content and waits until the workload
 * commits on the promoted mirror. `onMilestone` hears each milestone as it happens.
 */
export async function killAndMeasure(
  catalog: Catalog,
  clusterId: string,
  workload: Workload,
  timeline: Timeline,
  onMilestone: (name: string, atMs: number, detail: string) => void = () => undefined,
): Promise<FailoverMeasurement> {
  const snapshot = await catalog.load(clusterId);
  const primary = snapshot.segments.find((r) => r.content === workload.content && r.role === 'p')!;
  const mirror = snapshot.segments.find((r) => r.content === workload.content && r.role === 'm')!;
  const killedAt = Date.now();
  await killInstance(primary.datadir);
  onMilestone('killed', killedAt, `kill -9 of primary dbid ${primary.dbid} (${primary.hostname}:${primary.port})`);
  const byContent = (e: TimelineEvent): boolean => e.content === workload.content;
  const detected = await timeline.waitFor('failure detection', (e) => MILESTONES.detected(e) && byContent(e), killedAt);
  onMilestone('detected', detected.at, detected.message);
  const flipped = await timeline.waitFor('catalog flip', (e) => MILESTONES.flipped(e) && byContent(e), killedAt);
  onMilestone('catalog flipped', flipped.at, `dbid ${mirror.dbid} is the acting primary of content ${workload.content} (catalog version ${String(flipped.version)})`);
  const promoted = await timeline.waitFor('promotion', (e) => MILESTONES.promoted(e) && byContent(e), killedAt);
  onMilestone('promoted', promoted.at, `pg_promote on dbid ${mirror.dbid}, sync rep off`);
  const writable = await timeline.waitFor('write check', (e) => MILESTONES.writable(e) && byContent(e), killedAt);
  onMilestone('writable', writable.at, `dbid ${mirror.dbid} committed the write check`);
  const deadline = Date.now() + 30_000;
  let first: Ack | undefined;
  while (!(first = workload.firstAckBy(mirror.dbid, killedAt))) {
    if (Date.now() > deadline) throw new Error(`the workload made no commit on dbid ${mirror.dbid} within 30 s of its promotion`);
    await sleep(10);
  }
  onMilestone('first commit', first.at, `the workload committed id ${first.id} on dbid ${mirror.dbid}`);
  return {
    content: workload.content,
    killedDbid: primary.dbid,
    newPrimaryDbid: mirror.dbid,
    killedAt,
    detectedAt: detected.at,
    flippedAt: flipped.at,
    promotedAt: promoted.at,
    writableAt: writable.at,
    firstCommitAt: first.at,
    detectionMs: detected.at - killedAt,
    rtoMs: first.at - killedAt,
  };
}

/**
 * Longest time without an acknowledged commit in [from, to]: the gaps between
 * consecutive acknowledgements, counted from the last one at or before `from` (or from
 * `from` when there is none) and up to `to`. `acks` are in time order.
 */
export function longestStallMs(acks: readonly Ack[], from: number, to: number): number {
  let previous = from;
  let longest = 0;
  for (const a of acks) {
    if (a.at <= from) {
      previous = a.at;
      continue;
    }
    if (a.at > to) break;
    longest = Math.max(longest, a.at - previous);
    previous = a.at;
  }
  return Math.max(longest, to - previous);
}

/**
 * A client that never learned of a failover (split-brain check): it keeps writing to the
 * address of one instance, the acting primary when it started, with
 * `synchronous_commit = local`, so its commits do not wait for a mirror, reconnecting
 * after every failure. Every commit it gets acknowledged after that instance stopped
 * being the acting primary is a split-brain commit: two instances of one content
 * acknowledged writes. Ids are negative, so they never collide with a Workload's.
 */
export class StaleWriter {
  readonly acks: Ack[] = [];
  failures = 0;
  private nextId = -Date.now() * 1000;
  private running?: Promise<void>;
  private stopping = false;
  private client?: Client;

  /** `paceMs`: pause between two commits. */
  constructor(
    readonly target: SegmentRow,
    private readonly paceMs = 20,
  ) {}

  /** Starts writing in the background. */
  start(): void {
    this.stopping = false;
    this.running = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      try {
        if (!this.client) {
          // No statement timeout: a write in flight on a frozen instance completes if it is ever thawed, as an application's would.
          const client = new Client({ host: this.target.address, port: this.target.port, user: LOCAL_SUPERUSER, database: 'postgres', connectionTimeoutMillis: 1000, keepAlive: true });
          client.on('error', () => undefined);
          this.client = client;
          await client.connect();
          await client.query('SET synchronous_commit = local');
        }
        const id = this.nextId--;
        await this.client.query(`INSERT INTO ${WORKLOAD_TABLE} (id) VALUES ($1)`, [id]);
        this.acks.push({ id, dbid: this.target.dbid, at: Date.now() });
        await sleep(this.paceMs);
      } catch {
        this.failures += 1;
        this.drop();
        if (!this.stopping) await sleep(100);
      }
    }
    this.drop();
  }

  private drop(): void {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    try {
      client.connection.stream.destroy(); // never waits on a frozen or vanished server
    } catch {
      /* gone already */
    }
    void client.end().catch(() => undefined);
  }

  /** Stops writing; a write in flight is abandoned (its connection is closed). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.drop();
    await this.running;
  }

  /** Acknowledged commits in [from, to). */
  acksBetween(from: number, to = Infinity): Ack[] {
    return this.acks.filter((a) => a.at >= from && a.at < to);
  }
}
