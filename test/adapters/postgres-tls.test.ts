/**
 * TLS to segments on real PostgreSQL 15: one instance with `ssl = on`, a server
 * certificate of a test CA made with openssl, and a pg_hba.conf that only has `hostssl`
 * lines. The probe and the control calls connect as the role of scripts/fts-role.sql
 * with each sslmode: verify-full and verify-ca with the right CA succeed, without TLS
 * the server refuses (and the error says to turn TLS on), with another CA or a
 * certificate that names another host verification fails with a clear error, and
 * never as a failed instance. Then `ssl = off`: prefer falls back to plain, require
 * refuses. Also the parsing of FTS_PG_SSLMODE and FTS_PG_CA_BUNDLE.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeAnswer, ProbeFailure, ProbeResult } from '../../lambdas/core/probe';
import { applyFtsRoleScript, makeServerCertificate, makeTestCa, writeInstanceConfig, type ServerCertificate, type TestCa } from '../../lambdas/adapters/local/postgres-binaries';
import { DEFAULT_FTS_ROLE, SegmentTlsError, loadCaBundle, pgSslOption, trustCredentials, withSegmentClient, type PgTlsSettings, type SslMode } from '../../lambdas/adapters/postgres/connection';
import { PgSegmentControl } from '../../lambdas/adapters/postgres/control';
import { PgSegmentProbe } from '../../lambdas/adapters/postgres/probe';
import { handlerEnvironment } from '../../lambdas/handlers/environment';
import { tlsFrom } from '../../lambdas/handlers/deps';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';

const credentials = trustCredentials(DEFAULT_FTS_ROLE);
const SUPERUSER = trustCredentials('postgres');

let certDir: string | undefined;
let ca: TestCa;
let otherCa: TestCa;
let pair: PgPair | undefined;
let row: SegmentRow;
let server: ServerCertificate;

const probeWith = (tls: PgTlsSettings) => new PgSegmentProbe({ credentials, tls });
const controlWith = (tls: PgTlsSettings) => new PgSegmentControl({ credentials, tls, connectTimeoutMs: 5000 });

/** Whether a session made with `tls` is encrypted (pg_stat_ssl of its own backend). */
const encrypted = (tls: PgTlsSettings): Promise<boolean> =>
  withSegmentClient(row, credentials, { connectTimeoutMs: 5000, tls }, async (c) => (await c.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl);

/** Runs SQL as the superuser over TLS (the only way in while pg_hba.conf is hostssl only). */
const asSuperuser = (sql: string) => withSegmentClient(row, SUPERUSER, { connectTimeoutMs: 5000, tls: { sslmode: 'require' } }, (c) => c.query(sql));

function expectAnswer(r: ProbeResult): ProbeAnswer {
  if (!r.ok) throw new Error(`expected an answer, got ${r.kind}: ${r.message}`);
  return r;
}

function expectFailure(r: ProbeResult): ProbeFailure {
  if (r.ok) throw new Error(`expected a failure, got an answer from dbid ${r.dbid}`);
  return r;
}

beforeAll(async () => {
  certDir = await mkdtemp(join(tmpdir(), 'fts-tls-'));
  ca = await makeTestCa(certDir, 'segments-ca');
  otherCa = await makeTestCa(certDir, 'other-ca');
  server = await makeServerCertificate(certDir, ca, { name: 'segment', altNames: ['DNS:localhost', 'IP:127.0.0.1'] });
  await makeServerCertificate(certDir, ca, { name: 'elsewhere', altNames: ['DNS:elsewhere.invalid'] });
  pair = await createPair({ withMirror: false, instanceConfig: { ssl: server, tlsOnly: true } });
  row = pair.primary;
  // psql takes libpq's PGSSLMODE: the superuser too may only come in over TLS.
  await applyFtsRoleScript({ address: row.address, port: row.port, env: { PGSSLMODE: 'require' } });
}, 180_000);

afterAll(async () => {
  await pair?.destroy();
  if (certDir) await rm(certDir, { recursive: true, force: true });
}, 60_000);

describe('TLS-only segment (hostssl)', () => {
  test('verify-full with the CA: the probe (with its write check) and the control calls answer, encrypted', async () => {
    const tls: PgTlsSettings = { sslmode: 'verify-full', ca: ca.pem };
    const r = expectAnswer(await probeWith(tls).probe(row, pair!.settings, undefined, { writeCheck: true }));
    expect(r).toMatchObject({ inRecovery: false, wrote: true });
    await controlWith(tls).verifyWritable(row, 5000);
    await controlWith(tls).checkpoint(row, 10_000);
    expect(await encrypted(tls)).toBe(true);
  });

  test('verify-ca, require (with or without the CA) and prefer connect, all encrypted', async () => {
    for (const tls of [{ sslmode: 'verify-ca', ca: ca.pem }, { sslmode: 'require' }, { sslmode: 'require', ca: ca.pem }, { sslmode: 'prefer' }] as PgTlsSettings[]) {
      expectAnswer(await probeWith(tls).probe(row, pair!.settings));
      expect(await encrypted(tls)).toBe(true);
    }
  });

  test('without TLS (sslmode disable) the server refuses: authentication at once, and the message says to turn TLS on', async () => {
    const r = expectFailure(await probeWith({ sslmode: 'disable' }).probe(row, { ...pair!.settings, probeRetries: 2 }));
    expect(r.kind).toBe('authentication');
    expect(r.attempts).toBe(1);
    expect(r.message).toMatch(/no pg_hba\.conf entry .*no encryption/);
    expect(r.message).toMatch(/only over TLS: set sslmode, FTS_PG_SSLMODE, to prefer, require, verify-ca or verify-full/);
    await expect(controlWith({ sslmode: 'disable' }).checkpoint(row, 5000)).rejects.toThrow(/only over TLS/);
  });

  test('another CA: verify-ca and verify-full fail verification with a clear error, as a misconfigured probe (never a failure)', async () => {
    for (const sslmode of ['verify-ca', 'verify-full', 'require'] as const) {
      const tls: PgTlsSettings = { sslmode, ca: otherCa.pem };
      const r = expectFailure(await probeWith(tls).probe(row, { ...pair!.settings, probeRetries: 2 }));
      expect(r.kind).toBe('authentication');
      expect(r.attempts).toBe(1);
      expect(r.message).toContain(`TLS with dbid ${row.dbid} (127.0.0.1:${row.port}) failed (sslmode ${sslmode}): the server's certificate is not signed by a CA of the CA bundle`);
      expect(r.message).toMatch(/check the CA bundle \(FTS_PG_CA_BUNDLE\)/);
      const error = await controlWith(tls).walReceiver(row).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SegmentTlsError);
      expect((error as SegmentTlsError).code).toMatch(/^(UNABLE_TO_|SELF_SIGNED_)/);
    }
  });

  test('a certificate that does not name the address: verify-full fails, verify-ca (chain only) passes', async () => {
    await asSuperuser(`ALTER SYSTEM SET ssl_cert_file = '${join(certDir!, 'elsewhere.crt')}'`);
    await asSuperuser(`ALTER SYSTEM SET ssl_key_file = '${join(certDir!, 'elsewhere.key')}'`);
    await asSuperuser('SELECT pg_reload_conf()');
    try {
      const full: PgTlsSettings = { sslmode: 'verify-full', ca: ca.pem };
      const r = await waitFor('the new certificate in use', async () => {
        const p = await probeWith(full).probe(row, { ...pair!.settings, probeRetries: 0 });
        return p.ok ? undefined : p;
      }, 10_000);
      expect(r.kind).toBe('authentication');
      expect(r.message).toMatch(/the server's certificate does not name 127\.0\.0\.1 .*use sslmode verify-ca/);
      expectAnswer(await probeWith({ sslmode: 'verify-ca', ca: ca.pem }).probe(row, pair!.settings));
    } finally {
      await asSuperuser('ALTER SYSTEM RESET ssl_cert_file');
      await asSuperuser('ALTER SYSTEM RESET ssl_key_file');
      await asSuperuser('SELECT pg_reload_conf()');
    }
    await waitFor('the right certificate back', async () => (await probeWith({ sslmode: 'verify-full', ca: ca.pem }).probe(row, { ...pair!.settings, probeRetries: 0 })).ok || undefined, 10_000);
  });

  test('prefer: a TLS session that pg_hba.conf rejects is tried again without TLS, as libpq does; require gets the rejection', async () => {
    await writeInstanceConfig(row.datadir, { port: row.port, ssl: server, extraHbaLines: [`hostssl all ${DEFAULT_FTS_ROLE} 127.0.0.1/32 reject`] });
    await asSuperuser('SELECT pg_reload_conf()');
    try {
      await waitFor('the rejection of TLS sessions', async () => ((await encrypted({ sslmode: 'require' }).then(() => false, () => true)) ? true : undefined), 10_000);
      expect(await encrypted({ sslmode: 'prefer' })).toBe(false);
      expectAnswer(await probeWith({ sslmode: 'prefer' }).probe(row, pair!.settings));
      const r = expectFailure(await probeWith({ sslmode: 'require' }).probe(row, pair!.settings));
      expect(r.kind).toBe('authentication');
      expect(r.message).toMatch(/pg_hba\.conf rejects connection .*SSL encryption/);
    } finally {
      await writeInstanceConfig(row.datadir, { port: row.port, ssl: server, tlsOnly: true });
      await asSuperuser('SELECT pg_reload_conf()');
    }
    await waitFor('TLS sessions again', async () => ((await encrypted({ sslmode: 'require' }).catch(() => false)) ? true : undefined), 10_000);
  });

  test('ssl = off: prefer falls back to a plain session, require refuses with a clear error', async () => {
    // Plain pg_hba lines and no TLS: the instance config as writeInstanceConfig writes it by default.
    await writeInstanceConfig(row.datadir, { port: row.port });
    await asSuperuser('SELECT pg_reload_conf()');
    await waitFor('a plain session', async () => ((await encrypted({ sslmode: 'prefer' }).catch(() => true)) ? undefined : true), 10_000);
    expectAnswer(await probeWith({ sslmode: 'prefer' }).probe(row, pair!.settings, undefined, { writeCheck: true }));
    const r = expectFailure(await probeWith({ sslmode: 'require' }).probe(row, { ...pair!.settings, probeRetries: 2 }));
    expect(r.kind).toBe('authentication');
    expect(r.attempts).toBe(1);
    expect(r.message).toMatch(/the server does not accept TLS connections/);
  });
});

describe('TLS settings', () => {
  test('pgSslOption maps each sslmode onto pg/Node TLS options', () => {
    expect(pgSslOption(undefined)).toBe(false);
    expect(pgSslOption({ sslmode: 'disable', ca: 'x' })).toBe(false);
    expect(pgSslOption({ sslmode: 'prefer' })).toEqual({ rejectUnauthorized: false });
    expect(pgSslOption({ sslmode: 'require' })).toEqual({ rejectUnauthorized: false });
    expect(pgSslOption({ sslmode: 'require', ca: 'CA' })).toMatchObject({ ca: 'CA', rejectUnauthorized: true, checkServerIdentity: expect.any(Function) });
    expect(pgSslOption({ sslmode: 'verify-ca', ca: 'CA' })).toMatchObject({ ca: 'CA', rejectUnauthorized: true, checkServerIdentity: expect.any(Function) });
    expect(pgSslOption({ sslmode: 'verify-full', ca: 'CA' })).toEqual({ ca: 'CA', rejectUnauthorized: true });
    expect(() => pgSslOption({ sslmode: 'allow' as SslMode })).toThrow(/not one of disable, prefer, require, verify-ca, verify-full/);
  });

  test('FTS_PG_SSLMODE and FTS_PG_CA_BUNDLE (PEM text, escaped newlines, a path, system) are parsed and checked', async () => {
    const base = { FTS_CLUSTER_ID: 'c1' };
    expect(tlsFrom(handlerEnvironment(base))).toEqual({ sslmode: 'prefer' });
    expect(tlsFrom(handlerEnvironment({ ...base, FTS_PG_SSLMODE: ' disable ' }))).toEqual({ sslmode: 'disable' });
    expect(tlsFrom(handlerEnvironment({ ...base, FTS_PG_SSLMODE: 'verify-full', FTS_PG_CA_BUNDLE: ca.pem }))).toEqual({ sslmode: 'verify-full', ca: ca.pem.trim() + '\n' });
    expect(tlsFrom(handlerEnvironment({ ...base, FTS_PG_SSLMODE: 'verify-ca', FTS_PG_CA_BUNDLE: ca.pem.trim().replace(/\n/g, '\\n') })).ca).toBe(ca.pem.trim() + '\n');
    const bundle = join(certDir!, 'bundle.pem');
    await writeFile(bundle, `${ca.pem}${otherCa.pem}`);
    expect(loadCaBundle('bundle.pem', certDir)).toBe(`${ca.pem.trim()}\n${otherCa.pem.trim()}\n`);
    expect(tlsFrom(handlerEnvironment({ ...base, FTS_PG_SSLMODE: 'verify-ca', FTS_PG_CA_BUNDLE: bundle })).ca).toContain(otherCa.pem.trim());
    expect(tlsFrom(handlerEnvironment({ ...base, FTS_PG_SSLMODE: 'verify-full', FTS_PG_CA_BUNDLE: 'system' }))).toEqual({ sslmode: 'verify-full' });
    expect(() => handlerEnvironment({ ...base, FTS_PG_SSLMODE: 'allow' })).toThrow(/FTS_PG_SSLMODE: "allow" must be one of disable, prefer, require, verify-ca, verify-full/);
    expect(() => handlerEnvironment({ ...base, FTS_PG_SSLMODE: 'verify-full' })).toThrow(/FTS_PG_CA_BUNDLE: sslmode verify-full verifies the segments' certificates/);
    expect(() => handlerEnvironment({ ...base, FTS_PG_CA_BUNDLE: join(certDir!, 'missing.pem') })).toThrow(/FTS_PG_CA_BUNDLE: CA bundle .*missing\.pem cannot be read: ENOENT/);
    expect(() => handlerEnvironment({ ...base, FTS_PG_CA_BUNDLE: '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----' })).toThrow(/certificate 1 of the CA bundle does not parse/);
    expect(() => loadCaBundle('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----')).toThrow(/holds no PEM certificate/);
  });
});
