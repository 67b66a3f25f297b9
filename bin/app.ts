#!/usr/bin/env node
/**
 * CDK app: one FtsStack per cluster, configured from context (cdk.json or `-c key=value`):
 * clusterId, vpcId, availabilityZones, privateSubnetIds, segmentSecurityGroupId, and the
 * optional keys of FTS_CONTEXT_KEYS (lib/fts-stack.ts; the table in docs/deploy.md).
 *
 * The VPC is imported from these attributes, never looked up, so `cdk synth` works
 * without AWS credentials. cdk.json's context is an example (`ftsExampleContext`): built
 * from its placeholder ids the stack synthesizes, says so, and cannot be deployed.
 */
import { App } from 'aws-cdk-lib';
import { examplePlaceholdersIn, FtsStack, ftsStackPropsFromContext } from '../lib/fts-stack';

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
  const placeholders = examplePlaceholdersIn(props);
  if (placeholders.length && require.main === module) {
    // Also in CDK's own warnings; said here first, where nobody can miss it.
    console.error(`Serverless FTS: example context (placeholder ${placeholders.join(', ')}): synth only, a deploy of this template fails. Set your values (docs/deploy.md, Context).`);
  }
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
