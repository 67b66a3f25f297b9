/**
 * The control plane's role without superuser, on real PostgreSQL 15: scripts/fts-role.sql
 * run on the primary of a pair (the mirror gets the role by replication), pg_hba asking
 * the role for its password (scram-sha-256, as in AWS with the secret), and every call
 * of PgSegmentProbe and PgSegmentControl made as that role: the probe with its write
 * check, the WAL receiver, sync rep off and on, slots, CHECKPOINT, verifyWritable (and
 * its cancel of a commit stuck on sync rep), and last the promotion of the mirror.
 */
import { HostCommandError, NotWritableError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeAnswer, ProbeFailure, ProbeResult } from '../../lambdas/core/probe';
import { mirrorSlotName } from '../../lambdas/core/model';
import { applyFtsRoleScript, ftsRoleHbaLines } from '../../lambdas/adapters/local/postgres-binaries';
import { withSegmentClient, type PgCredentialsProvider } from '../../lambdas/adapters/postgres/connection';
import { PgSegmentControl, WRITE_CHECK_TABLE } from '../../lambdas/adapters/postgres/control';
import { HEARTBEAT_TABLE, PgSegmentProbe } from '../../lambdas/adapters/postgres/probe';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';

const ROLE = 'fts_role_check';
const PASSWORD = 'role-pass-5be1';
/** A role made by the script, then deprived of pg_read_all_stats (trusted on loopback: no pg_hba line of its own). */
const NO_STATS_ROLE = 'fts_role_nostats';

let pair: PgPair;
let primary: SegmentRow;
let mirror: SegmentRow;
let password = PASSWORD;
const credentials: PgCredentialsProvider = () => ({ user: ROLE, password });
const probe = new PgSegmentProbe({ credentials });
const control = new PgSegmentControl({ credentials, connectTimeoutMs: 5000, statementTimeoutMs: 10_000 });

/** Runs SQL as the role; returns the rows. */
const asRole = async <R extends Record<string, unknown>>(segment: SegmentRow, sql: string): Promise<R[]> =>
  withSegmentClient(segment, credentials, { connectTimeoutMs: 5000, statementTimeoutMs: 10_000 }, async (c) => (await c.query<R>(sql)).rows);

function expectAnswer(r: ProbeResult): ProbeAnswer {
  if (!r.ok) throw new Error(`expected an answer, got ${r.kind}: ${r.message}`);
  return r;
}

function expectFailure(r: ProbeResult): ProbeFailure {
  if (r.ok) throw new Error(`expected a failure, got an answer from dbid ${r.dbid}`);
  return r;
}

beforeAll(async () => {
  // First match wins: the role must give its password; the superuser stays trusted on loopback.
  pair = await createPair({ syncRep: true, instanceConfig: { extraHbaLines: ftsRoleHbaLines({ role: ROLE }) } });
  primary = pair.primary;
  mirror = pair.mirror!;
  await applyFtsRoleScript({ address: primary.address, port: primary.port, role: ROLE, password: PASSWORD });
  await waitFor('the role on the mirror (replicated)', async () => ((await pair.query(mirror, `SELECT 1 FROM pg_roles WHERE rolname = '${ROLE}'`)).length ? true : undefined));
}, 180_000);

afterAll(async () => {
  await pair?.destroy();
}, 60_000);

