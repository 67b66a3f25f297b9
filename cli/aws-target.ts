/**
 * Where `ftsctl` acts in AWS: the deployed stack, found from its outputs. `--outputs
 * <file>` reads what `cdk deploy --outputs-file` writes (`{"<stack>": {"SegmentsTable":
 * ..., "<Kind>StateMachineArn": ..., "ClusterId": ...}}`; `--stack` picks one when the file
 * holds several), `--stack <name>` alone reads them with CloudFormation DescribeStacks.
 * `--region` and `--profile` go to every client; without them the SDK's own chain
 * decides (AWS_REGION, AWS_PROFILE, the shared config and credentials files, the
 * instance role). A target names the catalog tables, the state machine of each workflow,
 * the cluster the stack watches, and the region.
 */
import { readFileSync } from 'node:fs';
import { CloudFormationClient, DescribeStacksCommand, type Stack } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SFNClient } from '@aws-sdk/client-sfn';
import { InvalidArgumentError } from 'commander';
import { DynamoDbCatalog } from '../lambdas/adapters/dynamodb/catalog';
import type { CatalogTableNames } from '../lambdas/adapters/dynamodb/tables';
import { STATE_MACHINE_ARN_PATTERN } from '../lambdas/adapters/aws/sfn-workflows';
import { ValidationError } from '../lambdas/core/errors';
import { WORKFLOW_KINDS, type WorkflowKind } from '../lambdas/workflows/spec';

/** The flags that choose an AWS target. */
export interface AwsTargetOptions {
  /** `--outputs <file>`: cdk's outputs file. */
  outputs?: string;
  /** `--stack <name>`: the stack (DescribeStacks), or the stack of the outputs file. */
  stack?: string;
  region?: string;
  profile?: string;
}

/** The stack outputs ftsctl reads (lib/fts-stack.ts writes them). */
export const STACK_OUTPUTS = {
  segments: 'SegmentsTable',
  history: 'HistoryTable',
  clusters: 'ClustersTable',
  clusterId: 'ClusterId',
  securityGroup: 'ControlPlaneSecurityGroupId',
  dashboard: 'DashboardUrl',
} as const;

/** The output naming a workflow's state machine: `PromoteMirrorStateMachineArn`, ... */
export const stateMachineOutput = (kind: WorkflowKind): string => `${kind}StateMachineArn`;

/** A deployed FTS stack, as ftsctl acts on it. */
export interface AwsTarget {
  /** Where it was read, for messages: `stack Fts-prod in cdk-outputs.json`. */
  source: string;
  stackName?: string;
  /** From --region, else the region of the stack's state machines, else the SDK's chain (undefined). */
  region?: string;
  profile?: string;
  tables: CatalogTableNames;
  /** The state machine of each workflow the stack outputs. */
  stateMachineArns: Partial<Record<WorkflowKind, string>>;
  /** The cluster the stack's prober watches (output `ClusterId`; stacks built before it lack it). */
  clusterId?: string;
  /** Every output of the stack. */
  outputs: Readonly<Record<string, string>>;
}

/** `--region`: an AWS region name. */
export function parseRegion(value: string): string {
  if (!/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(value)) throw new InvalidArgumentError(`--region must be an AWS region such as us-east-1, got "${value}"`);
  return value;
}

/** `--profile`: a profile name of the shared config and credentials files. */
export function parseProfile(value: string): string {
  if (!/^[\w+=,.@/-]{1,128}$/.test(value)) throw new InvalidArgumentError(`--profile must be a profile name of ~/.aws/config, got "${value}"`);
  return value;
}

/** `--stack`: a CloudFormation stack name (or stack id). */
export function parseStackName(value: string): string {
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(value) && !/^arn:aws[a-z-]*:cloudformation:[a-z0-9-]+:\d{12}:stack\/[A-Za-z][A-Za-z0-9-]{0,127}\/[0-9a-f-]+$/.test(value)) {
    throw new InvalidArgumentError(`--stack must be a CloudFormation stack name (letters, digits, -; starting with a letter), got "${value}"`);
  }
  return value;
}

