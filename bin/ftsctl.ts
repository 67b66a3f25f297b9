#!/usr/bin/env -S npx tsx
/**
 * ftsctl: the operator's command line (patronictl / pg_autoctl habits, gpstate output).
 * `local ...` runs a whole cluster on this machine. The other commands act on a deployed
 * stack in AWS when given `--outputs <file>` or `--stack <name>` (its tables, its state
 * machines, the cluster it watches; `--region`, `--profile`), else on the local cluster
 * of that id when one runs here, else on the AWS account the SDK's default credentials
 * and FTS_*_TABLE variables point at (workflows in AWS then need --state-machine-arn).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeExecutionCommand, GetExecutionHistoryCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DynamoDbCatalog } from '../lambdas/adapters/dynamodb/catalog';
import { Ec2Compute } from '../lambdas/adapters/aws/ec2-compute';
import { killInstance } from '../lambdas/adapters/local/host';
import { freePort } from '../lambdas/adapters/local/net';
import { parseExecutionInput } from '../lambdas/adapters/local/local-workflows';
import { STATE_MACHINE_ARN_PATTERN } from '../lambdas/adapters/aws/sfn-workflows';
import { localRecoveryProgress } from '../lambdas/adapters/local/startup-progress';
import { trustCredentials } from '../lambdas/adapters/postgres/connection';
import { PgSegmentProbe } from '../lambdas/adapters/postgres/probe';
import { ValidationError } from '../lambdas/core/errors';
import type { Telemetry } from '../lambdas/ports/telemetry';
import type { WorkflowDeps } from '../lambdas/service/steps';
import { executionNameFor } from '../lambdas/ports/workflows';
import { STEP_EVENT_RUNNERS } from '../lambdas/service/workflows';
import { WORKFLOW_KINDS, workflowKind, type WorkflowKind } from '../lambdas/workflows/spec';
import { localWorkflows } from '../lib/local-definition';
import { formatHistory, formatState, table } from '../cli/format';
import {
  connectionString,
  DEFAULT_LOCAL_CLUSTER_ID,
  downLocalCluster,
  localCatalog,
  localClusterDir,
  openLocalCluster,
  readLocalState,
  upLocalCluster,
} from '../cli/local-cluster';
import { timelineTelemetry, type TimelineEvent } from '../cli/local-prober';
import { runDemo } from '../cli/demo';
import { formatInitstandby, initstandbyRequest, parsePort, type InitstandbyOptions } from '../cli/initstandby';
import {
  awsClientConfig,
  parseProfile,
  parseRegion,
  parseStackName,
  resolveAwsTarget,
  stateMachineArnFor,
  targetCatalog,
  targetEc2,
  targetSfn,
  type AwsTarget,
  type AwsTargetOptions,
} from '../cli/aws-target';
import { formatInit, parseDiscoverTag, planInit, readInitSpec, registerCluster } from '../cli/init';
import { applySettingChanges, collectSet, formatSettings } from '../cli/settings-command';

const positiveInt = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
  return n;
};

/** `--setting key=value`, repeatable; values are numbers. */
const collectSetting = (value: string, previous: Record<string, number | boolean>): Record<string, number | boolean> => {
  const m = /^([A-Za-z]+)=(.+)$/.exec(value);
  if (m && (m[2] === 'true' || m[2] === 'false')) return { ...previous, [m[1]]: m[2] === 'true' };
  if (!m || !Number.isFinite(Number(m[2]))) throw new InvalidArgumentError(`--setting takes key=number or key=true|false (e.g. probeIntervalSeconds=2, autoActivateStandby=true), got "${value}"`);
  return { ...previous, [m[1]]: Number(m[2]) };
};

const clusterOption = (): Option => new Option('--cluster <id>', 'cluster id').default(process.env.FTS_CLUSTER_ID ?? DEFAULT_LOCAL_CLUSTER_ID);
const dirOption = (): Option => new Option('--dir <path>', 'directory of the local cluster (default $FTS_LOCAL_DIR/<cluster> under the temp dir)');

/**
 * The catalog of a cluster: the local one of that id when it runs here, else AWS (tables
 * from FTS_*_TABLE). An explicit `--region` or `--profile` means AWS.
 */
function catalogFor(clusterId: string, dir?: string, aws: { region?: string; profile?: string } = {}): DynamoDbCatalog {
  const explicit = aws.region !== undefined || aws.profile !== undefined;
  if (!explicit) {
    const state = readLocalState(dir ?? localClusterDir(clusterId));
    if (state?.phase === 'ready') return localCatalog(state.dynamo.endpoint);
    if (!process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION && !process.env.AWS_PROFILE) {
      throw new ValidationError(`no local cluster ${clusterId} runs here (start one with: npm run ftsctl -- local up --cluster ${clusterId}), and no AWS region or profile is set to read the catalog in AWS (give --outputs <cdk outputs file> or --stack <name>)`);
    }
  }
  return new DynamoDbCatalog({ client: new DynamoDBClient(awsClientConfig(aws)) });
}

/** The flags that choose where a command acts. */
interface WhereOptions extends AwsTargetOptions {
  cluster: string;
  dir?: string;
  stateMachineArn?: string;
}

/** Where a command acts: the catalog, and where each workflow runs. */
interface Where {
  clusterId: string;
  /** The deployed stack of --outputs or --stack. */
  aws?: AwsTarget;
  /** True when a local cluster of that id runs here and nothing names AWS. */
  local: boolean;
  catalog(): DynamoDbCatalog;
  /** The state machine of `kind` in AWS (--state-machine-arn, else the stack's output); undefined: run it locally. */
  arn(kind: WorkflowKind): string | undefined;
  sfn(): SFNClient;
}

/**
 * The cluster a command acts on: the ids named by --cluster, FTS_CLUSTER_ID, the spec
 * (`init`) and the stack (its ClusterId output, else its name `Fts-<id>`) must agree;
 * the default otherwise.
 */
