/**
 * ftsctl as a user runs it (a child process through tsx): local up with bad specs,
 * the whole lifecycle of a local cluster with its background prober, and local down
 * after the CLI itself was killed half-way through local up.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, readdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(240_000);

const root = mkdtempSync(join(tmpdir(), 'fts-cli-'));
chmodSync(root, 0o755); // PostgreSQL's OS user must reach the clusters
const env: NodeJS.ProcessEnv = { ...process.env, FTS_LOCAL_DIR: root };
delete env.FTS_CLUSTER_ID;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs ftsctl; `until` kills it with SIGKILL as soon as its output matches. */
function ftsctl(args: string[], until?: RegExp): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'ftsctl.ts'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (until?.test(stdout)) child.kill('SIGKILL');
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Live processes whose command line mentions `dir` (postmasters, DynamoDB Local, the prober). */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir) && !cmd.includes('jest')) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

afterAll(async () => {
  for (const id of ['cli-life', 'cli-crash', 'cli-bad']) await ftsctl(['local', 'down', '--cluster', id]);
  rmSync(root, { recursive: true, force: true });
});

describe('local up with a bad spec: a clear error, nothing left behind', () => {
  let busy: Server;
  let busyPort: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    busyPort = (busy.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => busy.close(() => r())));

  const cases: [string, () => string[], RegExp][] = [
    ['no hosts', () => ['--hosts', '0'], /--hosts must be a positive integer/],
    ['spread with too few hosts', () => ['--hosts', '2', '--primaries-per-host', '2', '--mirroring', 'spread'], /spread mirroring puts the mirrors of a host's 2 primaries on 2 other hosts, so it needs more than 2 hosts; got 2/],
    ['a port in use', () => ['--base-port', String(busyPort)], /port \d+ \(dbid 1, basePort \d+ \+ 0\) is in use/],
    ['an unknown option', () => ['--bogus'], /unknown option '--bogus'/],
    ['an unknown mirroring type', () => ['--mirroring', 'ring'], /Allowed choices are group, spread, none/],
    ['an unknown key in a spec file', () => {
      const file = join(root, 'spec.json');
      writeFileSync(file, JSON.stringify({ hosts: 2, mirrorring: 'group' }));
      return ['--spec', file];
    }, /unknown option\(s\) mirrorring/],
    ['a bad setting', () => ['--setting', 'probeTimeoutSeconds=0'], /probeTimeoutSeconds must be at least 0.5/],
    ['a directory PostgreSQL cannot reach', () => {
      const hidden = join(root, 'hidden');
      mkdirSync(hidden, { mode: 0o700, recursive: true }); // owned by root
      return ['--dir', join(hidden, 'cli-bad')];
    }, /cannot reach .* is not searchable by others/],
  ];
  test.each(cases)('%s', async (_name, args, message) => {
    const run = await ftsctl(['local', 'up', '--cluster', 'cli-bad', ...args()]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(message);
    expect(existsSync(join(root, 'cli-bad'))).toBe(false);
    expect(processesUnder(join(root, 'cli-bad'))).toEqual([]);
  });
});

test('lifecycle: up, state, kill a primary, the background prober fails it over, history, down', async () => {
  const up = await ftsctl(['local', 'up', '--cluster', 'cli-life', '--no-standby']);
  expect(up.stderr).toBe('');
  expect(up.code).toBe(0);
  expect(up.stdout).toMatch(/Cluster cli-life is up/);
  expect(up.stdout).toMatch(/postgresql:\/\/postgres@127\.0\.0\.1:\d+\/postgres/);

  const state = await ftsctl(['state', '--cluster', 'cli-life', '--json']);
  const parsed = JSON.parse(state.stdout) as { status: string; segments: Record<string, unknown>[] };
  expect(parsed.status).toBe('up');
  expect(parsed.segments).toHaveLength(5);
  for (const row of parsed.segments) {
    expect(Object.keys(row)).toEqual(expect.arrayContaining(['dbid', 'content', 'role', 'preferredRole', 'mode', 'status', 'port', 'hostname', 'address', 'datadir']));
  }
  const text = await ftsctl(['state', '--cluster', 'cli-life']);
  expect(text.stdout).toMatch(/Cluster cli-life: UP/);
  expect(text.stdout).toMatch(/Coordinator/);

  const kill = await ftsctl(['local', 'kill', '--cluster', 'cli-life', '--dbid', '2']);
  expect(kill.stdout).toMatch(/dbid 2 .*killed/);
  await waitFor('the background prober to fail content 0 over', async () => {
    const s = JSON.parse((await ftsctl(['state', '--cluster', 'cli-life', '--json'])).stdout) as { segments: { dbid: number; role: string }[] };
    return s.segments.find((r) => r.dbid === 4)?.role === 'p' ? true : undefined;
  }, 60_000, 500);
  const history = JSON.parse((await ftsctl(['history', '--cluster', 'cli-life', '--json'])).stdout) as { dbid: number; description: string }[];
  expect(history.some((h) => h.dbid === 4 && /to p, u, and n/.test(h.description))).toBe(true);
  expect((await ftsctl(['local', 'kill', '--cluster', 'cli-life', '--host', 'nohost'])).stderr).toMatch(/no host nohost in cluster cli-life; known: cdw, sdw1, sdw2/);

  const down = await ftsctl(['local', 'down', '--cluster', 'cli-life']);
  expect(down.code).toBe(0);
  expect(existsSync(join(root, 'cli-life'))).toBe(false);
  expect(processesUnder(join(root, 'cli-life'))).toEqual([]);
});

test('local down after the CLI was killed half-way through local up', async () => {
  const up = await ftsctl(['local', 'up', '--cluster', 'cli-crash'], /creating \d+ mirrors/);
  expect(up.code).toBeNull(); // killed
  expect(processesUnder(join(root, 'cli-crash')).length).toBeGreaterThan(0);
  const down = await ftsctl(['local', 'down', '--cluster', 'cli-crash']);
  expect(down.code).toBe(0);
  await waitFor('nothing running', async () => (processesUnder(join(root, 'cli-crash')).length === 0 ? true : undefined), 10_000);
  expect(existsSync(join(root, 'cli-crash'))).toBe(false);
});