/** Client settings for every AWS client of a target (or of bare --region/--profile). */
export function awsClientConfig(target: Pick<AwsTarget, 'region' | 'profile'>): { region?: string; profile?: string; maxAttempts: number } {
  return { ...(target.region ? { region: target.region } : {}), ...(target.profile ? { profile: target.profile } : {}), maxAttempts: 5 };
}

/** The catalog in the stack's tables (the endpoint: AWS_ENDPOINT_URL_DYNAMODB when set, as for every SDK client). */
export const targetCatalog = (target: AwsTarget): DynamoDbCatalog => new DynamoDbCatalog({ client: new DynamoDBClient(awsClientConfig(target)), tables: target.tables });
/** A Step Functions client in the stack's region. */
export const targetSfn = (target: Pick<AwsTarget, 'region' | 'profile'>): SFNClient => new SFNClient(awsClientConfig(target));
/** An EC2 client in the stack's region. */
export const targetEc2 = (target: Pick<AwsTarget, 'region' | 'profile'>): EC2Client => new EC2Client(awsClientConfig(target));

/**
 * The state machine of `kind`: `explicit` (`--state-machine-arn`) when given, else the
 * stack's output. ValidationError when the stack outputs none for it.
 */
export function stateMachineArnFor(target: AwsTarget | undefined, kind: WorkflowKind, explicit?: string): string | undefined {
  if (explicit !== undefined) return explicit;
  if (!target) return undefined;
  const arn = target.stateMachineArns[kind];
  if (!arn) throw new ValidationError(`${target.source} has no output ${stateMachineOutput(kind)} (a stack deployed before ${kind} existed?); deploy the stack again, or give --state-machine-arn`);
  return arn;
}