function clusterIdFor(o: WhereOptions, cmd: Command, aws: AwsTarget | undefined, specClusterId?: string): string {
  const fromStack = aws?.clusterId ?? /^Fts-([A-Za-z0-9][A-Za-z0-9_-]{0,47})$/.exec(aws?.stackName ?? '')?.[1];
  const named: [string, string | undefined][] = [
    ['--cluster', cmd.getOptionValueSource('cluster') === 'cli' ? o.cluster : undefined],
    ['FTS_CLUSTER_ID', cmd.getOptionValueSource('cluster') === 'cli' ? undefined : process.env.FTS_CLUSTER_ID || undefined],
    ['the spec', specClusterId],
    [aws?.source ?? 'the stack', fromStack],
  ];
  const given = named.filter((n): n is [string, string] => n[1] !== undefined);
  const ids = [...new Set(given.map(([, id]) => id))];
  if (ids.length > 1) throw new ValidationError(`the cluster ids disagree: ${given.map(([who, id]) => `${who} names ${id}`).join(', ')}`);
  if (ids.length === 1) return ids[0];
  if (aws) throw new ValidationError(`${aws.source} names no cluster (no ClusterId output): give --cluster <id>`);
  return o.cluster;
}

/** Resolves where a command acts (reads the outputs file or DescribeStacks when given). */
async function whereFor(o: WhereOptions, cmd: Command, extra: { specClusterId?: string } = {}): Promise<Where> {
  if ((o.outputs !== undefined || o.stack !== undefined) && o.dir !== undefined) {
    throw new InvalidArgumentError('--dir names a local cluster, --outputs and --stack a stack in AWS: give one or the other');
  }
  const aws = await resolveAwsTarget(o);
  const clusterId = clusterIdFor(o, cmd, aws, extra.specClusterId);
  const bare = { region: o.region, profile: o.profile };
  const explicit = aws !== undefined || o.region !== undefined || o.profile !== undefined;
  return {
    clusterId,
    ...(aws ? { aws } : {}),
    local: !explicit && readLocalState(o.dir ?? localClusterDir(clusterId))?.phase === 'ready',
    catalog: () => (aws ? targetCatalog(aws) : catalogFor(clusterId, o.dir, bare)),
    arn: (kind) => stateMachineArnFor(aws, kind, o.stateMachineArn),
    sfn: () => targetSfn(aws ?? bare),
  };
}

/** Adds the options that point a command at a deployed stack. */
function withAwsOptions(cmd: Command): Command {
  return cmd
    .option('--outputs <file>', 'act on the deployed stack whose outputs `cdk deploy --outputs-file` wrote to this file (tables, state machines, cluster id)')
    .option('--stack <name>', 'act on this deployed stack (its outputs read with CloudFormation DescribeStacks); with --outputs, the stack of the file', parseStackName)
    .option('--region <region>', 'AWS region (default: the SDK chain: AWS_REGION, the profile)', parseRegion)
    .option('--profile <name>', 'AWS profile of ~/.aws/config and ~/.aws/credentials (default: the SDK chain, AWS_PROFILE)', parseProfile);
}

const print = (text: string): void => void process.stdout.write(`${text}\n`);

/** The adapters the workflow steps run with (a local cluster's, or a test's wrapping of them). */
export type ClusterAdapters = Pick<WorkflowDeps, 'catalog' | 'probe' | 'control' | 'host' | 'endpoint'>;

/** How a workflow execution ended, as `ftsctl workflow run` reports it. */
export interface WorkflowRunResult {
  stateMachine: WorkflowKind;
  executionName: string;
  /** AWS only. */
  executionArn?: string;
  /** SUCCEEDED, FAILED, TIMED_OUT or ABORTED. */
  status: string;
  /** The execution's output (SUCCEEDED). */
  output?: unknown;
  /** Error name (e.g. InvalidInput, PromotionFailed). */
  error?: string;
  /** Cause, as a sentence: a Lambda error's message is taken out of its JSON envelope. */
  cause?: string;
  /** Local only: what the steps logged, oldest first. */
  log?: TimelineEvent[];
}

/**
 * The workflow steps' dependencies for a local cluster, built from its adapters
 * (one place, so a new dependency of the steps is one line here).
 */
export function localWorkflowDeps(cluster: ClusterAdapters, telemetry: Telemetry): WorkflowDeps {
  const deps = {
    catalog: cluster.catalog,
    probe: cluster.probe,
    control: cluster.control,
    host: cluster.host,
    ...(cluster.endpoint ? { endpoint: cluster.endpoint } : {}),
    telemetry,
    now: () => new Date(),
    notify: async (subject: string, message: string) => telemetry.info(subject, { notification: message }),
  };
  return deps;
}

/** A Lambda error's Cause is `{"errorType","errorMessage","trace"}`: its message is what a person reads. */
function readableCause(cause: string | undefined): string | undefined {
  if (cause === undefined) return undefined;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed?.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    /* a plain-text cause */
  }
  return cause;
}

/** A fresh execution name, as the console makes one. */
const newExecutionName = (): string => `ftsctl-${randomUUID()}`;

/**
 * Runs a workflow of a local cluster to its end: the synthesized ASL through
 * LocalWorkflows, every Task state bound to the real step code with the cluster's
 * adapters. `input` is passed as given.
 */
export async function runWorkflowLocally(
  cluster: ClusterAdapters,
  stateMachine: WorkflowKind,
  input: unknown,
  options: { executionName?: string; retryIntervalMs?: number; waitMs?: number; onLog?: (event: TimelineEvent) => void } = {},
): Promise<WorkflowRunResult> {
  const log: TimelineEvent[] = [];
  const deps = localWorkflowDeps(
    cluster,
    timelineTelemetry((e) => {
      log.push(e);
      options.onLog?.(e);
    }),
  );
  const runner = STEP_EVENT_RUNNERS[stateMachine];
  const workflows = localWorkflows({ [stateMachine]: (event: Parameters<typeof runner>[1]) => runner(deps, event) }, { retryIntervalMs: options.retryIntervalMs, waitMs: options.waitMs });
  const outcome = await workflows.runExecution(stateMachine, options.executionName ?? newExecutionName(), input);
  return {
    stateMachine,
    executionName: outcome.executionName,
    status: outcome.status,
    ...(outcome.output !== undefined ? { output: outcome.output } : {}),
    ...(outcome.error !== undefined ? { error: outcome.error } : {}),
    ...(outcome.cause !== undefined ? { cause: readableCause(outcome.cause) } : {}),
    log,
  };
}


