/**
 * Starts one DynamoDB Local for the whole test run (a free loopback port) and points
 * the AWS SDK at it through AWS_ENDPOINT_URL_DYNAMODB, as users would.
 */
import { startDynamoDbLocal, DynamoDbLocal } from '../../lambdas/adapters/local/dynamodb-local';

declare global {
  var __FTS_DYNAMO__: DynamoDbLocal | undefined;
}

export default async function globalSetup(): Promise<void> {
  const ddb = await startDynamoDbLocal();
  globalThis.__FTS_DYNAMO__ = ddb;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = ddb.endpoint;
  process.env.AWS_REGION = 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID = 'local';
  process.env.AWS_SECRET_ACCESS_KEY = 'local';
}
