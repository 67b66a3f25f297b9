/**
 * Adapters both Lambda handlers build once per container from the validated
 * environment: the DynamoDB catalog, PostgreSQL probe and control with the secret's (or
 * trust) credentials, and the SDK clients with the SDK's own retry.
 */
import { DynamoDbCatalog } from '../adapters/dynamodb/catalog';
import { PgSegmentControl } from '../adapters/postgres/control';
import { PgSegmentProbe } from '../adapters/postgres/probe';
import { trustCredentials, type PgCredentialsProvider, type PgTlsSettings } from '../adapters/postgres/connection';
import { secretCredentialsProvider } from '../adapters/aws/secret-credentials';
import { SsmSegmentHost } from '../adapters/aws/ssm-host';
import type { HandlerEnvironment } from './environment';

/** What the prober and the PromoteMirror steps share. */
export interface SegmentDeps {
  catalog: DynamoDbCatalog;
  probe: PgSegmentProbe;
  control: PgSegmentControl;
  /** Host operations (fence, rebuild) through SSM Run Command on the segment hosts. */
  host: SsmSegmentHost;
}

/** Credentials: the secret when FTS_PG_SECRET_ARN is set, else FTS_PG_USER without a password. */
export function credentialsFrom(env: HandlerEnvironment): PgCredentialsProvider {
  return env.FTS_PG_SECRET_ARN ? secretCredentialsProvider(env.FTS_PG_SECRET_ARN) : trustCredentials(env.FTS_PG_USER);
}

/** TLS of the connections to the segments: FTS_PG_SSLMODE and FTS_PG_CA_BUNDLE. */
export function tlsFrom(env: HandlerEnvironment): PgTlsSettings {
  return { sslmode: env.FTS_PG_SSLMODE, ...(env.FTS_PG_CA_BUNDLE?.pem ? { ca: env.FTS_PG_CA_BUNDLE.pem } : {}) };
}

/** Builds the catalog and the segment adapters. */
export function segmentDeps(env: HandlerEnvironment): SegmentDeps {
  const credentials = credentialsFrom(env);
  const tls = tlsFrom(env);
  const control = new PgSegmentControl({ credentials, tls });
  return {
    catalog: new DynamoDbCatalog(),
    probe: new PgSegmentProbe({ credentials, tls }),
    control,
    host: new SsmSegmentHost({
      osUser: env.FTS_PG_OS_USER,
      pgBin: env.FTS_PG_BIN,
      runAs: env.FTS_PG_RUN_AS,
      serviceManager: env.FTS_PG_SERVICE_MANAGER,
      replicationUser: env.FTS_PG_REPLICATION_USER,
      operationBudgetSeconds: env.FTS_HOST_OPERATION_SECONDS,
      control,
    }),
  };
}
