/**
 * The catalog on DynamoDB (key design in ./tables.ts, reasoning in docs/catalog.md).
 *
 * Every write that changes `gp_segment_configuration` is one TransactWriteItems
 * conditioned on the cluster item's `version`, so rows, history rows, status and pending
 * markers (promotions, fences, operations) move together or not at all, and two writers
 * that read the same version cannot both win. The prober lease lives on the cluster item and is
 * compare-and-set on owner, token and expiry.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { CancellationReason } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { clusterStatusOf } from '../../core/decide';
import { CatalogConflictError, ClusterNotFoundError, LeaseLostError, NotLeaseHolderError, ValidationError } from '../../core/errors';
import { COORDINATOR_CONTENT, emptyMemory } from '../../core/model';
import type { CatalogChange, ClusterSnapshot, ClusterStatus, HistoryRow, PendingFence, PendingOperation, PendingPromotion, ProberMemory, SegmentRow } from '../../core/model';
import { validateHistoryRows, validatePendingFences, validatePendingOperations, validatePendingPromotions, validateSegmentRows } from '../../core/rows';
import { parseChange, validateChange } from '../../core/catalog-change';
import { parseSettings } from '../../core/settings';
import type { Settings } from '../../core/settings';
import { checkClusterId, checkLeaseArgs, type Catalog, type Lease, type LeaseCondition } from '../../ports/catalog';
import { catalogTableNames, historySeq } from './tables';
import type { CatalogTableNames } from './tables';

/** Options for {@link DynamoDbCatalog}. */
export interface DynamoDbCatalogOptions {
  /** A client built once per Lambda container; a new DynamoDBClient by default (endpoint from AWS_ENDPOINT_URL_DYNAMODB when set). */
  client?: DynamoDBDocumentClient | DynamoDBClient;
  /** Table names; from FTS_*_TABLE environment variables by default. */
  tables?: CatalogTableNames;
}

/** DynamoDB's limit on the items of one TransactWriteItems. */
const MAX_TRANSACTION_ITEMS = 100;
/** DynamoDB's limit on the requests of one BatchWriteItem. */
const MAX_BATCH_WRITE = 25;
/** Attempts of a write that collided with another transaction in flight on the same item. */
const CONFLICT_ATTEMPTS = 5;
/** Reads of the cluster item and rows before giving up on a catalog that keeps changing. */
const LOAD_ATTEMPTS = 5;

const CLUSTER_STATUSES: readonly ClusterStatus[] = ['up', 'degraded', 'unavailable'];

/** The cluster item as stored. */
interface ClusterItem {
  clusterId: string;
  version: number;
  status: ClusterStatus;
  settings: Settings;
  /** content (as a string) -> marker. */
  pendingPromotions?: Record<string, PendingPromotion>;
  /** dbid (as a string) -> fence owed. */
  pendingFences?: Record<string, PendingFence>;
  /** content (as a string) -> operation holding it (items written before operations existed lack it). */
  pendingOperations?: Record<string, PendingOperation>;
  memory?: Partial<ProberMemory>;
  leaseOwner?: string;
  leaseToken?: number;
  leaseExpiresAt?: number;
  createdAt: string;
  updatedAt: string;
}

/** A Greenplum catalog (`gp_segment_configuration`, `gp_configuration_history`, cluster item, prober lease) in DynamoDB. */
export class DynamoDbCatalog implements Catalog {
  private readonly doc: DynamoDBDocumentClient;
  /** The tables this catalog reads and writes. */
  readonly tables: CatalogTableNames;

  constructor(options: DynamoDbCatalogOptions = {}) {
    const client = options.client ?? new DynamoDBClient({});
    this.doc = client instanceof DynamoDBDocumentClient ? client : DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    this.tables = options.tables ?? catalogTableNames();
  }

