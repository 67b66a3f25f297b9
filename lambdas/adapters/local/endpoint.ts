/**
 * The client endpoint of a local cluster: a TCP forwarder on a stable loopback port that
 * leads to the acting coordinator, and the ClientEndpoint that moves it.
 *
 * The two meet in two small JSON files in the cluster directory, so the forwarder can
 * run in its own process (`cli/endpoint-daemon.ts`) and outlive the CLI that started it:
 *
 * - `endpoint.json`, written by {@link LocalClientEndpoint}, read by the forwarder:
 *   `{ "listen": {address, port}, "target": {address, port} | null, "revision": n }`;
 * - `endpoint.applied.json`, written by the forwarder once it applies a control file:
 *   `{ "pid", "listen", "target", "revision", "appliedAt" }`.
 *
 * Both are replaced atomically (a temporary file, then rename), so a reader never sees
 * half a file. `moveTo` raises the revision and waits for the forwarder to report that
 * revision (or a later one) applied: a stale report of a forwarder that died never counts.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { FtsError, ValidationError } from '../../core/errors';
import type { SegmentRow } from '../../core/model';
import type { ClientEndpoint, EndpointDescription } from '../../ports/endpoint';

/** The control file, in the cluster directory. */
export const ENDPOINT_CONTROL_FILE = 'endpoint.json';
/** The forwarder's acknowledgement, in the cluster directory. */
export const ENDPOINT_APPLIED_FILE = 'endpoint.applied.json';
/** How often the forwarder looks at the control file, and `moveTo` at the acknowledgement, by default. */
export const DEFAULT_ENDPOINT_POLL_MS = 50;
/** How long `moveTo` waits for the forwarder's acknowledgement by default. */
export const DEFAULT_ENDPOINT_ACK_TIMEOUT_MS = 5000;
/** The only address the forwarder binds by default: local mode stays on loopback. */
export const DEFAULT_ENDPOINT_ADDRESS = '127.0.0.1';

const hostPort = z.object({ address: z.string().min(1), port: z.number().int().min(1).max(65535) });
const controlSchema = z.object({
  /** Port 0: the forwarder picks one (and reports it in the acknowledgement). */
  listen: z.object({ address: z.string().min(1), port: z.number().int().min(0).max(65535) }).optional(),
  target: hostPort.nullable().default(null),
  revision: z.number().int().min(0).default(0),
});
const appliedSchema = z.object({
  pid: z.number().int(),
  listen: hostPort,
  target: hostPort.nullable(),
  revision: z.number().int(),
  appliedAt: z.string(),
});

/** An address and port. */
export type HostPort = z.output<typeof hostPort>;
/** What `endpoint.json` holds. */
export type EndpointControl = z.output<typeof controlSchema>;
/** What `endpoint.applied.json` holds. */
export type EndpointApplied = z.output<typeof appliedSchema>;

/** The forwarder did not acknowledge a move in time: none runs for the cluster, or it is stuck. */
export class EndpointNotAcknowledgedError extends FtsError {}

const controlPath = (dir: string): string => join(dir, ENDPOINT_CONTROL_FILE);
const appliedPath = (dir: string): string => join(dir, ENDPOINT_APPLIED_FILE);
const sameTarget = (a: HostPort | null, b: HostPort | null): boolean => a === b || (!!a && !!b && a.address === b.address && a.port === b.port);
const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT';

let tmpCounter = 0;
/** Replaces `file` atomically: readers see the old or the new content, never a part. */
async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`; // unique: concurrent writers never share one
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, file);
}

async function readJson<T>(file: string, schema: z.ZodType<T>): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new ValidationError(`${file} is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** The control file of the cluster in `dir`; undefined when there is none. */
export function readEndpointControl(dir: string): Promise<EndpointControl | undefined> {
  return readJson(controlPath(dir), controlSchema);
}

/** The forwarder's last acknowledgement in `dir`; undefined when none was written. */
export function readEndpointApplied(dir: string): Promise<EndpointApplied | undefined> {
  return readJson(appliedPath(dir), appliedSchema);
}

/** Options of {@link LocalEndpointForwarder}. */
export interface LocalEndpointForwarderOptions {
  /** Cluster directory holding `endpoint.json`. */
  dir: string;
  /** Port to listen on; default the control file's `listen.port`, else 0 (the system picks). */
  port?: number;
  /** Address to listen on; default the control file's `listen.address`, else 127.0.0.1. */
  address?: string;
  /** How often to look at the control file's mtime; default 50 ms. */
  pollMs?: number;
  /** Problems that do not stop the forwarder (an unreadable control file, an unwritable acknowledgement). Default: ignored. */
  onError?: (error: Error) => void;
  /** Each applied control file: the target now, and how many connections to the old target were closed. */
  onApply?: (applied: EndpointApplied, closed: number) => void;
}