describe('scripts/fts-role.sql', () => {
  test('makes a login role with REPLICATION, pg_read_all_stats and pg_checkpoint only: no superuser, no programs, no other setting', async () => {
    const [role] = await pair.query(primary, `SELECT rolsuper, rolcanlogin, rolreplication, rolcreaterole, rolcreatedb, rolbypassrls, rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = '${ROLE}'`);
    expect(role).toEqual({ rolsuper: false, rolcanlogin: true, rolreplication: true, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false, scram: true });
    const memberships = await pair.query<{ rolname: string }>(primary, `SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = '${ROLE}' ORDER BY 1`);
    expect(memberships.map((m) => m.rolname)).toEqual(['pg_checkpoint', 'pg_read_all_stats']);
    expect((await asRole(primary, 'SELECT current_user AS u'))[0].u).toBe(ROLE);
    // What only a superuser (or a role with more grants) could do is refused.
    await expect(asRole(primary, `COPY (SELECT 1) TO PROGRAM 'true'`)).rejects.toMatchObject({ code: '42501' });
    await expect(asRole(primary, `ALTER SYSTEM SET wal_sender_timeout = '1s'`)).rejects.toMatchObject({ code: '42501' });
    await expect(asRole(primary, `SELECT pg_read_file('postgresql.auto.conf')`)).rejects.toMatchObject({ code: '42501' });
    await expect(asRole(primary, 'CREATE TABLE fts_role_may_not (id int)')).rejects.toMatchObject({ code: '42501' });
  });

  test('the role must give its password (pg_hba scram-sha-256): without it, or with another, the probe is refused as authentication', async () => {
    const r = expectFailure(await new PgSegmentProbe({ credentials: () => ({ user: ROLE }) }).probe(primary, { ...pair.settings, probeRetries: 2 }));
    expect(r.kind).toBe('authentication');
    expect(r.attempts).toBe(1);
    const wrong = expectFailure(await new PgSegmentProbe({ credentials: () => ({ user: ROLE, password: 'not-it' }) }).probe(primary, pair.settings));
    expect(wrong.kind).toBe('authentication');
  });

  test('idempotent: run again it changes nothing; with a new password it rotates it', async () => {
    await applyFtsRoleScript({ address: primary.address, port: primary.port, role: ROLE });
    expectAnswer(await probe.probe(primary, pair.settings, mirror));
    const rotated = `${PASSWORD}-2`;
    await applyFtsRoleScript({ address: primary.address, port: primary.port, role: ROLE, password: rotated });
    expect(expectFailure(await probe.probe(primary, pair.settings)).kind).toBe('authentication');
    password = rotated;
    try {
      expectAnswer(await probe.probe(primary, pair.settings, mirror));
    } finally {
      await applyFtsRoleScript({ address: primary.address, port: primary.port, role: ROLE, password: PASSWORD });
      password = PASSWORD;
    }
    expectAnswer(await probe.probe(primary, pair.settings, mirror));
  });

  test('refuses to demote a superuser; does nothing on an instance in recovery', async () => {
    await expect(applyFtsRoleScript({ address: primary.address, port: primary.port, role: 'postgres' })).rejects.toThrow(/role postgres is a superuser/);
    expect((await pair.query(primary, `SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'`))[0].rolsuper).toBe(true);
    const onMirror = await applyFtsRoleScript({ address: mirror.address, port: mirror.port, role: ROLE });
    expect(onMirror.stdout).toMatch(/in recovery .* nothing done/);
  });
});