/**
 * Runs a workflow in AWS: StartExecution with `inputText` as given, then DescribeExecution
 * every `pollMs` until the execution is no longer running (the client's own retry covers
 * throttling and transient errors).
 */
export async function runWorkflowInAws(
  client: SFNClient,
  stateMachineArn: string,
  stateMachine: WorkflowKind,
  inputText: string,
  options: { executionName?: string; pollMs?: number; onProgress?: (p: RebuildProgress) => void } = {},
): Promise<WorkflowRunResult> {
  if (!STATE_MACHINE_ARN_PATTERN.test(stateMachineArn)) throw new ValidationError(`--state-machine-arn must be a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>), got ${JSON.stringify(stateMachineArn)}`);
  const name = options.executionName ?? newExecutionName();
  const started = await client.send(new StartExecutionCommand({ stateMachineArn, name, input: inputText }));
  if (!started.executionArn) throw new Error('StartExecution returned no executionArn');
  for (;;) {
    const d = await client.send(new DescribeExecutionCommand({ executionArn: started.executionArn }));
    // PENDING_REDRIVE: a redrive was asked for and the execution is about to run again.
    if (d.status !== 'RUNNING' && d.status !== 'PENDING_REDRIVE') {
      let output: unknown = d.output;
      if (typeof d.output === 'string') {
        try {
          output = JSON.parse(d.output) as unknown;
        } catch {
          output = d.output;
        }
      }
      return {
        stateMachine,
        executionName: name,
        executionArn: started.executionArn,
        status: d.status ?? 'UNKNOWN',
        ...(d.status === 'SUCCEEDED' && output !== undefined ? { output } : {}),
        ...(d.error ? { error: d.error } : {}),
        ...(d.cause ? { cause: readableCause(d.cause) } : {}),
      };
    }
    if (options.onProgress) for (const p of await latestProgress(client, started.executionArn)) options.onProgress(p);
    await sleep(options.pollMs ?? 1000);
  }
}

/** A copy's progress, as a PollRebuild step last saw it. */
export interface RebuildProgress {
  content: number;
  bytes: number;
  total: number;
  tool: string;
}

/**
 * The latest progress of each content's copy in an AWS execution: the newest
 * `PollRebuild`/`PollRewind` state exits in its history (their output is the Map
 * iteration's document: the item and `pollRebuild.progress`).
 */
export async function latestProgress(client: SFNClient, executionArn: string): Promise<RebuildProgress[]> {
  const history = await client.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 200, includeExecutionData: true }));
  const seen = new Map<number, RebuildProgress>();
  for (const event of history.events ?? []) {
    const exited = event.stateExitedEventDetails;
    if (!exited || !/^Poll(Rebuild|Rewind)$/.test(exited.name ?? '') || !exited.output) continue;
    try {
      const doc = JSON.parse(exited.output) as { item?: { content?: unknown }; pollRebuild?: { progress?: { bytes?: unknown; total?: unknown; tool?: unknown } } };
      const content = doc.item?.content;
      const p = doc.pollRebuild?.progress;
      if (typeof content !== 'number' || seen.has(content) || typeof p?.bytes !== 'number' || typeof p.total !== 'number') continue;
      seen.set(content, { content, bytes: p.bytes, total: p.total, tool: String(p.tool ?? '') });
    } catch {
      /* an output that is not JSON: no progress in it */
    }
  }
  return [...seen.values()].sort((a, b) => a.content - b.content);
}

/** The text `ftsctl workflow run` prints for a result. */
export function formatWorkflowRun(r: WorkflowRunResult): string {
  const lines = [`${r.stateMachine} execution ${r.executionName}: ${r.status}`];
  if (r.executionArn) lines.push(`arn: ${r.executionArn}`);
  if (r.error) lines.push(`error: ${r.error}`);
  if (r.cause) lines.push(`cause: ${r.cause}`);
  if (r.output !== undefined) lines.push(`output: ${JSON.stringify(r.output, null, 2)}`);
  return lines.join('\n');
}


/**
 * Starts an operator workflow in AWS for `recoverseg` or `initstandby` and follows it to
 * its end; with `--no-wait` (`o.wait === false`) prints the execution's ARN and returns
 * undefined at once.
 */
async function startInAws(
  client: SFNClient,
  stateMachineArn: string,
  o: { wait?: boolean; json?: boolean },
  kind: WorkflowKind,
  input: Record<string, unknown>,
  executionName: string,
  onProgress?: (p: RebuildProgress) => void,
): Promise<WorkflowRunResult | undefined> {
  if (o.wait !== false) return runWorkflowInAws(client, stateMachineArn, kind, JSON.stringify(input), { executionName, pollMs: 5000, ...(onProgress ? { onProgress } : {}) });
  if (!STATE_MACHINE_ARN_PATTERN.test(stateMachineArn)) throw new ValidationError(`--state-machine-arn must be a state machine ARN, got ${JSON.stringify(stateMachineArn)}`);
  const started = await client.send(new StartExecutionCommand({ stateMachineArn, name: executionName, input: JSON.stringify(input) }));
  print(o.json ? JSON.stringify({ stateMachine: kind, executionArn: started.executionArn, input }, null, 2) : `${kind} started: ${started.executionArn}`);
  return undefined;
}

/** The ActivateStandby input `ftsctl activatestandby` starts, as one would paste it in the console. */
export function activateStandbyRequest(clusterId: string, catalogVersion: number, o: { force?: boolean; ignoreLag?: boolean; standbyDbid?: number }): Record<string, unknown> {
  return {
    clusterId,
    catalogVersion,
    ...(o.standbyDbid !== undefined ? { standbyDbid: o.standbyDbid } : {}),
    ...(o.force ? { force: true } : {}),
    ...(o.ignoreLag ? { ignoreLag: true } : {}),
    reason: `ftsctl activatestandby${o.force ? ' -f' : ''}${o.ignoreLag ? ' --ignore-lag' : ''}`,
  };
}

