/**
 * Connections to segment instances: `pg` client config from a catalog row plus
 * credentials from a provider (AWS reads a secret; local mode uses trust), a helper
 * that runs work on one short-lived connection under a hard deadline, so a host that
 * accepts TCP but never answers cannot hang a probe or a workflow step, and the identity
 * check every probe and control call makes before it trusts (or touches) what answered.
 *
 * Identity: every instance carries the custom settings `fts.dbid` and `fts.content` in
 * its postgresql.auto.conf (written when it is built; a mirror copied by pg_basebackup or
 * pg_rewind gets its own rewritten), and every instance of a content shares the system
 * identifier of `pg_control_system()` (a mirror is a physical copy). An instance whose
 * settings or identifier differ from the catalog row is not the row's instance: a DNS
 * change, a reused IP, a typo in a port.
 */
import { Client, type ClientConfig } from 'pg';
import { SegmentUnreachableError, WrongInstanceError } from '../../core/errors';
import type { SegmentRow } from '../../core/model';

/** Role and password to connect with. The password is never logged nor put in an error. */
export interface PgCredentials {
  user: string;
  password?: string;
}

/** Returns the credentials for each new connection (a secret may rotate between calls). */
export type PgCredentialsProvider = () => PgCredentials | Promise<PgCredentials>;

/** `application_name` of the prober's and the control plane's sessions, visible in pg_stat_activity. */
export const FTS_APPLICATION_NAME = 'fts_probe';
/** Database every instance has. */
export const DEFAULT_DATABASE = 'postgres';

/** Credentials for loopback trust authentication (local mode, tests): a role, no password. */
export const trustCredentials =
  (user = 'postgres'): PgCredentialsProvider =>
  () => ({ user });

/** Options of one connection. */
export interface PgConnectOptions {
  /** Milliseconds to establish the connection (TCP + startup + authentication). */
  connectTimeoutMs: number;
  /** Server-side `statement_timeout` in ms; default `connectTimeoutMs`; `false` for none. */
  statementTimeoutMs?: number | false;
  /** Default `fts_probe`. */
  applicationName?: string;
  /** Default `postgres`. */
  database?: string;
}

/**
 * The `pg` client config for a segment: host = the row's address, its port, database
 * `postgres`, the provider's role and password, `connectionTimeoutMillis` and
 * `statement_timeout` from the timeout, `application_name` fts_probe.
 */
export async function pgClientConfig(segment: SegmentRow, credentials: PgCredentialsProvider, options: PgConnectOptions): Promise<ClientConfig> {
  let creds: PgCredentials;
  try {
    creds = await credentials();
  } catch (e) {
    // The provider's own message may quote the secret's content; keep only its kind.
    throw new SegmentUnreachableError(`could not read the credentials to connect to dbid ${segment.dbid}: ${(e as Error).name}`);
  }
  const connectTimeoutMs = Math.max(1, Math.ceil(options.connectTimeoutMs));
  const statementTimeout = options.statementTimeoutMs === undefined ? connectTimeoutMs : options.statementTimeoutMs;
  return {
    host: segment.address,
    port: segment.port,
    database: options.database ?? DEFAULT_DATABASE,
    user: creds.user,
    password: creds.password,
    connectionTimeoutMillis: connectTimeoutMs,
    statement_timeout: statementTimeout === false ? false : Math.max(1, Math.ceil(statementTimeout)),
    application_name: options.applicationName ?? FTS_APPLICATION_NAME,
    // Keepalives notice a vanished host on long control calls (pg_promote, verifyWritable).
    keepAlive: true,
  };
}

/**
 * No answer before the hard deadline of {@link withSegmentClient}: the connection was
 * destroyed. A SegmentUnreachableError, so callers that do not care about the reason
 * can catch the base class.
 */
export class SegmentTimeoutError extends SegmentUnreachableError {
  constructor(
    message: string,
    readonly timeoutMs: number,
  ) {
    super(message);
  }
}

/** Options of {@link withSegmentClient}. */
export interface WithClientOptions extends PgConnectOptions {
  /** The whole call (connect + work) must end by then, else the socket is destroyed; default connect timeout + statement timeout + 1 s. */
  deadlineMs?: number;
}

/**
 * Opens one connection to the segment, runs `work` on it, and closes it. A hard timer
 * destroys the socket at the deadline, and the call rejects with SegmentTimeoutError,
 * whatever state the protocol is in. Other errors are passed through (pg errors keep
 * their SQLSTATE in `code`) with any password scrubbed from their message.
 */
