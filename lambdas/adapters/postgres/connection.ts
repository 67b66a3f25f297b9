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
 *
 * The role: none of it needs a superuser. `scripts/fts-role.sql` creates the role the
 * prober and the workflows connect as and grants exactly what probe.ts and control.ts
 * run (docs/deploy.md, "The database role").
 *
 * TLS: `sslmode` as libpq names it, and a CA bundle ({@link PgTlsSettings}); a
 * certificate or TLS negotiation failure is a {@link SegmentTlsError} that says which
 * setting to look at.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { Client, type ClientConfig } from 'pg';
import { SegmentUnreachableError, ValidationError, WrongInstanceError } from '../../core/errors';
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
/** Role `scripts/fts-role.sql` creates when given no name: what the prober and the workflows connect as, without superuser. */
export const DEFAULT_FTS_ROLE = 'fts_control';

/** Credentials for loopback trust authentication (local mode, tests): a role, no password. */
export const trustCredentials =
  (user = 'postgres'): PgCredentialsProvider =>
  () => ({ user });

/** `sslmode` values of connections to segments, as libpq names them. */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
/** One of {@link SSL_MODES}. */
export type SslMode = (typeof SSL_MODES)[number];

/**
 * TLS of connections to segments, as libpq's `sslmode` and `sslrootcert`:
 * - `disable`: no TLS (what `pg` does without an `ssl` option);
 * - `prefer`: TLS when the server offers it, not verified; plain when it refuses TLS
 *   (`ssl = off`) or refuses the TLS session in pg_hba.conf (libpq's default);
 * - `require`: TLS or nothing; the certificate is not verified, except against `ca`
 *   when one is given (libpq verifies the chain when a root certificate exists);
 * - `verify-ca`: TLS, the certificate chain must lead to a CA of `ca`;
 * - `verify-full`: as verify-ca, and the row's address must be in the certificate
 *   (subjectAltName DNS name or IP address).
 */
export interface PgTlsSettings {
  sslmode: SslMode;
  /** PEM text of one or more CA certificates; without it verify-ca and verify-full check against Node's bundled public roots. */
  ca?: string;
}