/** The text `ftsctl activatestandby` prints: what happened, in a DBA's words. */
export function formatActivation(r: WorkflowRunResult): string {
  const out = r.output as { finish?: { message?: string }; moveEndpoint?: { endpoint?: { address?: string; port?: number } } } | undefined;
  if (r.status === 'SUCCEEDED') {
    const endpoint = out?.moveEndpoint?.endpoint;
    return [out?.finish?.message ?? 'the standby is the coordinator', ...(endpoint ? [`client endpoint ${endpoint.address}:${endpoint.port} leads to it`] : []), `(execution ${r.executionName})`].join('\n');
  }
  return [`activation ${r.error === 'ActivationRefused' ? 'refused' : 'failed'}: ${r.cause ?? r.error ?? r.status}`, `(execution ${r.executionName})`].join('\n');
}

/** `ftsctl recoverseg` options, as commander parses them. */
export interface RecoversegOptions {
  F?: boolean;
  r?: boolean;
  replayLag?: number;
  replayLagCheck?: boolean;
  i?: string;
  p?: string;
  spareAddress?: string;
  B?: number;
  content?: number[];
  poll?: number;
}

/**
 * The workflow and input `ftsctl recoverseg` starts, as one would paste it in the
 * console: Greenplum's flags mapped onto RecoverSegments (`-F`, `-i`, `-p`, `-B`) or,
 * with `-r`, Rebalance (`--replay-lag`, `--disable-replay-lag`). Flags that do not go
 * together are refused with nothing started. `readFile` reads the `-i` file.
 */
export function recoversegRequest(clusterId: string, catalogVersion: number, o: RecoversegOptions, readFile: (path: string) => string = (f) => readFileSync(f, 'utf8')): { kind: WorkflowKind; input: Record<string, unknown> } {
  const common = { clusterId, catalogVersion, ...(o.B !== undefined ? { parallel: o.B } : {}), ...(o.poll !== undefined ? { pollSeconds: o.poll } : {}), ...(o.content?.length ? { contents: o.content } : {}) };
  if (o.r) {
    const clash = (['F', 'i', 'p'] as const).filter((k) => o[k] !== undefined && o[k] !== false);
    if (clash.length) throw new InvalidArgumentError(`-r (rebalance) does not go with ${clash.map((k) => `-${k}`).join(', ')}: rebalance switches up, in-sync pairs back; recover first, then rebalance`);
    if (o.replayLag !== undefined && o.replayLagCheck === false) throw new InvalidArgumentError('--replay-lag and --disable-replay-lag exclude each other');
    return { kind: 'Rebalance', input: { ...common, ...(o.replayLagCheck === false ? { replayLagMB: null } : o.replayLag !== undefined ? { replayLagMB: o.replayLag } : {}) } };
  }
  if (o.replayLag !== undefined || o.replayLagCheck === false) throw new InvalidArgumentError('--replay-lag and --disable-replay-lag only go with -r (rebalance)');
  if (o.i !== undefined && o.p !== undefined) throw new InvalidArgumentError('-i and -p exclude each other (as in gprecoverseg)');
  if (o.i !== undefined && o.content?.length) throw new InvalidArgumentError('-i and --content exclude each other: the file names what to recover');
  if (o.spareAddress !== undefined && o.p === undefined) throw new InvalidArgumentError('--spare-address goes with -p');
  let recoverConfig: string | undefined;
  if (o.i !== undefined) {
    try {
      recoverConfig = readFile(o.i);
    } catch (e) {
      throw new InvalidArgumentError(`cannot read the recover config file ${o.i}: ${(e as Error).message}`);
    }
  }
  return {
    kind: 'RecoverSegments',
    input: {
      ...common,
      mode: o.F ? 'full' : 'incremental',
      ...(recoverConfig !== undefined ? { recoverConfig } : {}),
      ...(o.p !== undefined ? { spareHost: { hostname: o.p, address: o.spareAddress ?? o.p } } : {}),
    },
  };
}

/** One line of progress per content: `content 0 [#######.............] 35% 93/262 MB (pg_basebackup)`. */
export function progressLine(content: number, bytes: number, total: number, tool: string): string {
  const width = 20;
  const share = total > 0 ? Math.min(1, bytes / total) : 0;
  const filled = Math.round(share * width);
  const mb = (n: number) => (n / 1024 / 1024).toFixed(0);
  return `content ${content} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(0)}% ${mb(bytes)}/${mb(total)} MB (${tool})`;
}

/** The text `ftsctl recoverseg` prints for the summary an execution ends with. */
export function formatRecoverseg(r: WorkflowRunResult): string {
  const summary = ((r.output as { summarize?: unknown } | undefined)?.summarize ?? undefined) as
    | { done: { content: number; dbid: number }[]; failed: { content: number; reason: string }[]; skipped: { content: number; reason: string }[]; warnings: string[] }
    | undefined;
  const lines = [`${r.stateMachine} execution ${r.executionName}: ${r.status}`];
  if (r.executionArn) lines.push(`arn: ${r.executionArn}`);
  if (summary) {
    for (const d of summary.done) lines.push(`  content ${d.content}: dbid ${d.dbid} ${r.stateMachine === 'Rebalance' ? 'switched back (now a mirror again)' : 'recovered (up; in sync once caught up)'}`);
    for (const f of summary.failed) lines.push(`  content ${f.content}: FAILED: ${f.reason}`);
    for (const k of summary.skipped) lines.push(`  content ${k.content}: left alone: ${k.reason}`);
    for (const w of summary.warnings) lines.push(`  warning: ${w}`);
    if (!summary.done.length && !summary.failed.length && !summary.skipped.length) lines.push('  nothing to do');
  } else if (r.cause) lines.push(`${r.error ?? 'error'}: ${r.cause}`);
  return lines.join('\n');
}