  /**
   * Creates the cluster at version 1: cluster item, rows and one history row. Up to 98
   * rows this is one transaction conditioned on the cluster item not existing; larger
   * clusters write their rows first and the cluster item last, so a cluster never
   * appears with part of its rows. Throws ValidationError when the rows or settings are
   * invalid or the cluster already exists.
   */
  async initialize(clusterId: string, segments: SegmentRow[], settings: Settings, time: string): Promise<void> {
    checkClusterId(clusterId);
    const rows = validateSegmentRows(segments);
    if (!rows.length) throw new ValidationError(`cluster ${clusterId} needs at least one segment row`);
    const stored = parseSettings(settings);
    const first = rows.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p') ?? [...rows].sort((a, b) => a.dbid - b.dbid)[0];
    const contents = new Set(rows.filter((r) => r.content !== COORDINATOR_CONTENT).map((r) => r.content)).size;
    const [history] = validateHistoryRows([
      { time, dbid: first.dbid, description: `cluster ${clusterId} initialized with ${rows.length} segment instances (${contents} contents) at catalog version 1` },
    ]);
    if (await this.getCluster(clusterId)) throw alreadyExists(clusterId);
    // Rows without a cluster item are invisible leftovers of an interrupted destroy or
    // initialize; they would otherwise reappear as part of the new cluster. Each delete is
    // conditioned on the cluster item still being absent: a concurrent initialize that
    // won in between keeps its rows and history (this one then fails as already there).
    await this.purgeRows(clusterId, { unlessRegistered: true });

    const item: ClusterItem = {
      clusterId,
      version: 1,
      status: clusterStatusOf(rows),
      settings: stored,
      pendingPromotions: {},
      pendingFences: {},
      pendingOperations: {},
      memory: emptyMemory(),
      createdAt: time,
      updatedAt: time,
    };
    const clusterPut = { Put: { TableName: this.tables.clusters, Item: item, ConditionExpression: 'attribute_not_exists(clusterId)' } };
    const historyPut = { Put: { TableName: this.tables.history, Item: this.historyItem(clusterId, 1, 0, history) } };
    const rowPuts = rows.map((row) => ({ Put: { TableName: this.tables.segments, Item: { clusterId, ...compact(row) } } }));
    try {
      if (rowPuts.length + 2 <= MAX_TRANSACTION_ITEMS) {
        await this.transact([clusterPut, ...rowPuts, historyPut]);
      } else {
        // Rows first, each batch only while no cluster item exists (never over a winner's rows), then the cluster item.
        for (let i = 0; i < rowPuts.length; i += MAX_TRANSACTION_ITEMS - 1) await this.transact([this.unregistered(clusterId), ...rowPuts.slice(i, i + MAX_TRANSACTION_ITEMS - 1)]);
        await this.transact([clusterPut, historyPut]);
      }
    } catch (err) {
      if (firstReasonIsConditionFailure(err) || isTransactionConflict(err)) throw alreadyExists(clusterId);
      throw err;
    }
  }

  /**
   * Strongly consistent snapshot. Reads the cluster item, the rows, then the cluster
   * item again; every change bumps the version in the same transaction as its rows, so
   * equal versions prove the rows belong to that version (otherwise it reads again).
   * Throws ClusterNotFoundError, or ValidationError naming a corrupt row.
   */
  async load(clusterId: string): Promise<ClusterSnapshot> {
    for (let attempt = 1; attempt <= LOAD_ATTEMPTS; attempt++) {
      const before = await this.getCluster(clusterId);
      if (!before) throw new ClusterNotFoundError(clusterId);
      const items = await this.queryAll({
        TableName: this.tables.segments,
        KeyConditionExpression: 'clusterId = :c',
        ExpressionAttributeValues: { ':c': clusterId },
        ConsistentRead: true,
      });
      const after = await this.getCluster(clusterId);
      if (!after) throw new ClusterNotFoundError(clusterId);
      if (after.version !== before.version) continue;
      return {
        clusterId,
        version: after.version,
        status: clusterStatus(clusterId, after.status),
        segments: inCatalog(clusterId, () => validateSegmentRows(items.map(({ clusterId: _c, ...row }) => row))),
        pendingPromotions: inCatalog(clusterId, () => validatePendingPromotions(Object.values(after.pendingPromotions ?? {}))).sort((a, b) => a.content - b.content),
        pendingFences: inCatalog(clusterId, () => validatePendingFences(Object.values(after.pendingFences ?? {}))).sort((a, b) => a.dbid - b.dbid),
        pendingOperations: inCatalog(clusterId, () => validatePendingOperations(Object.values(after.pendingOperations ?? {}))).sort((a, b) => a.content - b.content),
        memory: memoryOf(after.memory),
      };
    }
    // Another writer commits faster than we can read; the caller retries as after a conflict.
    throw new CatalogConflictError(clusterId, (await this.getCluster(clusterId))?.version ?? 0);
  }

