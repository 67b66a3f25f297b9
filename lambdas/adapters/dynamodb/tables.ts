/**
 * Key design of the catalog tables, shared by the adapter, the CDK construct, local
 * mode and tests.
 *
 * - segments (`gp_segment_configuration`): PK `clusterId` (S), SK `dbid` (N); one item
 *   per instance with the SegmentRow fields as plain attributes. One Query reads a
 *   cluster's rows.
 * - history (`gp_configuration_history`): PK `clusterId` (S), SK `seq` (S): the zero-padded
 *   catalog version the change wrote, `#`, the zero-padded index of the row within that
 *   change. It sorts by time (versions only grow), is unique without a clock, and the
 *   newest rows are one backwards Query away. Items also carry `time`, `dbid`,
 *   `description`, `version`.
 * - clusters: PK `clusterId` (S); attributes `version` (N), `status`, `settings` (map),
 *   `pendingPromotions` (map: content -> PendingPromotion), `pendingFences` (map: dbid ->
 *   PendingFence), `pendingOperations` (map: content -> PendingOperation), `memory` (map: ProberMemory),
 *   the prober lease `leaseOwner`, `leaseToken` (N), `leaseExpiresAt` (N, epoch ms),
 *   `createdAt`, `updatedAt`.
 */
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient, ResourceInUseException } from '@aws-sdk/client-dynamodb';
import type { AttributeDefinition, KeySchemaElement } from '@aws-sdk/client-dynamodb';

/** Names of the three catalog tables. */
export interface CatalogTableNames {
  segments: string;
  history: string;
  clusters: string;
}

/** Key schema of one table, as CreateTable and the CDK construct want it. */
export interface TableKeys {
  partitionKey: { name: string; type: 'S' | 'N' };
  sortKey?: { name: string; type: 'S' | 'N' };
}

/** The key of each catalog table. */
export const CATALOG_TABLE_KEYS: Readonly<Record<keyof CatalogTableNames, TableKeys>> = {
  segments: { partitionKey: { name: 'clusterId', type: 'S' }, sortKey: { name: 'dbid', type: 'N' } },
  history: { partitionKey: { name: 'clusterId', type: 'S' }, sortKey: { name: 'seq', type: 'S' } },
  clusters: { partitionKey: { name: 'clusterId', type: 'S' } },
};

/** Default table names when the environment names none. */
export const DEFAULT_CATALOG_TABLE_NAMES: Readonly<CatalogTableNames> = { segments: 'fts-segments', history: 'fts-history', clusters: 'fts-clusters' };

/** Environment variables the CDK stack sets on every function that reads the catalog. */
export const CATALOG_TABLE_ENV = { segments: 'FTS_SEGMENTS_TABLE', history: 'FTS_HISTORY_TABLE', clusters: 'FTS_CLUSTERS_TABLE' } as const;

/** Table names from FTS_SEGMENTS_TABLE, FTS_HISTORY_TABLE, FTS_CLUSTERS_TABLE, with defaults. */
export function catalogTableNames(env: NodeJS.ProcessEnv = process.env): CatalogTableNames {
  const pick = (key: keyof CatalogTableNames) => env[CATALOG_TABLE_ENV[key]]?.trim() || DEFAULT_CATALOG_TABLE_NAMES[key];
  return { segments: pick('segments'), history: pick('history'), clusters: pick('clusters') };
}

// Wide enough for any version or index a cluster will reach, so string order is numeric order.
const VERSION_DIGITS = 12;
const INDEX_DIGITS = 4;

/** History sort key: `000000000042#0001` for the second history row written by version 42. */
export function historySeq(version: number, index: number): string {
  return `${String(version).padStart(VERSION_DIGITS, '0')}#${String(index).padStart(INDEX_DIGITS, '0')}`;
}

/**
 * Creates the catalog tables (on-demand capacity) if they do not exist and waits until
 * all are ACTIVE. Idempotent: a table that already exists is left as it is. Used by
 * local mode and tests; AWS deployments get the tables from CDK.
 */
export async function createCatalogTables(client: DynamoDBClient, names: CatalogTableNames, timeoutMs = 60_000): Promise<void> {
  await Promise.all(
    (Object.keys(CATALOG_TABLE_KEYS) as (keyof CatalogTableNames)[]).map(async (kind) => {
      const keys = CATALOG_TABLE_KEYS[kind];
      const KeySchema: KeySchemaElement[] = [{ AttributeName: keys.partitionKey.name, KeyType: 'HASH' }];
      const AttributeDefinitions: AttributeDefinition[] = [{ AttributeName: keys.partitionKey.name, AttributeType: keys.partitionKey.type }];
      if (keys.sortKey) {
        KeySchema.push({ AttributeName: keys.sortKey.name, KeyType: 'RANGE' });
        AttributeDefinitions.push({ AttributeName: keys.sortKey.name, AttributeType: keys.sortKey.type });
      }
      try {
        await client.send(new CreateTableCommand({ TableName: names[kind], KeySchema, AttributeDefinitions, BillingMode: 'PAY_PER_REQUEST' }));
      } catch (err) {
        if (!(err instanceof ResourceInUseException || (err as Error).name === 'ResourceInUseException')) throw err;
      }
      await waitActive(client, names[kind], timeoutMs);
    }),
  );
}

async function waitActive(client: DynamoDBClient, table: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: table }));
    if (Table?.TableStatus === 'ACTIVE') return;
    if (Date.now() > deadline) throw new Error(`table ${table} is still ${Table?.TableStatus} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
