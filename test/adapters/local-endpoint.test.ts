/**
 * The local client endpoint over real TCP on loopback: LocalEndpointForwarder forwards to
 * small echo servers (stand-ins for coordinators), and LocalClientEndpoint moves it
 * through the control file. Every server, socket and forwarder a test starts is stopped
 * in afterEach, also when the test fails; no test sleeps on a fixed timer.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SegmentRow } from '../../lambdas/core/model';
import {
  ENDPOINT_CONTROL_FILE,
  EndpointNotAcknowledgedError,
  LocalClientEndpoint,
  LocalEndpointForwarder,
  readEndpointApplied,
  type LocalEndpointForwarderOptions,
} from '../../lambdas/adapters/local/endpoint';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(20_000); // everything here takes milliseconds: a hang fails fast

const HOST = '127.0.0.1';

let dir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];
const forwarders: LocalEndpointForwarder[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fts-endpoint-'));
});

afterEach(async () => {
  await Promise.all(forwarders.splice(0).map((f) => f.stop()));
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  await rm(dir, { recursive: true, force: true });
});

/** A coordinator stand-in: answers each chunk with `<name>:<chunk>`, and `<name>:bye` before it ends its side. */
interface Echo {
  port: number;
  /** Connections it holds open now. */
  open: Set<Socket>;
  close(): Promise<void>;
}

async function echo(name: string): Promise<Echo> {
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(`${name}:${d.toString()}`));
    s.on('end', () => s.end(`${name}:bye`));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, HOST, r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    open,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port nothing listens on (a server bound to it, closed again). */
async function deadPort(): Promise<number> {
  const e = await echo('dead');
  await e.close();
  return e.port;
}

const row = (port: number, dbid = 1): SegmentRow => ({
  dbid,
  content: -1,
  role: 'p',
  preferredRole: 'p',
  mode: 'n',
  status: 'u',
  port,
  hostname: 'cdw',
  address: HOST,
  datadir: '/nowhere',
});

async function forwarder(options: Partial<LocalEndpointForwarderOptions> = {}): Promise<LocalEndpointForwarder> {
  const f = new LocalEndpointForwarder({ dir, ...options });
  forwarders.push(f);
  await f.start();
  return f;
}

/** A client of the forwarder collecting what it receives. */
interface Client {
  socket: Socket;
  received: () => string;
  /** Resolves when the socket closed (either side). */
  closed: Promise<void>;
  /** Resolves when the other side ended its writing. */
  ended: Promise<void>;
}

function client(port: number): Client {
  const socket = connect({ host: HOST, port }); // as a PostgreSQL client: it closes when the other side ends
  sockets.push(socket);
  let data = '';
  socket.on('data', (d) => (data += d.toString()));
  socket.on('error', () => undefined); // a reset by a closing forwarder is expected
  return {
    socket,
    received: () => data,
    closed: new Promise((r) => socket.once('close', () => r())),
    ended: new Promise((r) => socket.once('end', () => r())),
  };
}

const until = (what: string, check: () => boolean): Promise<true> => waitFor(what, async () => (check() ? true : undefined), 10_000, 10);