  /** The cluster's settings as stored, validated. Throws ClusterNotFoundError. */
  async loadSettings(clusterId: string): Promise<Settings> {
    const item = await this.getCluster(clusterId);
    if (!item) throw new ClusterNotFoundError(clusterId);
    return inCatalog(clusterId, () => parseSettings(item.settings));
  }

  /**
   * Changes the cluster's prober settings (`ftsctl settings --set`): `update` gets the
   * stored settings and returns the new ones, which are validated as a whole. The write
   * is conditioned on the settings still being what `update` saw (another change in
   * between: read and update again, up to 5 times), and touches nothing else: not the
   * version (settings are not `gp_segment_configuration`, and a prober's `apply` must not
   * conflict with them), not the lease. The prober reads them again after every round.
   * Throws ClusterNotFoundError, or ValidationError with nothing written.
   */
  async updateSettings(clusterId: string, update: (current: Settings) => Settings): Promise<{ before: Settings; after: Settings }> {
    for (let attempt = 1; ; attempt++) {
      const item = await this.getCluster(clusterId);
      if (!item) throw new ClusterNotFoundError(clusterId);
      const before = inCatalog(clusterId, () => parseSettings(item.settings));
      const after = parseSettings(update(before));
      try {
        await this.withConflictRetry(() =>
          this.doc.send(
            new UpdateCommand({
              TableName: this.tables.clusters,
              Key: { clusterId },
              UpdateExpression: 'SET settings = :after',
              ConditionExpression: 'attribute_exists(clusterId) AND settings = :stored',
              ExpressionAttributeValues: { ':after': after, ':stored': item.settings },
            }),
          ),
        );
        return { before, after };
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        if (attempt >= CONFLICT_ATTEMPTS) throw new CatalogConflictError(clusterId, item.version);
      }
    }
  }

