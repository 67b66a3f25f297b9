/**
 * The client endpoint of a local cluster with real PostgreSQL: `upLocalCluster` points it
 * at the coordinator, in-process (the test fixture) or as the background daemon (the
 * CLI); moving it to the standby closes the sessions on the coordinator and new ones
 * reach the standby; `downLocalCluster` stops the daemon.
 */
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { COORDINATOR_CONTENT } from '../../lambdas/core/model';
import { downLocalCluster, localClusterRuns, localEndpoint, openLocalCluster, upLocalCluster, type LocalCluster } from '../../cli/local-cluster';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';

jest.setTimeout(180_000);

let fixture: TestCluster | undefined;
let background: LocalCluster | undefined;
const clients: Client[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
  await fixture?.destroy();
  fixture = undefined;
  if (background) await downLocalCluster(background.state.dir);
  background = undefined;
});

/** A session through the endpoint; errors after the endpoint closes it are expected. */
async function session(port: number): Promise<Client> {
  const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  clients.push(client);
  await client.connect();
  return client;
}
const portOf = async (c: Client): Promise<number> => Number((await c.query<{ port: string }>("SELECT current_setting('port') AS port")).rows[0].port);

test('in-process (the fixture): leads to the coordinator; moved to the standby, old sessions end and new ones reach it', async () => {
  fixture = await testCluster('endpoint', { hosts: 1, mirroring: 'none', coordinator: true, standby: true });
  const coordinator = fixture.state.rows.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'p')!;
  const standby = fixture.state.rows.find((r) => r.content === COORDINATOR_CONTENT && r.role === 'm')!;
  expect(fixture.endpoint).toBeDefined();
  const { port } = fixture.state.endpoint!;
  expect(await fixture.endpoint!.describe()).toEqual({ kind: 'local', address: '127.0.0.1', port, target: { address: '127.0.0.1', port: coordinator.port } });
  expect(fixture.state.endpointPid).toBeUndefined(); // no daemon: the forwarder runs in this process

  const old = await session(port);
  expect(await portOf(old)).toBe(coordinator.port);
  const ended = new Promise<void>((r) => old.once('end', () => r()));

  await fixture.endpoint!.moveTo(standby);

  await ended; // the session on the old coordinator does not linger
  const fresh = await session(port);
  expect(await portOf(fresh)).toBe(standby.port);
  expect((await fresh.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true);
  expect(await localEndpoint(fixture.state.dir).describe()).toMatchObject({ target: { port: standby.port } });
});

test('background (the CLI default): a daemon recorded in the state file, stopped by down', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fts-endpoint-daemon-'));
  background = await upLocalCluster(
    { clusterId: `endpoint-bg-${process.pid}`, hosts: 1, mirroring: 'none', coordinator: true, standby: false },
    { dir, dynamoEndpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB },
  );
  const { state } = background;
  const coordinator = state.rows.find((r) => r.content === COORDINATOR_CONTENT)!;
  expect(state.endpointPid).toBeGreaterThan(0);
  const reopened = openLocalCluster(dir);
  expect(reopened.state.endpoint).toEqual(state.endpoint);
  expect(await reopened.endpoint!.describe()).toMatchObject({ kind: 'local', port: state.endpoint!.port, target: { port: coordinator.port } });
  expect(await portOf(await session(state.endpoint!.port))).toBe(coordinator.port);
  await reopened.endpoint!.moveTo(coordinator); // idempotent, and acknowledged by the daemon

  await downLocalCluster(dir);
  background = undefined;
  expect(localClusterRuns(dir)).toBe(false);
  expect(() => process.kill(state.endpointPid!, 0)).toThrow();
});

test('endpointPort: in use, or without a coordinator, a clear error before anything starts', async () => {
  const never = join(tmpdir(), `fts-endpoint-never-${process.pid}`);
  await expect(upLocalCluster({ hosts: 1, mirroring: 'none', coordinator: false, standby: false, endpointPort: 20000 }, { dir: never })).rejects.toThrow(
    /endpointPort: the client endpoint leads to the coordinator/,
  );
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  try {
    const port = (busy.address() as AddressInfo).port;
    await expect(upLocalCluster({ hosts: 1, mirroring: 'none', standby: false, endpointPort: port }, { dir: never })).rejects.toThrow(
      new RegExp(`endpointPort ${port} is in use; pick another endpointPort or leave it out`),
    );
  } finally {
    await new Promise<void>((r) => busy.close(() => r()));
  }
  expect(existsSync(never)).toBe(false);
});
