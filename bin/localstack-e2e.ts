#!/usr/bin/env -S npx tsx
/**
 * `npm run localstack:e2e`: the deployed control plane against LocalStack, end to end.
 *
 * When no LocalStack answers at `AWS_ENDPOINT_URL` (default http://localhost:4566,
 * `/_localstack/health`, a 2 s timeout) it prints one line saying what to start and
 * exits 0. When one answers it:
 *
 *  1. creates a VPC, a subnet and a security group in LocalStack's EC2 (Lambda's
 *     CreateFunction looks up the VPC of the first subnet) and a secret with the
 *     PostgreSQL user (`postgres`, trust auth),
 *  2. starts a local cluster (2 primaries, 2 mirrors, no coordinator) with
 *     `upLocalCluster`, then makes every instance also listen on an address the Lambda
 *     containers can reach (this machine's address on the Docker network, docker0 by
 *     default) and trust that network,
 *  3. `cdklocal bootstrap` and `cdklocal deploy --outputs-file` (through `npx --yes
 *     aws-cdk-local`, with this repository's aws-cdk CLI found through NODE_PATH),
 *  4. registers the cluster in the stack's catalog tables with the catalog adapter, rows
 *     carrying the routable address,
 *  5. invokes the prober asynchronously (InvocationType Event) and again every 55 s,
 *     as the schedule would (LocalStack's EventBridge Scheduler does not fire),
 *  6. once the prober holds its lease and has left the healthy catalog alone, kills the
 *     primary of content 0 and follows the catalog and the PromoteMirror execution,
 *  7. prints the result and removes everything it made (also after a failure or Ctrl-C).
 *
 * Not part of `npm test`; see docs/localstack.md for what LocalStack does and does not do.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { LocalCluster } from '../cli/local-cluster';
import type { DynamoDbCatalog } from '../lambdas/adapters/dynamodb/catalog';
import type { SegmentRow } from '../lambdas/core/model';

/** The last LocalStack image that starts without LOCALSTACK_AUTH_TOKEN (docs/localstack.md). */
export const LOCALSTACK_IMAGE = 'localstack/localstack:4.14.0';
/** Where LocalStack listens unless AWS_ENDPOINT_URL says otherwise. */
export const DEFAULT_LOCALSTACK_ENDPOINT = 'http://localhost:4566';
/** The cdklocal wrapper, pinned (it needs an aws-cdk CLI beside it: this repository's). */
const AWS_CDK_LOCAL = 'aws-cdk-local@3.0.4';
/** LocalStack's account for the `test` access key. */
const LOCALSTACK_ACCOUNT = '000000000000';
const CLUSTER_ID = 'lse2e';
const STACK_NAME = `Fts-${CLUSTER_ID}`;
const REPO_ROOT = resolve(__dirname, '..');
/** Faster than the defaults so the run is short: a probe takes at most 3 x 2 s + 2 x 0.5 s. */
const E2E_SETTINGS = { probeIntervalSeconds: 2, probeTimeoutSeconds: 2, probeRetries: 2, probeRetryDelaySeconds: 0.5 };
const WORST_PROBE_MS = ((E2E_SETTINGS.probeRetries + 1) * E2E_SETTINGS.probeTimeoutSeconds + E2E_SETTINGS.probeRetries * E2E_SETTINGS.probeRetryDelaySeconds) * 1000;
/** Services the stack and the run use; a LocalStack with one of them disabled cannot run it. */
const REQUIRED_SERVICES = ['cloudformation', 'dynamodb', 'ec2', 'iam', 'lambda', 'logs', 's3', 'scheduler', 'secretsmanager', 'sns', 'ssm', 'stepfunctions', 'sts'];

const print = (text: string): void => void process.stdout.write(`${text}\n`);

/** What `/_localstack/health` says. */
export interface LocalStackHealth {
  version?: string;
  edition?: string;
  services: Record<string, string>;
}

/** The endpoint to look for LocalStack at: AWS_ENDPOINT_URL, else http://localhost:4566. */
export function localstackEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.AWS_ENDPOINT_URL?.trim() || DEFAULT_LOCALSTACK_ENDPOINT).replace(/\/+$/, '');
}