  /**
   * Applies a change atomically, conditioned on `expectedVersion`; returns the new
   * version. Rejects with ValidationError, before writing anything, a change whose rows
   * are invalid, name a dbid not in the catalog, move a dbid to another content, leave
   * the catalog breaking the set rules, change a row without a history row for it, or
   * need more than 100 items; and with ContentBusyError (a ValidationError) a change that
   * takes or releases a content someone else holds (an operation holds until its
   * `expiresAt`, read on this machine's clock). Throws CatalogConflictError when the
   * catalog is no longer at `expectedVersion` (nothing was written). With `lease`, the write is also
   * conditioned on that lease being held and live at `lease.now`: NotLeaseHolderError
   * otherwise, nothing written (a prober that lost its lease cannot write).
   */
  async apply(clusterId: string, expectedVersion: number, change: CatalogChange, lease?: LeaseCondition): Promise<number> {
    if (!Number.isInteger(expectedVersion) || expectedVersion < 1) throw new ValidationError(`expected version must be an integer >= 1, got ${expectedVersion}`);
    const parsed = parseChange(change);
    const { rows, history, addRows, removeRows } = parsed;
    const itemCount = 1 + rows.length + history.length + addRows.length + removeRows.length;
    if (itemCount > MAX_TRANSACTION_ITEMS) {
      throw new ValidationError(`a catalog change of ${itemCount} items exceeds the ${MAX_TRANSACTION_ITEMS} of one transaction; a change that large is a bug`);
    }

    const current = await this.load(clusterId);
    // Validating against a snapshot of another version would prove nothing; the write would fail anyway.
    if (current.version !== expectedVersion) throw new CatalogConflictError(clusterId, expectedVersion);
    // The catalog-change rules (transitions table included) hold for every writer.
    // Operations lapse by the clock: the adapter reads it, the core does not.
    const { pending, fences, operations } = validateChange(current, parsed, new Date());

    const next = expectedVersion + 1;
    const names: Record<string, string> = { '#v': 'version' };
    const values: Record<string, unknown> = { ':expected': expectedVersion, ':next': next, ':now': new Date().toISOString() };
    const sets = ['#v = :next', 'updatedAt = :now'];
    if (change.status !== undefined) {
      names['#s'] = 'status';
      values[':status'] = change.status;
      sets.push('#s = :status');
    }
    if (pending) {
      // The whole map, computed from the snapshot: safe because it only changes under the version condition.
      values[':pending'] = pending;
      sets.push('pendingPromotions = :pending');
    }
    if (fences) {
      values[':fences'] = fences;
      sets.push('pendingFences = :fences');
    }
    if (operations) {
      values[':operations'] = operations;
      sets.push('pendingOperations = :operations');
    }
    let condition = '#v = :expected';
    if (lease) {
      checkLeaseArgs(lease.owner, 1, lease.now);
      values[':leaseOwner'] = lease.owner;
      values[':leaseToken'] = lease.token;
      values[':leaseNow'] = lease.now;
      condition += ' AND leaseOwner = :leaseOwner AND leaseToken = :leaseToken AND leaseExpiresAt >= :leaseNow';
    }
    const items = [
      {
        Update: {
          TableName: this.tables.clusters,
          Key: { clusterId },
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ...(lease ? { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const } : {}),
        },
      },
      ...rows.map((row) => ({
        Put: { TableName: this.tables.segments, Item: { clusterId, ...compact(row) }, ConditionExpression: 'attribute_exists(dbid)' },
      })),
      ...addRows.map((row) => ({
        Put: { TableName: this.tables.segments, Item: { clusterId, ...compact(row) }, ConditionExpression: 'attribute_not_exists(dbid)' },
      })),
      ...removeRows.map((dbid) => ({
        Delete: { TableName: this.tables.segments, Key: { clusterId, dbid }, ConditionExpression: 'attribute_exists(dbid)' },
      })),
      ...history.map((h, i) => ({
        Put: { TableName: this.tables.history, Item: this.historyItem(clusterId, next, i, h), ConditionExpression: 'attribute_not_exists(seq)' },
      })),
    ];
    try {
      await this.transact(items);
    } catch (err) {
      // The cluster item is the first item: its condition failing means the version moved (or the lease was lost).
      if (lease && firstReasonIsConditionFailure(err)) {
        const old = reasonsOf(err)[0]?.Item as Record<string, { S?: string; N?: string }> | undefined;
        if (old && Number(old.version?.N) === expectedVersion) {
          throw new NotLeaseHolderError(`catalog of cluster ${clusterId} not written: the prober lease (owner ${lease.owner}, token ${lease.token}) is no longer held; ${describeHolder({ Item: old }, lease.now)}`);
        }
      }
      if (firstReasonIsConditionFailure(err) || isTransactionConflict(err)) throw new CatalogConflictError(clusterId, expectedVersion);
      throw err;
    }
    return next;
  }

