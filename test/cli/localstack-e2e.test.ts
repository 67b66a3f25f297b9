/**
 * `npm run localstack:e2e` with no LocalStack to talk to (the script as a user runs it,
 * through tsx): one line saying what to start, exit 0, nothing else run. The run against
 * a real LocalStack is not part of `npm test` (docs/localstack.md).
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../../lambdas/adapters/local/net';

const SCRIPT = join(__dirname, '..', '..', 'bin', 'localstack-e2e.ts');

function runScript(endpoint: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [require.resolve('tsx/cli'), SCRIPT], { env: { ...process.env, AWS_ENDPOINT_URL: endpoint }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function expectStartLine(r: { code: number | null; stdout: string; stderr: string }, endpoint: string): void {
  expect(r.code).toBe(0);
  expect(r.stderr).toBe('');
  const lines = r.stdout.split('\n').filter((l) => l.trim());
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(`no LocalStack answers at ${endpoint}/_localstack/health`);
  expect(lines[0]).toContain('docker run');
  expect(lines[0]).toContain('-v /var/run/docker.sock:/var/run/docker.sock');
  expect(lines[0]).toContain('LAMBDA_IGNORE_ARCHITECTURE=1');
  expect(lines[0]).toContain('localstack/localstack:4.14.0');
  expect(lines[0]).toContain('LOCALSTACK_AUTH_TOKEN');
}

test('a closed port: one line naming the image to start, exit 0', async () => {
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  expectStartLine(await runScript(endpoint), endpoint);
});

test('something that is not LocalStack answers: the same line, exit 0', async () => {
  const server = createServer((_req, res) => res.writeHead(404).end('not here'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    expectStartLine(await runScript(endpoint), endpoint);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

describe('the pieces the run relies on', () => {
  test('LocalStack health is recognized by its services map', async () => {
    const { detectLocalStack } = await import('../../bin/localstack-e2e');
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ services: { lambda: 'available', dynamodb: 'running' }, edition: 'community', version: '4.14.0' })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const health = await detectLocalStack(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      expect(health).toEqual({ services: { lambda: 'available', dynamodb: 'running' }, edition: 'community', version: '4.14.0' });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('the segments listen on this machine on the Docker network; pg_hba trusts that network', async () => {
    const { segmentNetwork } = await import('../../bin/localstack-e2e');
    const interfaces = {
      lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
      docker0: [{ address: '172.17.0.1', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:00:00:00:00', internal: false, cidr: '172.17.0.1/16' }],
      'br-1a2b': [{ address: '172.18.0.1', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:00:00:00:01', internal: false, cidr: '172.18.0.1/16' }],
    } as unknown as ReturnType<typeof import('node:os').networkInterfaces>;
    expect(segmentNetwork({}, interfaces)).toEqual({ address: '172.17.0.1', cidr: '172.17.0.0/16' });
    expect(segmentNetwork({ FTS_E2E_SEGMENT_ADDRESS: '172.18.0.1' }, interfaces)).toEqual({ address: '172.18.0.1', cidr: '172.18.0.0/16' });
    expect(segmentNetwork({ FTS_E2E_SEGMENT_ADDRESS: '172.18.0.1', FTS_E2E_LAMBDA_CIDR: '172.18.5.0/24' }, interfaces)).toEqual({ address: '172.18.0.1', cidr: '172.18.5.0/24' });
    expect(() => segmentNetwork({ FTS_E2E_SEGMENT_ADDRESS: '10.9.9.9' }, interfaces)).toThrow(/not an IPv4 address of this machine/);
    expect(() => segmentNetwork({}, { lo: interfaces.lo })).toThrow(/no docker0 interface/);
  });
});
