#!/usr/bin/env node
/**
 * CDK app: one FtsStack per cluster, configured from context (cdk.json or `-c key=value`):
 * clusterId, vpcId, availabilityZones, privateSubnetIds, segmentSecurityGroupId, and
 * optionally pgSecretArn, segmentPorts (`6000-7999`), notificationEmails. See docs/deploy.md.
 *
 * The VPC is imported from these attributes, never looked up, so `cdk synth` works
 * without AWS credentials.
 */
import { App } from 'aws-cdk-lib';
import { FtsStack, ftsStackPropsFromContext } from '../lib/fts-stack';

/** Builds the app; exported so tests can synthesize it with their own context. */
export function buildApp(app: App = new App()): { app: App; stack: FtsStack } {
  let props;
  try {
    props = ftsStackPropsFromContext((key) => app.node.tryGetContext(key), {
      // Unset without credentials: the stack is then environment-agnostic, which the imported VPC allows.
      env: process.env.CDK_DEFAULT_ACCOUNT ? { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION } : undefined,
      description: 'Serverless FTS: fault-tolerance control plane of a Greenplum-style PostgreSQL segment cluster',
    });
  } catch (e) {
    throw new Error(`Serverless FTS: invalid configuration: ${(e as Error).message}`, { cause: e });
  }
  const stack = new FtsStack(app, `Fts-${props.clusterId}`, props);
  return { app, stack };
}

if (require.main === module) {
  try {
    buildApp().app.synth();
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
