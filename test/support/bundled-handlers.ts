/**
 * The FTS Lambda code as it ships: synthesizes the FtsStack WITH bundling (esbuild
 * installed in node_modules, never Docker) into a temporary cloud assembly, and reads
 * back what CloudFormation would deploy: each function's bundled index.js (found through
 * the template's S3Key and the asset manifest), its environment, and each workflow's
 * definition with its intrinsics resolved (native SDK tasks, such as ActivateStandby's
 * StopCoordinatorInstance, keep their `arn:aws:states:::aws-sdk:...` Resource). Quiet: CDK's and npm's messages are held back
 * and only shown when synthesis fails. Also a DynamoDB pass-through that lets a test
 * write to the catalog just before the bundled code's next transaction (a concurrent writer).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnElement } from 'aws-cdk-lib';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { FtsStack, ftsStackPropsFromContext } from '../../lib/fts-stack';
import { EXAMPLE_FTS_CONTEXT, resolveIntrinsics } from '../../lib/local-definition';
import { CATALOG_TABLE_ENV, DEFAULT_CATALOG_TABLE_NAMES } from '../../lambdas/adapters/dynamodb/tables';
import { CLIENT_ENDPOINT_ENV } from '../../lambdas/adapters/aws/client-endpoint';

const REPO_ROOT = join(__dirname, '..', '..');
const STACK_NAME = 'Fts-example';

/** The FTS functions: the prober's and each workflow's. */
export type FtsFunctionName = 'promoteMirror' | 'prober' | 'recoverSegments' | 'rebalance' | 'activateStandby' | 'initStandby';

interface CfnResourceJson {
  Type: string;
  Properties?: Record<string, unknown>;
}

/** A synthesized, bundled FtsStack in a temporary directory; `remove()` deletes it. */
export interface BundledStack {
  /** The cloud assembly directory. */
  outdir: string;
  /** Path of a function's bundled index.js. */
  bundlePath(fn: FtsFunctionName): string;
  /** The environment variables the template gives a function (values as synthesized: strings or intrinsics). */
  environment(fn: FtsFunctionName): Record<string, unknown>;
  /** The PromoteMirror definition from the template, intrinsics resolved (as lib/local-definition.ts does). */
  promoteMirrorDefinition(): { StartAt: string; States: Record<string, Record<string, unknown>> };
  /** A workflow's definition from the template, intrinsics resolved. */
  definition(fn: Exclude<FtsFunctionName, 'prober'>): { StartAt: string; States: Record<string, Record<string, unknown>> };
  remove(): void;
}

/**
 * Synthesizes the stack with bundling, as `cdk synth` does. Throws (with the held-back
 * output) when esbuild is not installed locally: CDK would fall back to Docker.
 */