interface Connection {
  client: Socket;
  upstream: Socket;
}

/**
 * A TCP forwarder on a stable loopback port. Each new connection goes to the target the
 * control file names at that moment; when the target changes, every open connection to
 * the old one is closed, so clients reconnect and reach the new coordinator (a client of
 * a dead coordinator must not hang on a connection nobody will answer). With no target,
 * or a target that refuses, new connections are closed at once.
 */
export class LocalEndpointForwarder {
  private readonly pollMs: number;
  private server?: Server;
  private timer?: NodeJS.Timeout;
  private polling?: Promise<void>;
  private listening?: HostPort;
  private target: HostPort | null = null;
  private revision = 0;
  /** Identity of the control file last read (inode, mtime, size): a rename makes a new one. */
  private controlKey = '';
  private stopped = false;
  private readonly connections = new Set<Connection>();

  constructor(private readonly options: LocalEndpointForwarderOptions) {
    this.pollMs = options.pollMs ?? DEFAULT_ENDPOINT_POLL_MS;
    if (!(this.pollMs > 0)) throw new ValidationError(`pollMs must be positive, got ${options.pollMs}`);
  }

  /** Where it listens (after {@link start}). */
  get listen(): HostPort {
    if (!this.listening) throw new Error('the forwarder is not started');
    return { ...this.listening };
  }

  /** The target new connections go to now. */
  get currentTarget(): HostPort | null {
    return this.target ? { ...this.target } : null;
  }

  /** Open forwarded connections. */
  get openConnections(): number {
    return this.connections.size;
  }

  /**
   * Reads the control file, listens, acknowledges the control file's revision and starts
   * watching it. Rejects when the port cannot be bound (nothing is left running).
   */
  async start(): Promise<HostPort> {
    if (this.server || this.stopped) throw new Error('a forwarder starts once');
    const control = await this.readControl();
    if (control) this.apply(control.value, control.key);
    const address = this.options.address ?? control?.value.listen?.address ?? DEFAULT_ENDPOINT_ADDRESS;
    const port = this.options.port ?? control?.value.listen?.port ?? 0;
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.report(e));
    this.server = server;
    this.listening = { address, port: (server.address() as AddressInfo).port };
    await this.acknowledge(0);
    this.timer = setInterval(() => this.tick(), this.pollMs);
    return this.listen;
  }

  /** Stops listening, closes every connection and stops watching. Safe to call twice. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.polling; // no acknowledgement is written after stop returns
    this.closeAll();
    const server = this.server;
    this.server = undefined;
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private tick(): void {
    if (this.polling || this.stopped) return; // a slow disk must not stack up polls
    this.polling = this.poll().finally(() => (this.polling = undefined));
  }

  private async poll(): Promise<void> {
    try {
      const control = await this.readControl(this.controlKey);
      if (!control || this.stopped) return;
      const closed = this.apply(control.value, control.key);
      await this.acknowledge(closed);
    } catch (e) {
      this.report(e as Error);
    }
  }

  /**
   * The control file, when it changed since `knownKey` (undefined when it did not, or
   * there is none: a missing file changes nothing, the last target stays).
   */
  private async readControl(knownKey?: string): Promise<{ value: EndpointControl; key: string } | undefined> {
    const file = controlPath(this.options.dir);
    let key: string;
    try {
      const st = await stat(file, { bigint: true });
      key = `${st.ino}:${st.mtimeNs}:${st.size}`;
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
    if (key === knownKey) return undefined;
    try {
      const value = await readEndpointControl(this.options.dir);
      return value && { value, key };
    } catch (e) {
      this.controlKey = key; // report a bad file once, not every poll
      throw e;
    }
  }

  /** Takes a control file's target; returns how many connections to the old target it closed. */
  private apply(control: EndpointControl, key: string): number {
    this.controlKey = key;
    this.revision = control.revision;
    if (sameTarget(control.target, this.target)) return 0;
    this.target = control.target;
    const closed = this.connections.size;
    this.closeAll(); // every open connection leads to the old target
    return closed;
  }

  private async acknowledge(closed: number): Promise<void> {
    const applied: EndpointApplied = { pid: process.pid, listen: this.listen, target: this.currentTarget, revision: this.revision, appliedAt: new Date().toISOString() };
    await writeJsonAtomic(appliedPath(this.options.dir), applied);
    this.options.onApply?.(applied, closed);
  }

  private accept(client: Socket): void {
    const target = this.target;
    if (!target || this.stopped) {
      client.destroy();
      return;
    }
    // Writes before the upstream connects are buffered by the socket; pipe ends each
    // side when the other half-closes, so a half-close passes through.
    const upstream = connect({ host: target.address, port: target.port, allowHalfOpen: true, noDelay: true });
    const connection: Connection = { client, upstream };
    this.connections.add(connection);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.connections.delete(connection);
    };
    // An error on either side (ECONNREFUSED from a dead target included) closes both.
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  private closeAll(): void {
    for (const { client, upstream } of this.connections) {
      client.destroy();
      upstream.destroy();
    }
    this.connections.clear();
  }

  private report(error: Error): void {
    this.options.onError?.(error);
  }
}