  /** History rows of the cluster, oldest first: the newest `limit` (all when omitted). Throws ClusterNotFoundError. */
  async history(clusterId: string, limit?: number): Promise<HistoryRow[]> {
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new ValidationError(`history limit must be an integer >= 0, got ${limit}`);
    if (!(await this.getCluster(clusterId))) throw new ClusterNotFoundError(clusterId);
    if (limit === 0) return [];
    const items = await this.queryAll(
      {
        TableName: this.tables.history,
        KeyConditionExpression: 'clusterId = :c',
        ExpressionAttributeValues: { ':c': clusterId },
        ConsistentRead: true,
        ScanIndexForward: false,
        ...(limit ? { Limit: limit } : {}),
      },
      limit,
    );
    const rows = items.map(({ time, dbid, description }) => ({ time, dbid, description }));
    return inCatalog(clusterId, () => validateHistoryRows(rows)).reverse();
  }

  /**
   * Takes the prober lease when nobody holds it, it expired before `now`, or `owner`
   * already holds it; the fencing token grows with every acquisition, re-acquisition
   * included. Returns null while another owner holds a live lease; throws
   * ClusterNotFoundError when the cluster is not in the catalog.
   */
  async acquireLease(clusterId: string, owner: string, ttlMs: number, now: number): Promise<Lease | null> {
    checkLeaseArgs(owner, ttlMs, now);
    try {
      const { Attributes } = await this.withConflictRetry(() =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tables.clusters,
            Key: { clusterId },
            UpdateExpression: 'SET leaseOwner = :owner, leaseExpiresAt = :expires ADD leaseToken :one',
            ConditionExpression: 'attribute_exists(clusterId) AND (attribute_not_exists(leaseOwner) OR leaseExpiresAt < :now OR leaseOwner = :owner)',
            ExpressionAttributeValues: { ':owner': owner, ':expires': now + ttlMs, ':now': now, ':one': 1 },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
      return { clusterId, owner, token: Number(Attributes?.leaseToken), expiresAt: now + ttlMs };
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      if (!(err as { Item?: unknown }).Item) throw new ClusterNotFoundError(clusterId);
      return null;
    }
  }

  /**
   * Extends a held lease to `now + ttlMs` and stores the prober's memory with it. Only
   * the holder (same owner and token) of a lease still live at `now` may renew: once it
   * lapsed, another prober may have taken over. Throws LeaseLostError otherwise.
   */
  async renewLease(lease: Lease, ttlMs: number, now: number, memory?: ProberMemory): Promise<Lease> {
    checkLeaseArgs(lease.owner, ttlMs, now);
    const values: Record<string, unknown> = { ':owner': lease.owner, ':token': lease.token, ':now': now, ':expires': now + ttlMs };
    const sets = ['leaseExpiresAt = :expires'];
    if (memory) {
      values[':memory'] = memoryOf(memory);
      sets.push('memory = :memory');
    }
    try {
      await this.withConflictRetry(() =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tables.clusters,
            Key: { clusterId: lease.clusterId },
            UpdateExpression: `SET ${sets.join(', ')}`,
            ConditionExpression: 'leaseOwner = :owner AND leaseToken = :token AND leaseExpiresAt >= :now',
            ExpressionAttributeValues: values,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      throw new LeaseLostError(`prober lease of cluster ${lease.clusterId} (owner ${lease.owner}, token ${lease.token}) is lost: ${describeHolder(err, now)}`);
    }
    return { ...lease, expiresAt: now + ttlMs };
  }

  /**
   * Gives the lease up if this holder (owner and token) still has it; no error when it
   * was already lost. The token stays on the item so the next one is still larger.
   */
  async releaseLease(lease: Lease): Promise<void> {
    try {
      await this.withConflictRetry(() =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tables.clusters,
            Key: { clusterId: lease.clusterId },
            UpdateExpression: 'REMOVE leaseOwner, leaseExpiresAt',
            ConditionExpression: 'leaseOwner = :owner AND leaseToken = :token',
            ExpressionAttributeValues: { ':owner': lease.owner, ':token': lease.token },
          }),
        ),
      );
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
    }
  }

  /**
   * Removes the cluster: the cluster item first, so readers see the whole cluster vanish
   * at once, then its rows and history rows. Idempotent.
   */
  async destroy(clusterId: string): Promise<void> {
    await this.withConflictRetry(() => this.doc.send(new DeleteCommand({ TableName: this.tables.clusters, Key: { clusterId } })));
    await this.purgeRows(clusterId);
  }

  private historyItem(clusterId: string, version: number, index: number, row: HistoryRow) {
    return { clusterId, seq: historySeq(version, index), version, time: row.time, dbid: row.dbid, description: row.description };
  }

  private async getCluster(clusterId: string): Promise<ClusterItem | undefined> {
    checkClusterId(clusterId);
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tables.clusters, Key: { clusterId }, ConsistentRead: true }));
    return Item as ClusterItem | undefined;
  }

  /** All items of a query (following pages), or the first `limit`. */
  private async queryAll(input: QueryCommandInput, limit?: number): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(new QueryCommand({ ...input, ExclusiveStartKey }));
      items.push(...(page.Items ?? []));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey && (limit === undefined || items.length < limit));
    return limit === undefined ? items : items.slice(0, limit);
  }

  /** Deletes every row and history row of a cluster (batches of 25, unprocessed ones retried). */
  /** A transaction item that holds only while the cluster has no cluster item. */
  private unregistered(clusterId: string) {
    return { ConditionCheck: { TableName: this.tables.clusters, Key: { clusterId }, ConditionExpression: 'attribute_not_exists(clusterId)' } };
  }

  /**
   * Deletes every row and history row of the cluster. With `unlessRegistered`, each batch
   * is one transaction that also checks the cluster item is absent: a cluster registered
   * meanwhile keeps its rows, and this ends in the ValidationError of an existing cluster.
   */
  private async purgeRows(clusterId: string, options: { unlessRegistered?: boolean } = {}): Promise<void> {
    for (const [table, sortKey] of [
      [this.tables.segments, 'dbid'],
      [this.tables.history, 'seq'],
    ] as const) {
      const keys = await this.queryAll({
        TableName: table,
        KeyConditionExpression: 'clusterId = :c',
        ExpressionAttributeValues: { ':c': clusterId },
        ProjectionExpression: 'clusterId, #k',
        ExpressionAttributeNames: { '#k': sortKey },
        ConsistentRead: true,
      });
      if (options.unlessRegistered) {
        for (let i = 0; i < keys.length; i += MAX_TRANSACTION_ITEMS - 1) {
          try {
            await this.transact([this.unregistered(clusterId), ...keys.slice(i, i + MAX_TRANSACTION_ITEMS - 1).map((Key) => ({ Delete: { TableName: table, Key } }))]);
          } catch (err) {
            if (firstReasonIsConditionFailure(err)) throw alreadyExists(clusterId);
            throw err;
          }
        }
        continue;
      }
      for (let i = 0; i < keys.length; i += MAX_BATCH_WRITE) {
        let requests: { DeleteRequest: { Key: Record<string, unknown> } }[] = keys.slice(i, i + MAX_BATCH_WRITE).map((Key) => ({ DeleteRequest: { Key } }));
        for (let attempt = 1; requests.length; attempt++) {
          if (attempt > 10) throw new Error(`could not delete ${requests.length} items of cluster ${clusterId} from ${table}`);
          if (attempt > 1) await sleep(backoffMs(attempt));
          const { UnprocessedItems } = await this.doc.send(new BatchWriteCommand({ RequestItems: { [table]: requests } }));
          requests = (UnprocessedItems?.[table] ?? []) as typeof requests;
        }
      }
    }
  }

  private async transact(items: NonNullable<ConstructorParameters<typeof TransactWriteCommand>[0]['TransactItems']>): Promise<void> {
    await this.withConflictRetry(() => this.doc.send(new TransactWriteCommand({ TransactItems: items })));
  }

  /**
   * Retries a write that collided with another transaction in flight on the same item
   * (the SDK does not retry these). Safe: every write here is conditioned, so a retry
   * after the other transaction committed fails its condition instead of overwriting.
   */
  private async withConflictRetry<T>(write: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (!isTransactionConflict(err) || attempt >= CONFLICT_ATTEMPTS) throw err;
        await sleep(backoffMs(attempt));
      }
    }
  }
}