describe('every adapter call as the role', () => {
  test('probe with the write check: the primary answers, its mirror streaming in sync, the heartbeat committed', async () => {
    const r = expectAnswer(await probe.probe(primary, pair.settings, mirror, { writeCheck: true }));
    expect(r).toMatchObject({ inRecovery: false, syncRepOn: true, wrote: true, walSenderTimeoutMs: 6000 });
    expect(r.writeError).toBeUndefined();
    // pg_read_all_stats: the walsender's state and LSNs, the checkpointer's start.
    expect(r.mirror).toMatchObject({ state: 'streaming', syncState: 'sync', senderState: 'streaming', flushLsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/) });
    expect(Date.parse(r.initializedAt!)).toBeGreaterThanOrEqual(Date.parse(r.startedAt!));
    const [row] = await pair.query<{ n: number }>(primary, `SELECT count(*)::int AS n FROM ${HEARTBEAT_TABLE} WHERE dbid = ${primary.dbid}`);
    expect(row.n).toBe(1);
  });

  test("the mirror's probe and walReceiver: streaming from its primary (pg_stat_wal_receiver as pg_read_all_stats shows it)", async () => {
    const m = expectAnswer(await probe.probe(mirror, pair.settings, undefined, { writeCheck: true }));
    expect(m.inRecovery).toBe(true);
    expect(m.wrote).toBe(false); // a standby is never written
    expect(m.receiver).toMatchObject({ state: 'streaming', heardSecondsAgo: expect.any(Number) });
    const receiver = await control.walReceiver(mirror);
    expect(receiver).toMatchObject({ inRecovery: true, state: 'streaming', senderHost: '127.0.0.1', senderPort: primary.port });
    expect(receiver.heardSecondsAgo).toBeGreaterThanOrEqual(0);
  });

  test('setSyncRep off then on (ALTER SYSTEM on synchronous_standby_names, pg_reload_conf)', async () => {
    await control.setSyncRep(primary, mirror, false);
    const off = expectAnswer(await probe.probe(primary, pair.settings, mirror));
    expect(off.syncRepOn).toBe(false);
    expect(off.mirror.syncState).toBe('async');
    await control.setSyncRep(primary, mirror, true);
    await pair.waitForStreaming(primary, mirror, true);
    expect((await pair.query(primary, 'SHOW synchronous_standby_names'))[0].synchronous_standby_names).toBe(mirrorSlotName(mirror.dbid));
  });

  test('ensureSlot and dropSlot (REPLICATION); a slot in use is not dropped', async () => {
    const spare = 9;
    await control.ensureSlot(primary, spare);
    await control.ensureSlot(primary, spare); // idempotent
    const slots = async () => (await pair.query<{ slot_name: string }>(primary, 'SELECT slot_name FROM pg_replication_slots ORDER BY 1')).map((s) => s.slot_name);
    expect(await slots()).toContain(mirrorSlotName(spare));
    await control.dropSlot(primary, spare);
    await control.dropSlot(primary, spare); // nothing left: no error
    expect(await slots()).not.toContain(mirrorSlotName(spare));
    await expect(control.dropSlot(primary, mirror.dbid)).rejects.toBeInstanceOf(HostCommandError);
    expect(await slots()).toContain(mirrorSlotName(mirror.dbid));
  });

  test('CHECKPOINT (pg_checkpoint)', async () => {
    const requested = async () => (await pair.query<{ n: number }>(primary, 'SELECT checkpoints_req::int AS n FROM pg_stat_bgwriter'))[0].n;
    const before = await requested();
    await control.checkpoint(primary, 10_000);
    await waitFor('the checkpoint in pg_stat_bgwriter', async () => ((await requested()) > before ? true : undefined), 10_000);
  });

  test('verifyWritable commits a row in the table the script made', async () => {
    const count = async () => (await pair.query<{ n: number }>(primary, `SELECT count(*)::int AS n FROM ${WRITE_CHECK_TABLE}`))[0].n;
    const before = await count();
    await control.verifyWritable(primary, 5000);
    expect(await count()).toBe(before + 1);
  });

  test('verifyWritable cancels its own commit stuck waiting for a synchronous standby (pg_cancel_backend of its own role, no pg_signal_backend)', async () => {
    // Sync rep waiting for a standby that does not exist: every commit waits.
    await control.setSyncRep(primary, { ...mirror, dbid: 99 }, true);
    try {
      await expect(control.verifyWritable(primary, 1000)).rejects.toThrow(NotWritableError);
      await expect(control.verifyWritable(primary, 1000)).rejects.toThrow(/synchronous standby/);
    } finally {
      await control.setSyncRep(primary, mirror, true);
    }
    await pair.waitForStreaming(primary, mirror, true);
  });

  test('a role without pg_read_all_stats: the probe says the prober is misconfigured (never a mirror absent), walReceiver refuses', async () => {
    await applyFtsRoleScript({ address: primary.address, port: primary.port, role: NO_STATS_ROLE });
    await pair.query(primary, `REVOKE pg_read_all_stats FROM ${NO_STATS_ROLE}`);
    await waitFor('the revoke on the mirror', async () =>
      (await pair.query<{ m: boolean }>(mirror, `SELECT pg_has_role('${NO_STATS_ROLE}', 'pg_read_all_stats', 'USAGE') AS m`))[0].m ? undefined : true,
    );
    const noStats: PgCredentialsProvider = () => ({ user: NO_STATS_ROLE });
    const r = expectFailure(await new PgSegmentProbe({ credentials: noStats }).probe(primary, { ...pair.settings, probeRetries: 2 }, mirror));
    expect(r.kind).toBe('authentication');
    expect(r.attempts).toBe(1);
    expect(r.message).toMatch(/pg_read_all_stats/);
    await expect(new PgSegmentControl({ credentials: noStats }).walReceiver(mirror)).rejects.toThrow(/pg_read_all_stats/);
  });

  test('promote: the primary stops, the role promotes the mirror, which turns its sync rep off and takes writes', async () => {
    await pair.host.stop(primary, 'fast');
    await control.promote(mirror, 30_000);
    const m = expectAnswer(await probe.probe(mirror, pair.settings, undefined, { writeCheck: true }));
    expect(m).toMatchObject({ inRecovery: false, syncRepOn: false, wrote: true });
    await control.verifyWritable(mirror, 5000);
    // Promoting again is a no-op.
    await control.promote(mirror, 5000);
  });
});