/** LocalStack's health at `endpoint`, or undefined when nothing (or something else) answers within `timeoutMs`. */
export async function detectLocalStack(endpoint: string, timeoutMs = 2000): Promise<LocalStackHealth | undefined> {
  try {
    const response = await fetch(`${endpoint}/_localstack/health`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return undefined;
    const body = (await response.json()) as { services?: unknown; version?: unknown; edition?: unknown };
    if (!body || typeof body.services !== 'object' || body.services === null) return undefined;
    return {
      services: Object.fromEntries(Object.entries(body.services as Record<string, unknown>).map(([k, v]) => [k, String(v)])),
      ...(typeof body.version === 'string' ? { version: body.version } : {}),
      ...(typeof body.edition === 'string' ? { edition: body.edition } : {}),
    };
  } catch {
    return undefined;
  }
}

/** The one line printed when no LocalStack answers: what to start. */
export function startLocalStackLine(endpoint: string): string {
  return (
    `localstack:e2e: no LocalStack answers at ${endpoint}/_localstack/health, so nothing was deployed; start one with ` +
    `\`docker run -d --name fts-localstack -p 4566:4566 -v /var/run/docker.sock:/var/run/docker.sock -e LAMBDA_IGNORE_ARCHITECTURE=1 ${LOCALSTACK_IMAGE}\` ` +
    `(the last image that needs no LOCALSTACK_AUTH_TOKEN; later images also need -e LOCALSTACK_AUTH_TOKEN) and run npm run localstack:e2e again (docs/localstack.md).`
  );
}

/** Where the Lambda containers reach the segments, and the network pg_hba must trust. */
export interface SegmentNetwork {
  /** An address of this machine the Lambda containers can route to (catalog rows carry it). */
  address: string;
  /** The network the Lambda containers connect from (`host all all <cidr> trust`). */
  cidr: string;
}

/** `172.17.0.1/16` -> `172.17.0.0/16`. */
export function networkOf(cidr: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) throw new Error(`not an IPv4 CIDR: ${cidr}`);
  const bits = Number(m[5]);
  const ip = m.slice(1, 5).reduce((n, o) => n * 256 + Number(o), 0);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const net = (ip & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.')}/${bits}`;
}

/**
 * FTS_E2E_SEGMENT_ADDRESS (an IPv4 address of this machine on the Docker network the
 * Lambda containers join), else the address of `docker0` (Docker's default bridge, where
 * Lambda containers of a LocalStack started with plain `docker run` land). The trusted
 * network is that interface's, or FTS_E2E_LAMBDA_CIDR.
 */
export function segmentNetwork(env: NodeJS.ProcessEnv = process.env, interfaces = networkInterfaces()): SegmentNetwork {
  const wanted = env.FTS_E2E_SEGMENT_ADDRESS?.trim();
  const ipv4 = Object.entries(interfaces).flatMap(([name, list]) => (list ?? []).filter((i) => i.family === 'IPv4').map((i) => ({ name, ...i })));
  const found = wanted ? ipv4.find((i) => i.address === wanted) : ipv4.find((i) => i.name === 'docker0');
  if (!found) {
    throw new Error(
      wanted
        ? `FTS_E2E_SEGMENT_ADDRESS=${wanted} is not an IPv4 address of this machine (PostgreSQL must listen on it); its addresses: ${ipv4.map((i) => `${i.address} (${i.name})`).join(', ')}`
        : 'no docker0 interface here: set FTS_E2E_SEGMENT_ADDRESS to the IPv4 address of this machine on the Docker network LocalStack starts its Lambda containers in (LAMBDA_DOCKER_NETWORK; docs/localstack.md)',
    );
  }
  return { address: found.address, cidr: env.FTS_E2E_LAMBDA_CIDR?.trim() || networkOf(found.cidr ?? `${found.address}/32`) };
}

/** Runs a command in the repository with its output shown; rejects unless it exits 0. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolvePromise() : reject(new Error(`${command} ${args.slice(0, 3).join(' ')} ... failed (${signal ?? `exit ${code}`}); its output is above`))));
  });
}

/** Loads the modules of the run itself (the detection above needs none of them). */
async function loadModules() {
  return {
    ec2: await import('@aws-sdk/client-ec2'),
    secrets: await import('@aws-sdk/client-secrets-manager'),
    lambda: await import('@aws-sdk/client-lambda'),
    sfn: await import('@aws-sdk/client-sfn'),
    dynamodb: await import('@aws-sdk/client-dynamodb'),
    cluster: await import('../cli/local-cluster'),
    target: await import('../cli/aws-target'),
    host: await import('../lambdas/adapters/local/host'),
  };
}

/** The whole run against the LocalStack at `endpoint`; returns the exit code. */
async function runE2e(endpoint: string, health: LocalStackHealth): Promise<number> {
  const t0 = Date.now();
  const log = (text: string): void => print(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}`);
  log(`LocalStack ${health.version ?? '(version unknown)'} (${health.edition ?? 'edition unknown'}) answers at ${endpoint}${health.version && !health.version.startsWith('4.14.') ? `; this run was written against ${LOCALSTACK_IMAGE}` : ''}`);
  const disabled = REQUIRED_SERVICES.filter((s) => /^(disabled|error)$/.test(health.services[s] ?? ''));
  if (disabled.length) {
    print(`localstack:e2e: this LocalStack has ${disabled.map((s) => `${s} ${health.services[s]}`).join(', ')}; the run needs ${REQUIRED_SERVICES.join(', ')} (leave SERVICES unset)`);
    return 1;
  }
  let net: SegmentNetwork;
  try {
    net = segmentNetwork();
  } catch (e) {
    print(`localstack:e2e: ${(e as Error).message}`);
    return 1;
  }

  // Every AWS client of this process and of cdklocal talks to LocalStack, as account 000000000000.
  const userS3Endpoint = process.env.AWS_ENDPOINT_URL_S3;
  for (const key of Object.keys(process.env)) if (key.startsWith('AWS_ENDPOINT_URL_') || key === 'AWS_PROFILE' || key === 'AWS_DEFAULT_PROFILE' || key === 'AWS_SESSION_TOKEN') delete process.env[key];
  const region = process.env.AWS_REGION?.trim() || process.env.AWS_DEFAULT_REGION?.trim() || 'us-east-1';
  Object.assign(process.env, { AWS_ENDPOINT_URL: endpoint, AWS_REGION: region, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' });
  const aws = { region, endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, maxAttempts: 5 };
  // cdklocal (aws-cdk >= 2.177) drops AWS_* variables but AWS_ENDPOINT_URL* and the allowlisted ones, and wants AWS_ENDPOINT_URL_S3 with AWS_ENDPOINT_URL.
  const cdkEnv: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ENDPOINT_URL_S3: userS3Endpoint ?? endpoint,
    AWS_S3_FORCE_PATH_STYLE: '1',
    AWS_ENVAR_ALLOWLIST: 'AWS_REGION,AWS_DEFAULT_REGION,AWS_S3_FORCE_PATH_STYLE',
    AWS_DEFAULT_REGION: region,
    NODE_PATH: [join(REPO_ROOT, 'node_modules'), process.env.NODE_PATH].filter(Boolean).join(':'),
  };
  const cdklocal = (args: string[]) => run('npx', ['--yes', AWS_CDK_LOCAL, ...args], cdkEnv);

  const m = await loadModules();
  const ec2 = new m.ec2.EC2Client(aws);
  const secrets = new m.secrets.SecretsManagerClient(aws);
  const lambda = new m.lambda.LambdaClient(aws);
  const sfn = new m.sfn.SFNClient(aws);
  const dynamo = new m.dynamodb.DynamoDBClient(aws);
  const work = join(tmpdir(), `fts-localstack-e2e-${process.pid}`);
  const cdkOut = join(work, 'cdk.out');
  const outputsFile = join(work, 'cdk-outputs.json');
  const clusterDir = join(work, 'cluster');
  await mkdir(work, { recursive: true });

  // What was made, undone newest first; every step may run after a half-done one.
  const undo: { what: string; run: () => Promise<unknown> }[] = [];
  let tornDown: Promise<void> | undefined;
  const teardown = (): Promise<void> =>
    (tornDown ??= (async () => {
      log('tearing down');
      for (const step of undo.reverse()) {
        try {
          await step.run();
          log(`  removed ${step.what}`);
        } catch (e) {
          log(`  could not remove ${step.what}: ${(e as Error).message}`);
        }
      }
      await rm(work, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: stopping`);
    void teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let ok = false;
  try {
    // 1. The network the stack places its functions in, and the credentials secret.
    const vpc = await ec2.send(new m.ec2.CreateVpcCommand({ CidrBlock: '10.213.0.0/16' }));
    const vpcId = vpc.Vpc?.VpcId as string;
    undo.push({ what: `VPC ${vpcId}`, run: () => ec2.send(new m.ec2.DeleteVpcCommand({ VpcId: vpcId })) });
    const subnet = await ec2.send(new m.ec2.CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.213.1.0/24', AvailabilityZone: `${region}a` }));
    const subnetId = subnet.Subnet?.SubnetId as string;
    undo.push({ what: `subnet ${subnetId}`, run: () => ec2.send(new m.ec2.DeleteSubnetCommand({ SubnetId: subnetId })) });
    const group = await ec2.send(new m.ec2.CreateSecurityGroupCommand({ GroupName: `fts-${CLUSTER_ID}-segments-${process.pid}`, Description: 'FTS LocalStack e2e: segment hosts', VpcId: vpcId }));
    const groupId = group.GroupId as string;
    undo.push({ what: `security group ${groupId}`, run: () => ec2.send(new m.ec2.DeleteSecurityGroupCommand({ GroupId: groupId })) });
    const secret = await secrets.send(new m.secrets.CreateSecretCommand({ Name: `fts-e2e/${CLUSTER_ID}/pg-${process.pid}`, SecretString: JSON.stringify({ username: 'postgres' }) }));
    const secretArn = secret.ARN as string;
    undo.push({ what: `secret ${secretArn}`, run: () => secrets.send(new m.secrets.DeleteSecretCommand({ SecretId: secretArn, ForceDeleteWithoutRecovery: true })) });
    log(`LocalStack EC2: ${vpcId}, ${subnetId} (${region}a), ${groupId}; secret ${secretArn}`);

    // 2. The cluster, reachable from the Lambda containers.
    undo.push({ what: `local cluster in ${clusterDir}`, run: () => m.cluster.downLocalCluster(clusterDir) });
    log(`starting a local cluster in ${clusterDir}`);
    const cluster = await m.cluster.upLocalCluster(
      { clusterId: CLUSTER_ID, hosts: 2, primariesPerHost: 1, mirroring: 'group', coordinator: false, standby: false, settings: E2E_SETTINGS },
      { dir: clusterDir, onProgress: (line) => log(`  ${line}`) },
    );
    log(`making every instance listen on ${net.address} too and trust ${net.cidr} (the Lambda containers' network); restarting mirrors, then primaries`);
    const rows = await exposeToLambdas(cluster, net);

    // 3. The stack.
    const context = [
      ['clusterId', CLUSTER_ID],
      ['vpcId', vpcId],
      ['availabilityZones', `${region}a`],
      ['privateSubnetIds', subnetId],
      ['segmentSecurityGroupId', groupId],
      ['pgSecretArn', secretArn],
      ['segmentPorts', '1024-65535'],
    ].flatMap(([k, v]) => ['-c', `${k}=${v}`]);
    log(`cdklocal bootstrap aws://${LOCALSTACK_ACCOUNT}/${region} (npx --yes ${AWS_CDK_LOCAL})`);
    await cdklocal(['bootstrap', `aws://${LOCALSTACK_ACCOUNT}/${region}`, '--output', cdkOut, ...context]);
    undo.push({
      what: `stack ${STACK_NAME} and its retained tables`,
      run: async () => {
        await cdklocal(['destroy', STACK_NAME, '--force', '--output', cdkOut, ...context]);
        const { TableNames = [] } = await dynamo.send(new m.dynamodb.ListTablesCommand({}));
        for (const table of TableNames.filter((t) => t.startsWith(`${STACK_NAME}-`))) {
          // Retained by the stack, and possibly deletion-protected.
          await dynamo.send(new m.dynamodb.UpdateTableCommand({ TableName: table, DeletionProtectionEnabled: false })).catch(() => undefined);
          await dynamo.send(new m.dynamodb.DeleteTableCommand({ TableName: table }));
        }
      },
    });
    log(`cdklocal deploy ${STACK_NAME} --outputs-file ${outputsFile}`);
    await cdklocal(['deploy', STACK_NAME, '--require-approval', 'never', '--outputs-file', outputsFile, '--output', cdkOut, ...context]);
    const picked = m.target.pickStack(JSON.parse(readFileSync(outputsFile, 'utf8')), outputsFile, STACK_NAME);
    const target = m.target.targetFromOutputs(picked.outputs, `stack ${STACK_NAME} in ${outputsFile}`, { stackName: STACK_NAME, region });
    const proberFunction = picked.outputs.ProberFunctionName;
    const promoteArn = target.stateMachineArns.PromoteMirror;
    if (!proberFunction || !promoteArn) throw new Error(`${outputsFile} lacks ProberFunctionName or PromoteMirrorStateMachineArn`);

    // 4. Registration with `ftsctl init`: every instance as it runs, at the address the Lambda containers reach.
    const specFile = join(work, 'cluster-spec.json');
    writeFileSync(specFile, JSON.stringify(initSpecFor(CLUSTER_ID, rows, net.address, cluster.state.settings), null, 2));
    log(`ftsctl init --spec ${specFile} --outputs ${outputsFile}`);
    await run(process.execPath, [require.resolve('tsx/cli'), join(REPO_ROOT, 'bin', 'ftsctl.ts'), 'init', '--spec', specFile, '--outputs', outputsFile, '--cluster', CLUSTER_ID], process.env);
    const catalog = m.target.targetCatalog(target);

    // 5. The prober, invoked as the schedule would.
    const invoke = async (why: string): Promise<void> => {
      const out = await lambda.send(new m.lambda.InvokeCommand({ FunctionName: proberFunction, InvocationType: 'Event', Payload: new TextEncoder().encode(JSON.stringify({ clusterId: CLUSTER_ID })) }));
      log(`prober ${proberFunction} invoked asynchronously (${why}; status ${out.StatusCode})`);
    };
    await invoke('first');
    const timer = setInterval(() => void invoke('again, as the one-minute schedule would').catch((e: Error) => log(`invoke failed: ${e.message}`)), 55_000);
    undo.push({ what: 'the prober invocations', run: async () => clearInterval(timer) });

    const leaseSeen = new Set<string>();
    const leaseDeadline = Date.now() + 240_000;
    while (leaseSeen.size < 3) {
      if (Date.now() > leaseDeadline) throw new Error('the prober did not hold its lease for two rounds within 240 s: see the Lambda output in LocalStack\'s log (docker logs fts-localstack)');
      const { Item } = await dynamo.send(new m.dynamodb.GetItemCommand({ TableName: target.tables.clusters, Key: { clusterId: { S: CLUSTER_ID } }, ConsistentRead: true }));
      const expires = Item?.leaseExpiresAt?.N;
      if (expires && Number(expires) > Date.now()) {
        if (!leaseSeen.size) log(`prober lease taken by ${Item?.leaseOwner?.S ?? '?'}`);
        leaseSeen.add(expires);
      }
      await sleep(1000);
    }
    await sleep(WORST_PROBE_MS + 2 * E2E_SETTINGS.probeIntervalSeconds * 1000);
    const healthy = await catalog.load(CLUSTER_ID);
    const down = healthy.segments.filter((r) => r.status !== 'u');
    if (down.length || healthy.pendingPromotions.length || Object.keys(healthy.memory.failoversStarted).length) {
      const history = await catalog.history(CLUSTER_ID);
      throw new Error(
        `before any fault the prober marked ${down.map((r) => `dbid ${r.dbid}`).join(', ') || 'nothing'} down and started ${healthy.pendingPromotions.length} promotion(s): ` +
          `its Lambda container does not reach the segments at ${net.address} (LAMBDA_DOCKER_NETWORK, FTS_E2E_SEGMENT_ADDRESS, a host firewall?). History: ${history.map((h) => h.description).join(' | ')}`,
      );
    }
    log(`the prober has probed the healthy cluster for ${leaseSeen.size - 1} rounds and changed nothing`);

    // 6. The fault.
    const primary = healthy.segments.find((r) => r.content === 0 && r.role === 'p') as SegmentRow;
    const mirror = healthy.segments.find((r) => r.content === 0 && r.role === 'm') as SegmentRow;
    const killedAt = Date.now();
    await m.host.killInstance(primary.datadir);
    log(`killed the primary of content 0: dbid ${primary.dbid} (${primary.hostname}, port ${primary.port}); its mirror is dbid ${mirror.dbid}`);
    const outcome = await follow({ catalog, sfn, m, promoteArn, mirror, killedAt, log });

    // 7. The result.
    const after = await catalog.load(CLUSTER_ID);
    const newPrimary = after.segments.find((r) => r.dbid === mirror.dbid);
    let writable = false;
    if (newPrimary?.role === 'p') {
      writable = await cluster.control.verifyWritable({ ...newPrimary, address: '127.0.0.1' }, 10_000).then(() => true, (e: Error) => (log(`dbid ${mirror.dbid} is not writable: ${e.message}`), false));
    }
    const history = await catalog.history(CLUSTER_ID);
    for (const h of history) log(`  history: dbid ${h.dbid}: ${h.description}`);
    ok = newPrimary?.role === 'p' && outcome.status === 'SUCCEEDED' && writable;
    print(
      `localstack:e2e: ${ok ? 'PASSED' : 'FAILED'}: ` +
        (outcome.flippedAfterMs !== undefined ? `dbid ${mirror.dbid} became the primary of content 0 ${(outcome.flippedAfterMs / 1000).toFixed(1)} s after the kill${writable ? ' and takes writes' : ''}` : `dbid ${mirror.dbid} did not become primary`) +
        `; PromoteMirror ${outcome.name ?? '(no execution)'}: ${outcome.status ?? 'not started'}` +
        (after.pendingFences.length ? `; the fence of dbid ${after.pendingFences.map((f) => f.dbid).join(', ')} stays owed (SSM Run Command reaches no host in LocalStack)` : ''),
    );
  } catch (e) {
    print(`localstack:e2e: FAILED: ${(e as Error).message}`);
  } finally {
    await teardown();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return ok ? 0 : 1;
}

type Modules = Awaited<ReturnType<typeof loadModules>>;

/**
 * Makes a local cluster reachable from the Lambda containers: every instance also listens
 * on `net.address` and trusts `net.cidr` (written by writeInstanceConfig, as `local up`
 * writes the rest), restarted mirrors first, then primaries; returns once every instance
 * answers there and every mirror streams in sync again. Returns the catalog rows.
 */
export async function exposeToLambdas(cluster: LocalCluster, net: SegmentNetwork): Promise<SegmentRow[]> {
  const { writeInstanceConfig } = await import('../lambdas/adapters/local/postgres-binaries');
  const { waitForPort } = await import('../lambdas/adapters/local/net');
  const rows = (await cluster.catalog.load(cluster.state.clusterId)).segments;
  for (const row of rows) {
    await writeInstanceConfig(row.datadir, { port: row.port, dbid: row.dbid, content: row.content, listenAddresses: `127.0.0.1,${net.address}`, trustedNetworks: ['127.0.0.1/32', net.cidr] });
  }
  for (const row of [...rows.filter((r) => r.role === 'm'), ...rows.filter((r) => r.role === 'p')]) {
    await cluster.host.stop(row, 'fast');
    await cluster.host.start(row);
  }
  for (const row of rows) await waitForPort(row.port, 10_000, net.address);
  await waitInSync(cluster, rows);
  return rows;
}

/** The `ftsctl init --spec` document of a running cluster: every instance as it is, at `address`. */
export function initSpecFor(clusterId: string, rows: SegmentRow[], address: string, settings: object): Record<string, unknown> {
  const segments = rows.map((r) => ({
    dbid: r.dbid,
    content: r.content,
    role: r.role,
    preferredRole: r.preferredRole,
    mode: r.mode,
    status: r.status,
    port: r.port,
    hostname: r.hostname,
    address,
    datadir: r.datadir,
    ...(r.systemIdentifier !== undefined ? { systemIdentifier: r.systemIdentifier } : {}),
  }));
  return { clusterId, segments, settings };
}

/** Every mirror streaming in sync from its primary (after the restarts), or an error after 60 s. */
async function waitInSync(cluster: LocalCluster, rows: SegmentRow[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (const primary of rows.filter((r) => r.role === 'p')) {
    const mirror = rows.find((r) => r.content === primary.content && r.role === 'm');
    if (!mirror) continue;
    for (;;) {
      const r = await cluster.probe.probe(primary, { ...cluster.state.settings, probeRetries: 0 }, mirror);
      if (r.ok && !r.inRecovery && r.mirror.state === 'streaming' && r.mirror.syncState === 'sync') break;
      if (Date.now() > deadline) throw new Error(`mirror dbid ${mirror.dbid} is not streaming in sync from dbid ${primary.dbid} 60 s after the restart`);
      await sleep(200);
    }
  }
}

/** Follows the catalog and the PromoteMirror executions until the flip is seen and the latest execution ended (180 s at most). */
async function follow(o: {
  catalog: DynamoDbCatalog;
  sfn: SFNClient;
  m: Modules;
  promoteArn: string;
  mirror: SegmentRow;
  killedAt: number;
  log: (text: string) => void;
}): Promise<{ flippedAfterMs?: number; name?: string; status?: string }> {
  const seen = new Map<string, string>();
  let flippedAfterMs: number | undefined;
  let latest: { name?: string; status?: string } = {};
  while (Date.now() < o.killedAt + 180_000) {
    const snapshot = await o.catalog.load(CLUSTER_ID);
    if (flippedAfterMs === undefined && snapshot.segments.find((r) => r.dbid === o.mirror.dbid)?.role === 'p') {
      flippedAfterMs = Date.now() - o.killedAt;
      o.log(`catalog: dbid ${o.mirror.dbid} is the acting primary of content 0 (catalog version ${snapshot.version})`);
    }
    const { executions = [] } = await o.sfn.send(new o.m.sfn.ListExecutionsCommand({ stateMachineArn: o.promoteArn, maxResults: 20 }));
    for (const e of [...executions].reverse()) {
      if (!e.executionArn || seen.get(e.executionArn) === e.status) continue;
      seen.set(e.executionArn, e.status ?? '?');
      o.log(`PromoteMirror execution ${e.name}: ${e.status}`);
      if (e.status !== 'RUNNING' && e.status !== 'PENDING_REDRIVE') {
        const d = await o.sfn.send(new o.m.sfn.DescribeExecutionCommand({ executionArn: e.executionArn }));
        o.log(`  ${d.error ? `${d.error}: ${d.cause ?? ''}` : `output: ${(d.output ?? '').slice(0, 600)}`}`);
      }
    }
    const newest = [...executions].sort((a, b) => (b.startDate?.getTime() ?? 0) - (a.startDate?.getTime() ?? 0))[0];
    if (newest) latest = { name: newest.name, status: newest.status };
    if (flippedAfterMs !== undefined && latest.status && latest.status !== 'RUNNING' && latest.status !== 'PENDING_REDRIVE') break;
    await sleep(1000);
  }
  return { ...(flippedAfterMs !== undefined ? { flippedAfterMs } : {}), ...latest };
}

async function main(): Promise<number> {
  const endpoint = localstackEndpoint();
  const health = await detectLocalStack(endpoint);
  if (!health) {
    print(startLocalStackLine(endpoint));
    return 0;
  }
  return runE2e(endpoint, health);
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`localstack:e2e: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