/** Drops undefined fields (DynamoDB stores no undefined; a caller's document client may not strip them). */
function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** The prober memory with every section present (older items may lack some). */
function memoryOf(raw: Partial<ProberMemory> | undefined): ProberMemory {
  const base = emptyMemory();
  if (!raw || typeof raw !== 'object') return base;
  return {
    mirrorDownSince: raw.mirrorDownSince ?? base.mirrorDownSince,
    mirrorDrops: raw.mirrorDrops ?? base.mirrorDrops,
    recoveryLsn: raw.recoveryLsn ?? base.recoveryLsn,
    recoveryProgressAt: raw.recoveryProgressAt ?? base.recoveryProgressAt,
    failoversStarted: Object.fromEntries(Object.entries(raw.failoversStarted ?? {}).map(([k, v]) => [k, { ...v, attempt: v.attempt ?? 1 }])),
    syncTarget: raw.syncTarget ?? base.syncTarget,
    resets: raw.resets ?? base.resets,
    replication: raw.replication ?? base.replication,
  };
}

function clusterStatus(clusterId: string, status: unknown): ClusterStatus {
  if (CLUSTER_STATUSES.includes(status as ClusterStatus)) return status as ClusterStatus;
  throw new ValidationError(`catalog of cluster ${clusterId} holds an invalid cluster status ${JSON.stringify(status)}`);
}