export async function withSegmentClient<T>(
  segment: SegmentRow,
  credentials: PgCredentialsProvider,
  options: WithClientOptions,
  work: (client: Client) => Promise<T>,
): Promise<T> {
  const config = await pgClientConfig(segment, credentials, options);
  const statementMs = typeof config.statement_timeout === 'number' ? config.statement_timeout : 0;
  const deadlineMs = options.deadlineMs ?? options.connectTimeoutMs + statementMs + 1000;
  const client = new Client(config);
  // A destroyed or dropped connection emits 'error' on an idle client; it is reported through the promise instead.
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      destroy(client);
      reject(new SegmentTimeoutError(`dbid ${segment.dbid} (${segment.address}:${segment.port}) did not answer within ${deadlineMs} ms`, deadlineMs));
    }, deadlineMs);
  });
  try {
    return await Promise.race([
      (async () => {
        await client.connect();
        return work(client);
      })(),
      deadline,
    ]);
  } catch (e) {
    throw scrub(e, config.password);
  } finally {
    clearTimeout(timer);
    await closeQuietly(client);
  }
}

/** Ends the session politely, but never waits more than a second for a peer that went silent. */
async function closeQuietly(client: Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.end().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        destroy(client);
        resolve();
      }, 1000);
    }),
  ]);
  clearTimeout(timer);
}

function destroy(client: Client): void {
  try {
    client.connection.stream.destroy();
  } catch {
    // Already gone.
  }
}

/** Removes a password from an error's message (defence in depth: pg does not echo it). */
function scrub(e: unknown, password: ClientConfig['password']): unknown {
  if (typeof password === 'string' && password.length > 0 && e instanceof Error && e.message.includes(password)) {
    e.message = e.message.split(password).join('***');
  }
  return e;
}

/**
 * Select-list expressions reading an instance's identity: `fts_dbid`, `fts_content`
 * (NULL when not set) and `system_identifier` (decimal text). Any role may read them.
 */
export const IDENTITY_COLUMNS = `current_setting('fts.dbid', true) AS fts_dbid,
       current_setting('fts.content', true) AS fts_content,
       (pg_control_system()).system_identifier::text AS system_identifier`;

/** What {@link IDENTITY_COLUMNS} read. */
export interface InstanceIdentity {
  fts_dbid: string | null;
  fts_content: string | null;
  system_identifier: string | null;
}

/**
 * Why the instance that answered is not the row's, or undefined when it is: `fts.dbid`
 * missing or another dbid, `fts.content` missing or another content, or (when the row
 * has one) another system identifier.
 */
export function identityMismatch(segment: SegmentRow, found: InstanceIdentity): string | undefined {
  const at = `the instance at ${segment.address}:${segment.port}`;
  const dbid = found.fts_dbid?.trim() ?? '';
  if (dbid === '') return `${at} has no fts.dbid setting, so it cannot be told to be dbid ${segment.dbid}`;
  if (!/^-?[0-9]+$/.test(dbid) || Number(dbid) !== segment.dbid) return `${at} is fts.dbid ${dbid}, not dbid ${segment.dbid}`;
  const content = found.fts_content?.trim() ?? '';
  if (content === '') return `${at} (fts.dbid ${dbid}) has no fts.content setting, so it cannot be told to hold content ${segment.content}`;
  if (!/^-?[0-9]+$/.test(content) || Number(content) !== segment.content) return `${at} holds fts.content ${content}, not content ${segment.content} of dbid ${segment.dbid}`;
  if (segment.systemIdentifier !== undefined && found.system_identifier !== segment.systemIdentifier) {
    return `${at} has system identifier ${found.system_identifier ?? '(unknown)'}, not ${segment.systemIdentifier} of dbid ${segment.dbid}'s content ${segment.content}`;
  }
  return undefined;
}

/**
 * Reads the identity of the instance `client` is connected to and throws
 * WrongInstanceError when it is not `segment`'s; returns its system identifier. Run it
 * before anything else on the connection.
 */
export async function checkIdentity(client: Client, segment: SegmentRow): Promise<string | undefined> {
  const { rows } = await client.query<InstanceIdentity>(`SELECT ${IDENTITY_COLUMNS}`);
  const found = rows[0] ?? { fts_dbid: null, fts_content: null, system_identifier: null };
  const mismatch = identityMismatch(segment, found);
  if (mismatch) throw new WrongInstanceError(`dbid ${segment.dbid}: ${mismatch}; nothing was done to it`);
  return found.system_identifier ?? undefined;
}