describe('LocalEndpointForwarder', () => {
  test('forwards a connection to the target and passes a half-close both ways', async () => {
    const a = await echo('A');
    await new LocalClientEndpoint(dir).configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const f = await forwarder();

    const c = client(f.listen.port);
    c.socket.write('ping');
    await until('the echo', () => c.received() === 'A:ping');
    c.socket.end(); // half-close: the target still answers after it
    await c.ended;
    expect(c.received()).toBe('A:pingA:bye');
    await c.closed;
    await until('the forwarder to drop the connection', () => f.openConnections === 0 && a.open.size === 0);
  });

  test('a target change closes the connections to the old target; new ones reach the new target', async () => {
    const [a, b] = [await echo('A'), await echo('B')];
    const endpoint = new LocalClientEndpoint(dir);
    await endpoint.configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const f = await forwarder();
    const old = [client(f.listen.port), client(f.listen.port)];
    for (const c of old) c.socket.write('x');
    await until('both connections through', () => old.every((c) => c.received() === 'A:x'));
    expect(a.open.size).toBe(2);

    await endpoint.moveTo(row(b.port));

    await Promise.all(old.map((c) => c.closed)); // not left hanging on the old coordinator
    await until('the old target to lose its connections', () => a.open.size === 0);
    const fresh = client(f.listen.port);
    fresh.socket.write('y');
    await until('the new target', () => fresh.received() === 'B:y');
    expect(f.currentTarget).toEqual({ address: HOST, port: b.port });
  });

  test('moving to where it points already keeps the open connections', async () => {
    const a = await echo('A');
    const endpoint = new LocalClientEndpoint(dir);
    await endpoint.configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const f = await forwarder();
    const c = client(f.listen.port);
    c.socket.write('1');
    await until('the echo', () => c.received() === 'A:1');

    await endpoint.moveTo(row(a.port));

    c.socket.write('2');
    await until('the same connection still answering', () => c.received() === 'A:1A:2');
    expect(f.openConnections).toBe(1);
  });

  test('with no target, or a target that refuses, a new connection is closed at once', async () => {
    await new LocalClientEndpoint(dir).configure({ listen: { address: HOST, port: 0 }, target: null });
    const f = await forwarder();
    const none = client(f.listen.port);
    await none.closed;
    expect(none.received()).toBe('');

    await new LocalClientEndpoint(dir).moveTo(row(await deadPort()));
    const refused = client(f.listen.port);
    await refused.closed;
    expect(refused.received()).toBe('');
    await until('no connection left', () => f.openConnections === 0);
  });

  test('a malformed control file is reported once and changes nothing', async () => {
    const a = await echo('A');
    const errors: Error[] = [];
    await new LocalClientEndpoint(dir).configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const f = await forwarder({ onError: (e) => errors.push(e), pollMs: 5 });
    await writeFile(join(dir, ENDPOINT_CONTROL_FILE), '{"target": {"address": "127.0.0.1", "port": "five"}}');
    await until('the error', () => errors.length > 0);
    expect(errors[0].message).toMatch(/endpoint\.json is malformed: target\.port/);
    const c = client(f.listen.port);
    c.socket.write('still');
    await until('the old target', () => c.received() === 'A:still');
    expect(errors).toHaveLength(1);
  });

  test('stop() closes the listener and every connection and leaves no handle behind', async () => {
    const count = (): Record<string, number> => {
      const counts: Record<string, number> = {};
      for (const r of process.getActiveResourcesInfo()) if (/^(TCP|Timeout)/.test(r)) counts[r] = (counts[r] ?? 0) + 1;
      return counts;
    };
    const a = await echo('A');
    await new LocalClientEndpoint(dir).configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const before = count();
    const f = new LocalEndpointForwarder({ dir });
    await f.start();
    const { port } = f.listen;
    const c = client(port);
    c.socket.write('x');
    await until('the echo', () => c.received() === 'A:x');

    await f.stop();
    await c.closed;
    sockets.splice(sockets.indexOf(c.socket), 1);
    await until('every handle gone', () => JSON.stringify(count()) === JSON.stringify(before) && a.open.size === 0);
    const after = client(port);
    await after.closed;
    expect(after.received()).toBe('');
    await f.stop(); // twice is fine
  });

  test('listens on the control file port; a port in use rejects start and leaves nothing running', async () => {
    const busy = await echo('busy');
    await new LocalClientEndpoint(dir).configure({ listen: { address: HOST, port: busy.port }, target: null });
    const f = new LocalEndpointForwarder({ dir });
    await expect(f.start()).rejects.toThrow(/EADDRINUSE/);
    await f.stop();
  });
});

describe('LocalClientEndpoint', () => {
  test('moveTo returns once the forwarder applied the move', async () => {
    const [a, b] = [await echo('A'), await echo('B')];
    const endpoint = new LocalClientEndpoint(dir, { pollMs: 5 });
    await endpoint.configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const f = await forwarder({ pollMs: 200 }); // slower than the endpoint looks: moveTo must wait

    let seenAtReturn: unknown;
    await endpoint.moveTo(row(b.port)).then(() => (seenAtReturn = f.currentTarget));

    expect(seenAtReturn).toEqual({ address: HOST, port: b.port });
    const applied = await readEndpointApplied(dir);
    expect(applied).toMatchObject({ pid: process.pid, target: { address: HOST, port: b.port }, revision: 2, listen: f.listen });
  });

  test('describe: kind local, where it listens and where it leads', async () => {
    const a = await echo('A');
    const endpoint = new LocalClientEndpoint(dir);
    await expect(endpoint.describe()).rejects.toThrow(/no client endpoint in/);
    await endpoint.configure({ listen: { address: HOST, port: 0 }, target: { address: HOST, port: a.port } });
    const f = await forwarder();
    expect(await endpoint.describe()).toEqual({ kind: 'local', address: HOST, port: f.listen.port, target: { address: HOST, port: a.port } });
  });

  test('without a forwarder, moveTo fails clearly after its timeout; a stale acknowledgement does not count', async () => {
    const a = await echo('A');
    const endpoint = new LocalClientEndpoint(dir, { ackTimeoutMs: 200, pollMs: 10 });
    await endpoint.configure({ listen: { address: HOST, port: 0 }, target: null });
    await expect(endpoint.moveTo(row(a.port))).rejects.toThrow(new RegExp(`no endpoint forwarder applied the move to 127\\.0\\.0\\.1:${a.port} in .* within 200 ms; is the cluster's endpoint forwarder running`));

    const f = await forwarder();
    await f.stop(); // its acknowledgement stays behind
    const error = await endpoint.moveTo(row(a.port)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EndpointNotAcknowledgedError);
    expect((error as Error).message).toMatch(/the last acknowledgement, revision \d+, came from pid \d+/);
  });

  test('a row without a usable port is refused before anything is written', async () => {
    const endpoint = new LocalClientEndpoint(dir, { ackTimeoutMs: 100 });
    await expect(endpoint.moveTo(row(0, 7))).rejects.toThrow(/dbid 7 has no valid port/);
    await expect(endpoint.describe()).rejects.toThrow(/no client endpoint/);
  });
});