/** Runs a validation of stored data, saying in the error that the catalog itself is corrupt. */
function inCatalog<T>(clusterId: string, validate: () => T): T {
  try {
    return validate();
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    throw new ValidationError(`catalog of cluster ${clusterId} holds invalid data: ${err.message}`, err.issues);
  }
}

const alreadyExists = (clusterId: string) => new ValidationError(`cluster ${clusterId} already exists in the catalog; destroy it first`);

const reasonsOf = (err: unknown): CancellationReason[] =>
  (err as Error)?.name === 'TransactionCanceledException' ? ((err as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? []) : [];

/** A transaction cancelled because its first item's condition failed. */
const firstReasonIsConditionFailure = (err: unknown): boolean => reasonsOf(err)[0]?.Code === 'ConditionalCheckFailed';

const isConditionFailure = (err: unknown): boolean => (err as Error)?.name === 'ConditionalCheckFailedException';

/** Collided with another transaction in flight, and no condition failed (so a retry may succeed). */
function isTransactionConflict(err: unknown): boolean {
  if ((err as Error)?.name === 'TransactionConflictException') return true;
  const reasons = reasonsOf(err);
  return reasons.some((r) => r.Code === 'TransactionConflict') && !reasons.some((r) => r.Code === 'ConditionalCheckFailed');
}

/** Who holds the lease now, from the item a failed condition returned (raw attribute values). */
function describeHolder(err: unknown, now: number): string {
  const item = (err as { Item?: Record<string, { S?: string; N?: string }> }).Item;
  if (!item) return 'the cluster is not in the catalog';
  const owner = item.leaseOwner?.S;
  if (!owner) return 'the lease was released';
  const expiresAt = Number(item.leaseExpiresAt?.N);
  return `now held by ${owner} with token ${item.leaseToken?.N}${expiresAt < now ? `, expired ${now - expiresAt} ms ago` : ''}`;
}

const backoffMs = (attempt: number): number => Math.min(1000, 20 * 2 ** attempt) * (0.5 + Math.random() / 2);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