/** Builds the command tree (exported for tests). */
export function buildProgram(): Command {
  const program = new Command('ftsctl')
    .description('Serverless FTS: fault tolerance for Greenplum-style PostgreSQL segment clusters')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const local = program.command('local').description('a whole cluster of real PostgreSQL instances on this machine');
  local
    .command('up')
    .description('build and start a local cluster, its catalog in DynamoDB Local and its prober')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--hosts <n>', 'segment hosts (sdw1..sdwN)', positiveInt('--hosts'))
    .option('--primaries-per-host <n>', 'primaries per host', positiveInt('--primaries-per-host'))
    .addOption(new Option('--mirroring <type>', 'mirror placement').choices(['group', 'spread', 'none']))
    .option('--no-coordinator', 'no coordinator (and no standby)')
    .option('--no-standby', 'no standby coordinator')
    .option('--base-port <port>', 'ports from this one up, in dbid order (default: free ports)', positiveInt('--base-port'))
    .option('--setting <key=value>', 'a prober setting (repeatable)', collectSetting, {})
    .option('--spec <file>', 'a JSON cluster spec (flags given override it)')
    .option('--no-prober', 'do not start the background prober')
    .action(async (o) => {
      const fromFile = o.spec ? (JSON.parse(readFileSync(o.spec, 'utf8')) as Record<string, unknown>) : {};
      const spec = {
        ...fromFile,
        clusterId: o.cluster ?? fromFile.clusterId,
        ...(o.hosts !== undefined ? { hosts: o.hosts } : {}),
        ...(o.primariesPerHost !== undefined ? { primariesPerHost: o.primariesPerHost } : {}),
        ...(o.mirroring !== undefined ? { mirroring: o.mirroring } : {}),
        ...(o.coordinator === false ? { coordinator: false, standby: false } : {}),
        ...(o.standby === false ? { standby: false } : {}),
        ...(o.basePort !== undefined ? { basePort: o.basePort } : {}),
        ...(Object.keys(o.setting).length ? { settings: { ...(fromFile.settings as object), ...o.setting } } : {}),
      };
      const started = Date.now();
      const cluster = await upLocalCluster(spec, { dir: o.dir, backgroundProber: o.prober, onProgress: (l) => print(`  ${l}`) });
      print(`\nCluster ${cluster.state.clusterId} is up (${((Date.now() - started) / 1000).toFixed(1)} s) in ${cluster.state.dir}`);
      print(table(['dbid', 'content', 'role', 'host', 'connection'], cluster.state.rows.map((r) => [r.dbid, r.content, r.role, r.hostname, connectionString(r)])));
      print(`\nDynamoDB Local: ${cluster.state.dynamo.endpoint}${o.prober ? `   prober timeline: ${cluster.proberLog}` : ''}`);
      if (cluster.state.endpoint) {
        const { address, port } = cluster.state.endpoint;
        print(`client endpoint: ${address}:${port} (follows the acting coordinator)`);
      }
      print(`Stop it with: npm run ftsctl -- local down${o.cluster === DEFAULT_LOCAL_CLUSTER_ID ? '' : ` --cluster ${o.cluster}`}`);
    });
  local
    .command('down')
    .description('stop and remove a local cluster (also after a crash)')
    .addOption(clusterOption())
    .addOption(dirOption())
    .action(async (o) => {
      const dir = o.dir ?? localClusterDir(o.cluster);
      const { stopped } = await downLocalCluster(dir);
      print(`Cluster ${o.cluster}: ${stopped} instances stopped, ${dir} removed`);
    });
  local
    .command('kill')
    .description('crash an instance (--dbid) or every instance of a host (--host) with kill -9')
    .addOption(clusterOption())
    .addOption(dirOption())
    .addOption(new Option('--dbid <dbid>', 'the instance').argParser(positiveInt('--dbid')).conflicts('host'))
    .addOption(new Option('--host <hostname>', 'every instance of this host'))
    .action(async (o) => {
      if (o.dbid === undefined && o.host === undefined) throw new InvalidArgumentError('local kill needs --dbid <dbid> or --host <hostname>');
      const snapshot = await catalogFor(o.cluster, o.dir).load(o.cluster);
      const targets = snapshot.segments.filter((r) => (o.dbid !== undefined ? r.dbid === o.dbid : r.hostname === o.host));
      if (!targets.length) {
        const known = o.dbid !== undefined ? snapshot.segments.map((r) => r.dbid).join(', ') : [...new Set(snapshot.segments.map((r) => r.hostname))].join(', ');
        throw new InvalidArgumentError(`no ${o.dbid !== undefined ? `dbid ${o.dbid}` : `host ${o.host}`} in cluster ${o.cluster}; known: ${known}`);
      }
      for (const r of targets) print(`dbid ${r.dbid} (${r.hostname}:${r.port}): ${(await killInstance(r.datadir)) ? 'killed' : 'was not running'}`);
    });

  withAwsOptions(program.command('state'))
    .description('the catalog, as gpstate shows it')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--json', 'rows with every gp_segment_configuration field, and the cluster status')
    .option('-e, --errors', 'only segments with problems')
    .option('-m, --mirrors', 'mirrors only')
    .option('-c, --mapping', 'primary to mirror mapping')
    .option('-f, --standby', 'coordinator and standby')
    .action(async (o, cmd: Command) => {
      const where = await whereFor(o, cmd);
      const snapshot = await where.catalog().load(where.clusterId);
      // With -f, also the standby's replication (content -1) as the prober last saw it (the prober's memory).
      const replication = o.standby ? { standbyReplication: snapshot.memory.replication?.['-1'] ?? null } : {};
      if (o.json) print(JSON.stringify({ clusterId: snapshot.clusterId, status: snapshot.status, version: snapshot.version, pendingPromotions: snapshot.pendingPromotions, pendingFences: snapshot.pendingFences, pendingOperations: snapshot.pendingOperations, segments: snapshot.segments, ...replication }, null, 2));
      else print(formatState(snapshot, { errors: o.errors, mirrors: o.mirrors, mapping: o.mapping, standby: o.standby }));
    });

  withAwsOptions(program.command('history'))
    .description('gp_configuration_history, oldest first')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--json', 'as JSON')
    .option('--limit <n>', 'the newest n rows', positiveInt('--limit'))
    .action(async (o, cmd: Command) => {
      const where = await whereFor(o, cmd);
      const history = await where.catalog().history(where.clusterId, o.limit);
      print(o.json ? JSON.stringify(history, null, 2) : formatHistory(history));
    });

  withAwsOptions(program.command('init'))
    .description("register a cluster in the catalog (gpinitsystem's gp_segment_configuration): a validated spec, placement checked, version 1 with its history row")
    .requiredOption('--spec <file>', 'the cluster spec (JSON): hosts and layout, or every instance (segments); see docs/deploy.md')
    .option('--discover-tag <key=value>', 'build the host list from the EC2 instances carrying this tag (address, instance id, zone, placement group, partition)', parseDiscoverTag)
    .option('--hostname-tag <key>', "with --discover-tag: the tag holding a host's hostname (default fts:hostname, else its private DNS name)")
    .option('--replace', 'replace the cluster if it is registered already (its rows and history go; refused while a workflow holds one of its contents)')
    .option('--dry-run', 'check and print what would be written; write nothing')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--json', 'one JSON object')
    .action(async (o, cmd: Command) => {
      if (o.hostnameTag !== undefined && o.discoverTag === undefined) throw new InvalidArgumentError('--hostname-tag goes with --discover-tag');
      const spec = readInitSpec(o.spec);
      const where = await whereFor(o, cmd, { specClusterId: spec.clusterId });
      if (o.discoverTag && where.local) throw new InvalidArgumentError(`--discover-tag reads EC2, but cluster ${where.clusterId} is a local one here: point at AWS with --outputs or --stack`);
      const compute = o.discoverTag ? new Ec2Compute(targetEc2(where.aws ?? { region: o.region, profile: o.profile }), o.hostnameTag ? { hostnameTag: o.hostnameTag } : {}) : undefined;
      const plan = await planInit(spec, { clusterId: where.clusterId, ...(o.discoverTag ? { discover: o.discoverTag, compute } : {}), aws: !where.local });
      const result = o.dryRun ? { ...plan, written: false } : await registerCluster(where.catalog(), plan, { replace: o.replace });
      print(o.json ? JSON.stringify({ clusterId: result.clusterId, written: result.written, replacedVersion: result.replacedVersion, warnings: result.warnings, settings: result.settings, segments: result.rows }, null, 2) : formatInit(result));
    });

  withAwsOptions(program.command('settings'))
    .description('show the prober settings of a cluster, or change them (--set, validated as a whole; the prober applies them from its next round)')
    .option('--set <key=value>', 'a setting to change (repeatable); key=default restores its default', collectSet)
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--json', 'as JSON')
    .action(async (o, cmd: Command) => {
      const where = await whereFor(o, cmd);
      const catalog = where.catalog();
      if (!o.set) {
        const settings = await catalog.loadSettings(where.clusterId);
        return print(o.json ? JSON.stringify(settings, null, 2) : formatSettings(where.clusterId, settings));
      }
      const { before, after } = await catalog.updateSettings(where.clusterId, (current) => applySettingChanges(current, o.set));
      print(o.json ? JSON.stringify({ clusterId: where.clusterId, before, after }, null, 2) : formatSettings(where.clusterId, after, before));
    });

  withAwsOptions(program.command('probe'))
    .description('probe every instance once, as the prober does, and print what each reports (changes nothing); in AWS, run it where the segments are reachable')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--json', 'as JSON')
    .option('--user <role>', 'role to connect as (trust auth, or PGPASSWORD / ~/.pgpass)', 'postgres')
    .action(async (o, cmd: Command) => {
      const where = await whereFor(o, cmd);
      const catalog = where.catalog();
      const [snapshot, settings] = await Promise.all([catalog.load(where.clusterId), catalog.loadSettings(where.clusterId)]);
      // A local cluster's instances run here: their crash-recovery progress can be read too.
      const local = where.local;
      const probe = new PgSegmentProbe({ credentials: trustCredentials(o.user), recoveryProgress: local ? localRecoveryProgress : undefined });
      const results = await probe.probeAll(snapshot.segments, settings, snapshot.segments);
      if (o.json) return print(JSON.stringify(results, null, 2));
      print(
        table(
          ['dbid', 'content', 'catalog role', 'answer', 'mirror replication', 'ms'],
          results.map((p, i) => {
            const r = snapshot.segments[i];
            const answer = p.ok
              ? p.inRecovery
                ? 'in recovery (mirror)'
                : `primary, sync rep ${p.syncRepOn ? 'on' : 'off'}`
              : `${p.kind}${p.recoveryLsn ? ` (replaying at ${p.recoveryLsn})` : ''}: ${p.message}`;
            const replication = p.ok && !p.inRecovery ? `${p.mirror.state}${p.mirror.syncState !== 'none' ? ` ${p.mirror.syncState}` : ''}` : '';
            return [r.dbid, r.content, r.role, answer, replication, p.durationMs];
          }),
        ),
      );
    });


  withAwsOptions(program.command('initstandby'))
    .description("add a standby of the coordinator on another host (gpinitstandby -s), or remove it (-r); follows the workflow to its end")
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('-s <hostname>', "the standby's host: not the coordinator's host, EC2 instance or partition (nor its zone, unless --allow-same-zone)")
    .option('-P <port>', "the standby's port (default the coordinator's)", parsePort)
    .option('-S, --datadir <dir>', "the standby's data directory, absolute (default the coordinator's)")
    .option('-r', 'remove the standby: sync rep off first, then stop it, drop its slot, remove its row')
    .option('--address <address>', 'the address the coordinator reaches the standby at (default its hostname; 127.0.0.1 on a local cluster)')
    .option('--instance-id <id>', "the EC2 instance of the standby's host (needed in AWS unless a catalog row names that host)")
    .option('--availability-zone <az>', "the availability zone of the standby's host")
    .option('--allow-same-zone', "accept a standby in the coordinator's availability zone (a cluster in one zone)")
    .option('--poll <seconds>', 'seconds between two looks at the copy (default 2 locally, 10 in AWS)', positiveInt('--poll'))
    .option('--state-machine-arn <arn>', 'run it in AWS (StartExecution of the InitStandby state machine) instead of on the local cluster (not needed with --outputs or --stack)')
    .option('--no-wait', 'AWS only: start the execution and print its ARN without following it')
    .option('--json', 'one JSON object')
    .action(async (o, cmd: Command) => {
      const inAws = o.stateMachineArn !== undefined || o.outputs !== undefined || o.stack !== undefined;
      const options: InitstandbyOptions = { s: o.s, P: o.P, datadir: o.datadir, r: o.r, address: o.address, instanceId: o.instanceId, availabilityZone: o.availabilityZone, allowSameZone: o.allowSameZone, poll: o.poll ?? (inAws ? undefined : 2) };
      if (o.wait === false && !inAws) throw new InvalidArgumentError('--no-wait needs --state-machine-arn, --outputs or --stack (AWS): a local workflow runs in this process and ends with it');
      const place = { local: !inAws };
      initstandbyRequest(o.cluster, undefined, options, place); // bad flags: refused before anything is read
      const where = await whereFor(o, cmd);
      if (place.local && !o.r) {
        // Every local instance shares 127.0.0.1 and one disk: the coordinator's port and data
        // directory (gpinitstandby's defaults) are taken, so the new host gets its own.
        options.P ??= await freePort();
        options.datadir ??= join(o.dir ?? localClusterDir(where.clusterId), o.s as string, 'coordinator', 'gpseg-1');
      }
      const snapshot = await where.catalog().load(where.clusterId);
      const { kind, input } = initstandbyRequest(where.clusterId, snapshot.version, options, place);
      const executionName = executionNameFor(kind, input);
      const arn = where.arn(kind);
      let result: WorkflowRunResult;
      if (arn !== undefined) {
        const followed = await startInAws(where.sfn(), arn, o, kind, input, executionName);
        if (!followed) return;
        result = followed;
      } else {
        let shown = 0;
        result = await runWorkflowLocally(openLocalCluster(o.dir ?? localClusterDir(where.clusterId)), kind, input, {
          executionName,
          onLog: (e) => {
            if (o.json || e.message !== 'rebuild progress' || typeof e.bytes !== 'number' || typeof e.total !== 'number' || Date.now() - shown < 1000) return;
            shown = Date.now();
            process.stderr.write(`${progressLine(-1, e.bytes, e.total, String(e.tool ?? ''))}\n`);
          },
        });
      }
      if (o.json) print(JSON.stringify({ ...result, log: undefined }, null, 2));
      else print(formatInitstandby(result));
      process.exitCode = result.status === 'SUCCEEDED' ? 0 : 1;
    });

  withAwsOptions(program.command('recoverseg'))
    .description('recover down mirrors (gprecoverseg) or, with -r, switch pairs back to their preferred roles; follows the workflow to its end')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('-F', 'full recovery: empty the data directory and copy it anew (pg_basebackup) instead of pg_rewind')
    .option('-r', 'rebalance: switch every up, in-sync pair out of its preferred roles back by a planned switchover')
    .option('--replay-lag <MB>', 'with -r: refuse a pair whose mirror has more than this much WAL to replay (default 10240)', (v) => {
      const n = Number(v);
      if (!/^\d+(\.\d+)?$/.test(v) || !Number.isFinite(n)) throw new InvalidArgumentError(`--replay-lag must be a number of MB, got "${v}"`);
      return n;
    })
    .option('--disable-replay-lag', 'with -r: switch whatever the replay lag')
    .option('-i <file>', 'a recover config file: failedAddress|port|datadir[ newAddress|port|datadir] per line')
    .option('-p <hostname>', 'recover onto this spare host (same port and data directory)')
    .option('--spare-address <address>', 'with -p: the address of the spare host (default its hostname)')
    .option('-B <n>', 'contents recovered at once (default 16)', positiveInt('-B'))
    .option('--content <ids>', 'only these contents (comma-separated)', (v) =>
      v.split(',').map((c) => {
        if (!/^\d+$/.test(c.trim())) throw new InvalidArgumentError(`--content takes content ids separated by commas, got "${v}"`);
        return Number(c.trim());
      }),
    )
    .option('--poll <seconds>', 'seconds between two looks at a running copy (default 2 locally, 10 in AWS)', positiveInt('--poll'))
    .option('--state-machine-arn <arn>', 'run it in AWS (StartExecution of this RecoverSegments or Rebalance state machine) instead of on the local cluster (not needed with --outputs or --stack)')
    .option('--no-wait', 'AWS only: start the execution and print its ARN without following it')
    .option('--json', 'one JSON object')
    .action(async (o, cmd: Command) => {
      const inAws = o.stateMachineArn !== undefined || o.outputs !== undefined || o.stack !== undefined;
      const options: RecoversegOptions = { F: o.F, r: o.r, replayLag: o.replayLag, replayLagCheck: o.disableReplayLag ? false : undefined, i: o.i, p: o.p, spareAddress: o.spareAddress, B: o.B, content: o.content, poll: o.poll };
      if (o.wait === false && !inAws) throw new InvalidArgumentError('--no-wait needs --state-machine-arn, --outputs or --stack (AWS): a local workflow runs in this process and ends with it');
      recoversegRequest(o.cluster, 1, options); // bad flags: refused before anything is read
      const where = await whereFor(o, cmd);
      const snapshot = await where.catalog().load(where.clusterId);
      const { kind, input } = recoversegRequest(where.clusterId, snapshot.version, { ...options, poll: options.poll ?? (inAws ? undefined : 2) });
      // The spec's name: the same request on the same catalog version is one execution, however often it is started.
      const executionName = executionNameFor(kind, input);
      const shown = new Map<number, number>();
      const showProgress = (p: RebuildProgress): void => {
        if (o.json || Date.now() - (shown.get(p.content) ?? 0) < 1000) return;
        shown.set(p.content, Date.now());
        process.stderr.write(`${progressLine(p.content, p.bytes, p.total, p.tool)}\n`);
      };
      const arn = where.arn(kind);
      let result: WorkflowRunResult;
      if (arn !== undefined) {
        const followed = await startInAws(where.sfn(), arn, o, kind, input, executionName, showProgress);
        if (!followed) return;
        result = followed;
      } else {
        const dir = o.dir ?? localClusterDir(where.clusterId);
        result = await runWorkflowLocally(openLocalCluster(dir), kind, input, {
          executionName,
          onLog: (e) => {
            if (e.message !== 'rebuild progress' || typeof e.content !== 'number' || typeof e.bytes !== 'number' || typeof e.total !== 'number') return;
            showProgress({ content: e.content, bytes: e.bytes, total: e.total, tool: String(e.tool ?? '') });
          },
        });
      }
      if (o.json) print(JSON.stringify({ ...result, log: undefined }, null, 2));
      else print(formatRecoverseg(result));
      process.exitCode = result.status === 'SUCCEEDED' ? 0 : 1;
    });

  withAwsOptions(program.command('activatestandby'))
    .description('make the standby the coordinator (gpactivatestandby): confirm the coordinator is down, fence it, promote the standby, move the client endpoint; follows the workflow to its end')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('-f, --force', 'activate although the coordinator answers (it is fenced first), or although its fence cannot be confirmed')
    .option('--ignore-lag', 'activate a standby that is not in sync, losing the commits it has not received')
    .option('--standby-dbid <dbid>', 'the standby the caller means (refused when the catalog names another)', positiveInt('--standby-dbid'))
    .option('--state-machine-arn <arn>', 'run it in AWS (StartExecution of the ActivateStandby state machine) instead of on the local cluster (not needed with --outputs or --stack)')
    .option('--json', 'one JSON object')
    .action(async (o, cmd: Command) => {
      const where = await whereFor(o, cmd);
      const arn = where.arn('ActivateStandby');
      const snapshot = await where.catalog().load(where.clusterId);
      const input = activateStandbyRequest(where.clusterId, snapshot.version, { force: o.force, ignoreLag: o.ignoreLag, standbyDbid: o.standbyDbid });
      const executionName = executionNameFor('ActivateStandby', input);
      const result = arn !== undefined
        ? await runWorkflowInAws(where.sfn(), arn, 'ActivateStandby', JSON.stringify(input), { executionName, pollMs: 1000 })
        : await runWorkflowLocally(openLocalCluster(o.dir ?? localClusterDir(where.clusterId)), 'ActivateStandby', input, { executionName });
      if (o.json) print(JSON.stringify({ ...result, log: undefined }, null, 2));
      else print(formatActivation(result));
      process.exitCode = result.status === 'SUCCEEDED' ? 0 : 1;
    });

  const workflow = program.command('workflow').description('the FTS workflows (Step Functions state machines)');
  withAwsOptions(workflow.command('run'))
    .description('run a workflow with the input one would paste into the Step Functions console, wait for its end and print it (exit 0 when it succeeded)')
    .argument('<stateMachine>', `the state machine: ${WORKFLOW_KINDS.join(', ')}`)
    .requiredOption('--input <json>', 'the execution input, as JSON')
    .addOption(clusterOption())
    .addOption(dirOption())
    .option('--state-machine-arn <arn>', 'run it in AWS (StartExecution, then DescribeExecution until it ends) instead of on the local cluster (not needed with --outputs or --stack)')
    .option('--name <executionName>', 'execution name (default ftsctl-<uuid>)')
    .option('--json', 'one JSON object')
    .action(async (name: string, o, cmd: Command) => {
      const stateMachine = workflowKind(name);
      const input = parseExecutionInput(o.input); // malformed JSON: nothing runs
      const aws = await resolveAwsTarget(o);
      if (aws && o.dir !== undefined) throw new InvalidArgumentError('--dir names a local cluster, --outputs and --stack a stack in AWS: give one or the other');
      const arn = stateMachineArnFor(aws, stateMachine, o.stateMachineArn);
      let result: WorkflowRunResult;
      if (arn !== undefined) {
        result = await runWorkflowInAws(targetSfn(aws ?? { region: o.region, profile: o.profile }), arn, stateMachine, o.input, { executionName: o.name });
      } else {
        const clusterId = clusterIdFor(o, cmd, undefined);
        const dir = o.dir ?? localClusterDir(clusterId);
        const state = readLocalState(dir);
        if (state?.phase !== 'ready') {
          throw new ValidationError(`no local cluster ${clusterId} runs in ${dir} (start one with: npm run ftsctl -- local up --cluster ${clusterId}); to run the workflow in AWS, give --outputs, --stack or --state-machine-arn`);
        }
        result = await runWorkflowLocally(openLocalCluster(dir), stateMachine, input, { executionName: o.name });
      }
      if (o.json) print(JSON.stringify(result, null, 2));
      else print(formatWorkflowRun(result));
      process.exitCode = result.status === 'SUCCEEDED' ? 0 : 1;
    });

  program
    .command('demo')
    .description('build a local cluster, write to it, kill a primary (or with --coordinator the coordinator), watch the failover, count the commits, tear down')
    .option('--hosts <n>', 'segment hosts', positiveInt('--hosts'), 2)
    .option('--coordinator', 'kill the coordinator and activate its standby (ftsctl activatestandby), writing through the client endpoint')
    .option('--auto', 'with --coordinator: the prober activates the standby (autoActivateStandby) instead of the command')
    .action(async (o) => {
      await runDemo({ hosts: o.hosts, coordinator: o.coordinator, auto: o.auto, print });
    });
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((e: unknown) => {
      const err = e as Error;
      // Stacks only on request: a user needs the reason, not our call chain.
      process.stderr.write(`ftsctl: ${process.env.FTS_DEBUG ? (err.stack ?? err.message) : err.message}\n`);
      process.exit(err instanceof InvalidArgumentError || err?.name === 'ValidationError' ? 2 : 1);
    });
}
