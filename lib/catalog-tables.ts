/**
 * The catalog: `gp_segment_configuration` (segments), `gp_configuration_history`
 * (history) and the per-cluster item (clusters: version, settings, pending promotions,
 * prober lease) as three DynamoDB tables. Keys come from the same module the DynamoDB
 * adapter and local mode use, so the deployed tables cannot drift from the code.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { CATALOG_TABLE_ENV, CATALOG_TABLE_KEYS, type CatalogTableNames } from '../lambdas/adapters/dynamodb/tables';

/** Props of {@link CatalogTables}. */
export interface CatalogTablesProps {
  /**
   * What happens to the tables when they leave the stack. The catalog is the cluster's
   * source of truth about who is primary, so it outlives the stack by default.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Point-in-time recovery (35 days of continuous backups) on every table.
   * @default true
   */
  readonly pointInTimeRecovery?: boolean;
  /**
   * DynamoDB deletion protection on every table (a DeleteTable call fails while on, from
   * the console, the CLI or CloudFormation alike). Not with `RemovalPolicy.DESTROY`: the
   * stack could then never be deleted.
   * @default true, false with `RemovalPolicy.DESTROY`
   */
  readonly deletionProtection?: boolean;
}

/** DynamoDB actions on items the FTS functions use, and nothing else (no Scan, no BatchWriteItem, no table administration). */
export const CATALOG_READ_ACTIONS = ['dynamodb:GetItem', 'dynamodb:Query'] as const;
/**
 * Writes the functions make: `TransactWriteItems` is authorized per item as PutItem,
 * UpdateItem and DeleteItem (a removed row), and the lease and settings are UpdateItem.
 * BatchWriteItem and DeleteItem of a whole cluster are `ftsctl`'s (initialize, destroy).
 */
export const CATALOG_WRITE_ACTIONS = ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'] as const;

const attributeType = (type: 'S' | 'N'): dynamodb.AttributeType =>
  type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER;

/**
 * The three catalog tables: on-demand capacity (the prober's load is tiny and bursty
 * during failover), AWS-managed encryption, point-in-time recovery, deletion protection.
 */
export class CatalogTables extends Construct {
  /** `gp_segment_configuration`: PK clusterId (S), SK dbid (N). */
  readonly segments: dynamodb.Table;
  /** `gp_configuration_history`: PK clusterId (S), SK seq (S). */
  readonly history: dynamodb.Table;
  /** One item per cluster: PK clusterId (S). */
  readonly clusters: dynamodb.Table;
  /** The environment variables the handlers read the table names from (FTS_SEGMENTS_TABLE, FTS_HISTORY_TABLE, FTS_CLUSTERS_TABLE). */
  readonly env: Readonly<Record<string, string>>;

  constructor(scope: Construct, id: string, props: CatalogTablesProps = {}) {
    super(scope, id);
    if (props.removalPolicy !== undefined && !Object.values(RemovalPolicy).includes(props.removalPolicy)) {
      throw new Error(`CatalogTables: removalPolicy must be a RemovalPolicy, got ${String(props.removalPolicy)}`);
    }
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const pointInTimeRecoveryEnabled = props.pointInTimeRecovery ?? true;
    if (props.deletionProtection === true && removalPolicy === RemovalPolicy.DESTROY) {
      throw new Error('CatalogTables: deletionProtection and removalPolicy DESTROY exclude each other (CloudFormation could never delete the tables, nor the stack)');
    }
    const deletionProtection = props.deletionProtection ?? removalPolicy !== RemovalPolicy.DESTROY;

    const table = (kind: keyof CatalogTableNames, logicalId: string): dynamodb.Table => {
      const keys = CATALOG_TABLE_KEYS[kind];
      return new dynamodb.Table(this, logicalId, {
        partitionKey: { name: keys.partitionKey.name, type: attributeType(keys.partitionKey.type) },
        sortKey: keys.sortKey ? { name: keys.sortKey.name, type: attributeType(keys.sortKey.type) } : undefined,
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption: dynamodb.TableEncryption.AWS_MANAGED,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled },
        deletionProtection,
        removalPolicy,
      });
    };
    this.segments = table('segments', 'Segments');
    this.history = table('history', 'History');
    this.clusters = table('clusters', 'Clusters');
    this.env = {
      [CATALOG_TABLE_ENV.segments]: this.segments.tableName,
      [CATALOG_TABLE_ENV.history]: this.history.tableName,
      [CATALOG_TABLE_ENV.clusters]: this.clusters.tableName,
    };
  }

  /** The three tables, in the order segments, history, clusters. */
  get tables(): dynamodb.Table[] {
    return [this.segments, this.history, this.clusters];
  }

  /** Grants the item reads and writes the FTS functions make ({@link CATALOG_READ_ACTIONS}, {@link CATALOG_WRITE_ACTIONS}) on the three tables, and nothing else. */
  grantReadWrite(grantee: iam.IGrantable): iam.Grant {
    return this.grantItems(grantee, [...CATALOG_READ_ACTIONS, ...CATALOG_WRITE_ACTIONS]);
  }

  /** Grants the item reads ({@link CATALOG_READ_ACTIONS}: GetItem, Query) on the three tables. */
  grantRead(grantee: iam.IGrantable): iam.Grant {
    return this.grantItems(grantee, [...CATALOG_READ_ACTIONS]);
  }

  private grantItems(grantee: iam.IGrantable, actions: string[]): iam.Grant {
    // The tables have no index: the table ARNs are all there is (no `/index/*`).
    return iam.Grant.addToPrincipal({ grantee, actions, resourceArns: this.tables.map((t) => t.tableArn) });
  }
}