/** The `ssl` option of `pg` for {@link PgTlsSettings}; `false` (no TLS) when there are none. */
export function pgSslOption(tls: PgTlsSettings | undefined): false | ConnectionOptions {
  const mode = tls?.sslmode ?? 'disable';
  const ca = tls?.ca ? { ca: tls.ca } : {};
  switch (mode) {
    case 'disable':
      return false;
    case 'prefer':
      return { rejectUnauthorized: false };
    case 'require':
      return tls?.ca ? { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined } : { rejectUnauthorized: false };
    case 'verify-ca':
      // The chain is verified (rejectUnauthorized); the name in it is not.
      return { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      // pg passes the host on, and SNI when it is a name: Node checks the subjectAltName against it.
      return { ...ca, rejectUnauthorized: true };
    default:
      throw new ValidationError(`sslmode ${String(mode)} is not one of ${SSL_MODES.join(', ')}`);
  }
}

/**
 * A CA bundle given as PEM text (`-----BEGIN CERTIFICATE-----`, real newlines or `\n`)
 * or as the path of a PEM file (absolute, or relative to `baseDir`: the function's code
 * directory, `LAMBDA_TASK_ROOT`, in Lambda). Returns the certificates as PEM text;
 * ValidationError when it holds none, or one that does not parse.
 */
export function loadCaBundle(value: string, baseDir: string = process.env.LAMBDA_TASK_ROOT ?? process.cwd()): string {
  let text = value.trim();
  if (!text.includes('-----BEGIN')) {
    const path = isAbsolute(text) ? text : resolve(baseDir, text);
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new ValidationError(`CA bundle ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else if (!text.includes('\n') && text.includes('\\n')) {
    text = text.replace(/\\n/g, '\n');
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new ValidationError('the CA bundle holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  pems.forEach((pem, i) => {
    try {
      new X509Certificate(pem);
    } catch (e) {
      throw new ValidationError(`certificate ${i + 1} of the CA bundle does not parse: ${(e as Error).message}`);
    }
  });
  return `${pems.join('\n')}\n`;
}

/**
 * TLS with the segment failed: the server refused TLS, or its certificate was not
 * accepted (chain, name, dates). A misconfiguration of `sslmode`, the CA bundle or the
 * server's certificate, not a dead instance: the probe reports it as kind
 * `authentication` (probe misconfigured), never as a failure. `code` is Node's
 * (e.g. `SELF_SIGNED_CERT_IN_CHAIN`, `ERR_TLS_CERT_ALTNAME_INVALID`) or `NO_SSL_SUPPORT`.
 */
export class SegmentTlsError extends SegmentUnreachableError {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Options of one connection. */
export interface PgConnectOptions {
  /** TLS; default none (`sslmode` disable). */
  tls?: PgTlsSettings;
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
    ssl: pgSslOption(options.tls),
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
 * whatever state the protocol is in. With sslmode `prefer`, a server that refuses TLS
 * is connected to again without it, within the same deadline. A TLS failure rejects
 * with SegmentTlsError; other errors are passed through (pg errors keep their SQLSTATE
 * in `code`) with any password scrubbed from their message.
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
  const newClient = (c: ClientConfig): Client => {
    const created = new Client(c);
    // A destroyed or dropped connection emits 'error' on an idle client; it is reported through the promise instead.
    created.on('error', () => undefined);
    return created;
  };
  let client = newClient(config);
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      destroy(client);
      reject(new SegmentTimeoutError(`dbid ${segment.dbid} (${segment.address}:${segment.port}) did not answer within ${deadlineMs} ms`, deadlineMs));
    }, deadlineMs);
  });
  try {
    return await Promise.race([
      (async () => {
        try {
          await client.connect();
        } catch (e) {
          if (options.tls?.sslmode !== 'prefer' || !tlsRefused(e) || timedOut) throw e;
          // libpq's prefer: the server said no to TLS (ssl = off, or pg_hba.conf has no
          // hostssl line for us): connect again without it.
          destroy(client);
          client = newClient({ ...config, ssl: false });
          await client.connect();
        }
        if (timedOut) throw new SegmentTimeoutError(`dbid ${segment.dbid} (${segment.address}:${segment.port}) did not answer within ${deadlineMs} ms`, deadlineMs);
        return work(client);
      })(),
      deadline,
    ]);
  } catch (e) {
    throw explainConnectError(scrub(e, config.password), segment, config.user, options.tls);
  } finally {
    clearTimeout(timer);
    await closeQuietly(client);
  }
}

/** Whether a failed connect was the server refusing TLS: `N` to the SSLRequest, or pg_hba.conf rejecting the TLS session. */
function tlsRefused(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | null | undefined;
  const message = typeof err?.message === 'string' ? err.message : '';
  return message === 'The server does not support SSL connections' || (err?.code === '28000' && /SSL (encryption|on)/i.test(message));
}

/** Node TLS error codes of a certificate that was not accepted, or of a failed handshake. */
const TLS_ERROR_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|EPROTO$)/;

/**
 * Turns a TLS failure into a SegmentTlsError that names the setting to look at, adds a
 * hint to pg_hba's refusal of a session without TLS, and gives pg's own refusal to
 * answer a password request without a password SQLSTATE 28P01 (an authentication
 * failure, like the server's); other errors unchanged.
 */
function explainConnectError(e: unknown, segment: SegmentRow, user: string | undefined, tls: PgTlsSettings | undefined): unknown {
  // Not `instanceof Error`: Node's TLS errors may come from another realm (a test sandbox).
  if (typeof e !== 'object' || e === null || typeof (e as { message?: unknown }).message !== 'string') return e;
  const error = e as Error;
  if (/^SASL: .*client password must be/.test(error.message) && (e as { code?: unknown }).code === undefined) {
    error.message = `the server asks role ${user ?? '?'} for a password and none was given (${error.message})`;
    return Object.assign(e, { code: '28P01' });
  }
  const mode = tls?.sslmode ?? 'disable';
  const at = `dbid ${segment.dbid} (${segment.address}:${segment.port})`;
  const code = (e as { code?: unknown }).code;
  if (error.message === 'The server does not support SSL connections' || error.message === 'There was an error establishing an SSL connection') {
    return new SegmentTlsError(`TLS with ${at} failed (sslmode ${mode}): the server does not accept TLS connections (ssl = off?); turn ssl on there, or use sslmode prefer or disable`, 'NO_SSL_SUPPORT');
  }
  if (typeof code === 'string' && TLS_ERROR_CODE.test(code)) {
    const why =
      code === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? `the server's certificate does not name ${segment.address} (${error.message}); give it a certificate whose subjectAltName has that address, or use sslmode verify-ca`
        : /ISSUER|SELF_SIGNED|LEAF_SIGNATURE|DEPTH_ZERO|CHAIN|INVALID_CA/.test(code)
          ? `the server's certificate is not signed by a CA of the CA bundle${tls?.ca ? '' : ' (none given: Node\'s public roots)'} (${code}: ${error.message}); check the CA bundle (FTS_PG_CA_BUNDLE)`
          : `${code}: ${error.message}`;
    return new SegmentTlsError(`TLS with ${at} failed (sslmode ${mode}): ${why}`, code);
  }
  if (code === '28000' && /no encryption/i.test(error.message) && mode === 'disable') {
    error.message = `${error.message} (the server accepts this role only over TLS: set sslmode, FTS_PG_SSLMODE, to prefer, require, verify-ca or verify-full)`;
  }
  return e;
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