export function synthesizeBundledStack(): BundledStack {
  if (!existsSync(join(REPO_ROOT, 'node_modules', '.bin', 'esbuild'))) {
    throw new Error('esbuild is not installed in node_modules: NodejsFunction would bundle with Docker; run npm ci');
  }
  const outdir = mkdtempSync(join(tmpdir(), 'fts-bundled-'));
  try {
    const { stack, assembly } = quietly(() => {
      // The default context bundles every stack ('aws:cdk:bundling-stacks': ['**']).
      const app = new App({ outdir, context: { ...EXAMPLE_FTS_CONTEXT } });
      const s = new FtsStack(app, STACK_NAME, ftsStackPropsFromContext((key) => app.node.tryGetContext(key)));
      return { stack: s, assembly: app.synth() };
    });
    const artifact = assembly.getStackArtifact(stack.artifactId);
    const resources = (artifact.template as { Resources: Record<string, CfnResourceJson> }).Resources;
    const manifest = artifact.dependencies.find((d): d is cxapi.AssetManifestArtifact => d instanceof cxapi.AssetManifestArtifact);
    if (!manifest) throw new Error(`no asset manifest for ${STACK_NAME} in ${outdir}`);
    const files = (JSON.parse(readFileSync(manifest.file, 'utf8')) as { files: Record<string, { source: { path: string; packaging?: string } }> }).files;

    const constructs: Record<Exclude<FtsFunctionName, 'prober'>, FtsStack['promoteMirror']> = {
      promoteMirror: stack.promoteMirror,
      recoverSegments: stack.recoverSegments,
      rebalance: stack.rebalance,
      activateStandby: stack.activateStandby,
      initStandby: stack.initStandby,
    };
    const functionResource = (fn: FtsFunctionName): CfnResourceJson => {
      const construct = fn === 'prober' ? stack.prober.function : constructs[fn].function;
      const logicalId = stack.resolve((construct.node.defaultChild as CfnElement).logicalId) as string;
      const resource = resources[logicalId];
      if (resource?.Type !== 'AWS::Lambda::Function') throw new Error(`no AWS::Lambda::Function ${logicalId} in the template`);
      return resource;
    };
    return {
      outdir,
      bundlePath(fn) {
        // The code CloudFormation deploys: the asset whose zip the template names.
        const s3Key = (functionResource(fn).Properties?.Code as { S3Key?: unknown } | undefined)?.S3Key;
        if (typeof s3Key !== 'string' || !s3Key.endsWith('.zip')) throw new Error(`the ${fn} function's Code has no asset S3Key: ${JSON.stringify(s3Key)}`);
        const asset = files[s3Key.slice(0, -'.zip'.length)];
        if (!asset) throw new Error(`asset ${s3Key} of the ${fn} function is not in the asset manifest`);
        const index = join(outdir, asset.source.path, 'index.js');
        if (!existsSync(index)) throw new Error(`the ${fn} function's asset has no index.js (${index})`);
        return index;
      },
      environment(fn) {
        return { ...((functionResource(fn).Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {}) };
      },
      definition(fn) {
        const logicalId = stack.resolve((constructs[fn].stateMachine.node.defaultChild as CfnElement).logicalId) as string;
        const machine = resources[logicalId];
        if (machine?.Type !== 'AWS::StepFunctions::StateMachine') throw new Error(`no AWS::StepFunctions::StateMachine ${logicalId} in the template`);
        const types = new Map(Object.entries(resources).map(([id, r]) => [id, r.Type]));
        const definitionString = resolveIntrinsics(machine.Properties?.DefinitionString, types);
        if (typeof definitionString !== 'string') throw new Error('DefinitionString did not resolve to a string');
        return JSON.parse(definitionString) as ReturnType<BundledStack['promoteMirrorDefinition']>;
      },
      promoteMirrorDefinition() {
        return this.definition('promoteMirror');
      },
      remove() {
        rmSync(outdir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(outdir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The environment a bundled function runs with locally: the template's variables, with
 * what only AWS has replaced by the local equivalent. Catalog tables: the local names;
 * the secret: trust authentication as `pgUser`; the cluster: `clusterId`. References to
 * resources with no local stand-in (the SNS topic, the state machines the prober starts)
 * are left out, and so is an AWS client endpoint (FTS_ENDPOINT_*: an IP address or a
 * record EC2 or Route 53 moves; the bundled ActivateStandby then moves nothing and checks
 * the write at the new coordinator itself); any other unresolved value is an error, so a
 * new variable is noticed here.
 */
export function localFunctionEnvironment(variables: Record<string, unknown>, clusterId: string, pgUser = 'postgres'): Record<string, string> {
  const tableNames: Record<string, string> = Object.fromEntries(
    (Object.keys(CATALOG_TABLE_ENV) as (keyof typeof CATALOG_TABLE_ENV)[]).map((k) => [CATALOG_TABLE_ENV[k], DEFAULT_CATALOG_TABLE_NAMES[k]]),
  );
  const withoutLocalStandIn = new Set<string>([
    'FTS_NOTIFY_TOPIC_ARN',
    'FTS_PROMOTE_STATE_MACHINE_ARN',
    'FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN',
    'FTS_PG_SECRET_ARN',
    ...Object.values(CLIENT_ENDPOINT_ENV),
  ]);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(variables)) {
    if (key in tableNames) env[key] = tableNames[key];
    else if (withoutLocalStandIn.has(key) || key === 'NODE_OPTIONS') continue; // NODE_OPTIONS: this process is already running
    else if (typeof value === 'string') env[key] = value;
    else throw new Error(`environment variable ${key} of the function is ${JSON.stringify(value)}: no local value for it`);
  }
  for (const key of Object.keys(tableNames)) if (!(key in env)) throw new Error(`the function's environment lacks ${key}`);
  return {
    ...env,
    FTS_CLUSTER_ID: clusterId,
    FTS_PG_USER: pgUser,
    // Powertools writes straight to stdout: tests stay quiet.
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
  };
}

/**
 * Runs `fn` with CDK's "Bundling asset ..." lines held back, npm's warnings off for the
 * esbuild it runs through npx, and Docker made unusable (CDK_DOCKER=false), so a
 * fallback to Docker bundling fails instead of pulling images. Shows what was held back
 * when `fn` throws.
 */
function quietly<T>(fn: () => T): T {
  const held: string[] = [];
  const write = process.stderr.write;
  const saved = { npm_config_loglevel: process.env.npm_config_loglevel, CDK_DOCKER: process.env.CDK_DOCKER };
  process.stderr.write = ((chunk: string | Uint8Array) => {
    held.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return true;
  }) as typeof process.stderr.write;
  process.env.npm_config_loglevel = 'error';
  process.env.CDK_DOCKER = 'false';
  try {
    return fn();
  } catch (e) {
    if (e instanceof Error) e.message += held.length ? `\n--- output of the synthesis ---\n${held.join('')}` : '';
    throw e;
  } finally {
    process.stderr.write = write;
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** A pass-through to DynamoDB (Local) for the bundled code, see {@link interceptDynamoDb}. */
export interface DynamoDbInterceptor {
  /** Endpoint to give the bundled code (AWS_ENDPOINT_URL_DYNAMODB). */
  endpoint: string;
  /**
   * Runs `hook` when the next TransactWriteItems request arrives, before forwarding it:
   * the request then meets what the hook wrote. Resolves once the hook has run; rejects
   * with its error (the request is then answered with a 500).
   */
  beforeNextTransaction(hook: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/** Starts an HTTP pass-through on a free loopback port to the DynamoDB endpoint `target`. */
export async function interceptDynamoDb(target: string): Promise<DynamoDbInterceptor> {
  const upstream = new URL(target);
  let armed: { hook: () => Promise<void>; done: (error?: unknown) => void } | undefined;
  const forward = (method: string | undefined, path: string | undefined, headers: IncomingHttpHeaders, body: Buffer, res: ServerResponse) => {
    const req = request({ hostname: upstream.hostname, port: upstream.port, method, path, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    req.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.end(body);
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const current = req.headers['x-amz-target'] === 'DynamoDB_20120810.TransactWriteItems' ? armed : undefined;
      if (!current) return forward(req.method, req.url, req.headers, body, res);
      armed = undefined;
      current.hook().then(
        () => {
          current.done();
          forward(req.method, req.url, req.headers, body, res);
        },
        (e: unknown) => {
          current.done(e);
          res.writeHead(500);
          res.end(String(e));
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    beforeNextTransaction(hook) {
      if (armed) throw new Error('a hook is already waiting for the next transaction');
      return new Promise<void>((resolve, reject) => {
        armed = { hook, done: (error) => (error === undefined ? resolve() : reject(error)) };
      });
    },
    async close() {
      armed = undefined;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