/** Options of {@link LocalClientEndpoint}. */
export interface LocalClientEndpointOptions {
  /** How long `moveTo` waits for the forwarder's acknowledgement; default 5 s. */
  ackTimeoutMs?: number;
  /** How often `moveTo` looks for it; default 50 ms. */
  pollMs?: number;
}

/**
 * The ClientEndpoint of a local cluster: writes the forwarder's control file and waits
 * for the forwarder (in this process or `cli/endpoint-daemon.ts`) to apply it.
 */
export class LocalClientEndpoint implements ClientEndpoint {
  private readonly ackTimeoutMs: number;
  private readonly pollMs: number;

  /** `dir`: the cluster directory holding `endpoint.json`. */
  constructor(readonly dir: string, options: LocalClientEndpointOptions = {}) {
    this.ackTimeoutMs = options.ackTimeoutMs ?? DEFAULT_ENDPOINT_ACK_TIMEOUT_MS;
    this.pollMs = options.pollMs ?? DEFAULT_ENDPOINT_POLL_MS;
  }

  /** Where the forwarder listens and the target it applies (the control file's when no forwarder acknowledged one). */
  async describe(): Promise<EndpointDescription> {
    const [control, applied] = await Promise.all([readEndpointControl(this.dir), readEndpointApplied(this.dir)]);
    const listen = applied?.listen ?? control?.listen;
    if (!listen || !listen.port) throw new ValidationError(`no client endpoint in ${this.dir}: neither ${ENDPOINT_CONTROL_FILE} with a listen port nor a forwarder's ${ENDPOINT_APPLIED_FILE}`);
    const target = applied ? applied.target : (control?.target ?? null);
    return { kind: 'local', address: listen.address, port: listen.port, ...(target ? { target } : {}) };
  }

  /**
   * Points the forwarder at `coordinator` and returns once it has applied that (new
   * connections reach the coordinator; connections to the old target are closed).
   * Throws EndpointNotAcknowledgedError when no forwarder applies it within the timeout.
   */
  async moveTo(coordinator: SegmentRow): Promise<void> {
    const target = targetOf(coordinator);
    const revision = await this.configure({ target });
    await this.waitApplied(revision, target);
  }

  /**
   * Writes the control file without waiting for a forwarder (setup, before one runs):
   * `listen` when given (else the current one is kept), the target, and a revision one
   * above the current. Returns that revision.
   */
  async configure(change: { listen?: { address: string; port: number }; target: HostPort | null }): Promise<number> {
    const current = await readEndpointControl(this.dir);
    const listen = change.listen ?? current?.listen;
    const control: EndpointControl = { ...(listen ? { listen } : {}), target: change.target, revision: (current?.revision ?? 0) + 1 };
    await writeJsonAtomic(controlPath(this.dir), control);
    return control.revision;
  }

  /** Resolves once a forwarder acknowledged `revision` or a later one. */
  async waitApplied(revision: number, target?: HostPort | null): Promise<EndpointApplied> {
    const deadline = Date.now() + this.ackTimeoutMs;
    for (;;) {
      const applied = await readEndpointApplied(this.dir).catch(() => undefined); // a malformed one counts as none
      if (applied && applied.revision >= revision) return applied;
      if (Date.now() >= deadline) {
        const what = target === undefined ? `revision ${revision}` : target ? `the move to ${target.address}:${target.port}` : 'the removal of the target';
        const last = applied ? ` (the last acknowledgement, revision ${applied.revision}, came from pid ${applied.pid} at ${applied.appliedAt})` : '';
        throw new EndpointNotAcknowledgedError(`no endpoint forwarder applied ${what} in ${this.dir} within ${this.ackTimeoutMs} ms${last}; is the cluster's endpoint forwarder running (\`ftsctl local up\` starts it)?`);
      }
      await sleep(this.pollMs);
    }
  }
}

/** The forwarder target of a catalog row; ValidationError for a row without an address or port. */
function targetOf(row: SegmentRow): HostPort {
  if (!row.address) throw new ValidationError(`dbid ${row.dbid} has no address to point the client endpoint at`);
  if (!Number.isInteger(row.port) || row.port < 1 || row.port > 65535) throw new ValidationError(`dbid ${row.dbid} has no valid port to point the client endpoint at (got ${row.port})`);
  return { address: row.address, port: row.port };
}