/** The stacks of an outputs document, by name: cdk's `{"<stack>": {...}}`, DescribeStacks' `{"Stacks": [...]}`, or one stack's flat `{"SegmentsTable": ...}`. */
function stacksOf(doc: unknown, file: string): Map<string | undefined, Record<string, string>> {
  const bad = (why: string) => new ValidationError(`--outputs ${file}: ${why}; expected what \`cdk deploy --outputs-file\` writes: {"<StackName>": {"SegmentsTable": "...", ...}}`);
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad('not a JSON object');
  const stacks = new Map<string | undefined, Record<string, string>>();
  const strings = (o: object): Record<string, string> => Object.fromEntries(Object.entries(o).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  const record = doc as Record<string, unknown>;
  if (Array.isArray(record.Stacks)) {
    // `aws cloudformation describe-stacks` output.
    for (const s of record.Stacks as { StackName?: unknown; Outputs?: { OutputKey?: unknown; OutputValue?: unknown }[] }[]) {
      if (typeof s?.StackName !== 'string') continue;
      stacks.set(s.StackName, Object.fromEntries((s.Outputs ?? []).filter((o) => typeof o.OutputKey === 'string' && typeof o.OutputValue === 'string').map((o) => [o.OutputKey as string, o.OutputValue as string])));
    }
    return stacks;
  }
  if (typeof record[STACK_OUTPUTS.segments] === 'string') {
    stacks.set(undefined, strings(record));
    return stacks;
  }
  for (const [name, outputs] of Object.entries(record)) {
    if (outputs && typeof outputs === 'object' && !Array.isArray(outputs)) stacks.set(name, strings(outputs));
  }
  if (!stacks.size) throw bad('no stack in it');
  return stacks;
}

/** Picks the stack of an outputs file: `--stack`, else the only one with catalog tables. */
export function pickStack(doc: unknown, file: string, stack?: string): { stackName?: string; outputs: Record<string, string> } {
  const stacks = stacksOf(doc, file);
  const names = [...stacks.keys()].filter((n): n is string => n !== undefined);
  if (stack !== undefined) {
    const outputs = stacks.get(stack);
    if (!outputs) throw new ValidationError(`--outputs ${file} has no stack ${stack}; it has ${names.length ? names.join(', ') : 'the outputs of one unnamed stack'}`);
    return { stackName: stack, outputs };
  }
  const fts = [...stacks].filter(([, o]) => typeof o[STACK_OUTPUTS.segments] === 'string');
  if (fts.length === 1) return { stackName: fts[0][0], outputs: fts[0][1] };
  if (!fts.length) throw new ValidationError(`--outputs ${file} holds no Serverless FTS stack (none has a ${STACK_OUTPUTS.segments} output); stacks in it: ${names.join(', ') || 'none'}`);
  throw new ValidationError(`--outputs ${file} holds several Serverless FTS stacks (${fts.map(([n]) => n).join(', ')}): pick one with --stack`);
}

/** The partition a region belongs to. */
const partitionOfRegion = (region: string): string => (region.startsWith('cn-') ? 'aws-cn' : region.startsWith('us-gov-') ? 'aws-us-gov' : region.startsWith('us-iso') ? (region.startsWith('us-isob') ? 'aws-iso-b' : 'aws-iso') : 'aws');

/** The region of an ARN (`arn:aws:states:<region>:...`). */
const regionOfArn = (arn: string): string | undefined => arn.split(':')[3] || undefined;

/**
 * A target from one stack's outputs: the three tables are required, every state machine
 * output must be a state machine ARN, all in one region (which `region`, when given,
 * must be). ValidationError naming what is missing or wrong.
 */
export function targetFromOutputs(outputs: Record<string, string>, source: string, options: { stackName?: string; region?: string; profile?: string } = {}): AwsTarget {
  const missing = (['segments', 'history', 'clusters'] as const).map((k) => STACK_OUTPUTS[k]).filter((k) => !outputs[k]?.trim());
  if (missing.length) throw new ValidationError(`${source} lacks the output(s) ${missing.join(', ')}: is it a Serverless FTS stack, and fully deployed?`);
  // DynamoDB's rule for table names, and three tables, not one under three names.
  const tableNames = (['segments', 'history', 'clusters'] as const).map((k) => [STACK_OUTPUTS[k], outputs[STACK_OUTPUTS[k]].trim()] as const);
  const badNames = tableNames.filter(([, name]) => !/^[A-Za-z0-9_.-]{3,255}$/.test(name));
  if (badNames.length) throw new ValidationError(`${source}: ${badNames.map(([k, v]) => `output ${k} ${JSON.stringify(v)}`).join(', ')} is not a DynamoDB table name (3 to 255 letters, digits, _ . -)`);
  if (new Set(tableNames.map(([, name]) => name)).size < tableNames.length) throw new ValidationError(`${source}: the outputs ${tableNames.map(([k]) => k).join(', ')} must name three different tables`);
  const stateMachineArns: Partial<Record<WorkflowKind, string>> = {};
  for (const kind of WORKFLOW_KINDS) {
    const arn = outputs[stateMachineOutput(kind)];
    if (arn === undefined) continue;
    if (!STATE_MACHINE_ARN_PATTERN.test(arn)) throw new ValidationError(`${source}: output ${stateMachineOutput(kind)} is not a state machine ARN: ${JSON.stringify(arn)}`);
    const [, partition, , region] = arn.split(':');
    if (partition !== partitionOfRegion(region)) throw new ValidationError(`${source}: output ${stateMachineOutput(kind)} names partition ${partition} with region ${region}, which is in ${partitionOfRegion(region)}: ${JSON.stringify(arn)}`);
    stateMachineArns[kind] = arn;
  }
  const regions = [...new Set(Object.values(stateMachineArns).map((arn) => regionOfArn(arn as string)))].filter((r): r is string => r !== undefined);
  if (regions.length > 1) throw new ValidationError(`${source}: its state machines are in several regions (${regions.join(', ')})`);
  if (options.region !== undefined && regions.length && regions[0] !== options.region) {
    throw new ValidationError(`--region ${options.region}, but the stack of ${source} is in ${regions[0]}: leave --region out or give the stack's region`);
  }
  const clusterId = outputs[STACK_OUTPUTS.clusterId]?.trim() || undefined;
  return {
    source,
    ...(options.stackName !== undefined ? { stackName: options.stackName } : {}),
    ...((options.region ?? regions[0]) !== undefined ? { region: options.region ?? regions[0] } : {}),
    ...(options.profile !== undefined ? { profile: options.profile } : {}),
    tables: { segments: outputs[STACK_OUTPUTS.segments].trim(), history: outputs[STACK_OUTPUTS.history].trim(), clusters: outputs[STACK_OUTPUTS.clusters].trim() },
    stateMachineArns,
    ...(clusterId !== undefined ? { clusterId } : {}),
    outputs,
  };
}

/** What {@link resolveAwsTarget} reads through (tests replace them). */
export interface AwsTargetIo {
  readFile?: (path: string) => string;
  cloudFormation?: (config: ReturnType<typeof awsClientConfig>) => CloudFormationClient;
}

/**
 * The target the flags name: undefined without `--outputs` and `--stack` (a local
 * cluster, or FTS_*_TABLE in AWS). Reads the outputs file, or DescribeStacks of the
 * stack. ValidationError (nothing else was read) for an unreadable or foreign file, a
 * stack that does not exist, or outputs that are not an FTS stack's.
 */
export async function resolveAwsTarget(o: AwsTargetOptions, io: AwsTargetIo = {}): Promise<AwsTarget | undefined> {
  if (o.outputs === undefined && o.stack === undefined) return undefined;
  const common = { ...(o.region !== undefined ? { region: o.region } : {}), ...(o.profile !== undefined ? { profile: o.profile } : {}) };
  if (o.outputs !== undefined) {
    let text: string;
    try {
      text = (io.readFile ?? ((f: string) => readFileSync(f, 'utf8')))(o.outputs);
    } catch (e) {
      throw new ValidationError(`cannot read --outputs ${o.outputs}: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new ValidationError(`--outputs ${o.outputs} is not valid JSON: ${(e as Error).message}`);
    }
    const { stackName, outputs } = pickStack(doc, o.outputs, o.stack);
    return targetFromOutputs(outputs, stackName !== undefined ? `stack ${stackName} in ${o.outputs}` : o.outputs, { ...common, ...(stackName !== undefined ? { stackName } : {}) });
  }
  const stackName = o.stack as string;
  const client = (io.cloudFormation ?? ((c) => new CloudFormationClient(c)))(awsClientConfig(common));
  let stack: Stack | undefined;
  try {
    stack = (await client.send(new DescribeStacksCommand({ StackName: stackName }))).Stacks?.[0];
  } catch (e) {
    const err = e as Error;
    if (err.name === 'ValidationError' && /does not exist/.test(err.message)) {
      throw new ValidationError(`stack ${stackName} does not exist in ${await regionName(client)} (give --region, or check AWS_REGION and the profile)`);
    }
    if (/region is missing/i.test(err.message)) throw new ValidationError(`no AWS region to find stack ${stackName} in: give --region, set AWS_REGION, or use a profile with a region`);
    throw new Error(`cannot read stack ${stackName} (CloudFormation DescribeStacks): ${err.message}`, { cause: e });
  }
  if (!stack) throw new ValidationError(`stack ${stackName} does not exist in ${await regionName(client)}`);
  const name = stack.StackName ?? stackName;
  const outputs = Object.fromEntries((stack.Outputs ?? []).filter((x) => x.OutputKey && x.OutputValue !== undefined).map((x) => [x.OutputKey as string, x.OutputValue as string]));
  const region = o.region ?? (await client.config.region().catch(() => undefined));
  return targetFromOutputs(outputs, `stack ${name} (${stack.StackStatus ?? 'status unknown'})`, { ...common, ...(region ? { region } : {}), stackName: name });
}

async function regionName(client: CloudFormationClient): Promise<string> {
  const region = await client.config.region().catch(() => undefined);
  return region ? `region ${region}` : 'this region';
}
