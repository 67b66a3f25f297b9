/**
 * PostgreSQL adapters against real instances: one primary/mirror pair (sync rep on),
 * reused by every test in order; the last test fails the primary over and rewinds it.
 * A second, mirrorless instance ("solo", dbid 2 of content 0 too, but another database
 * cluster) lives for one describe block: identity by system identifier, a failing disk,
 * a full connection table, a crash reset.
 */
import { chmod } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Client } from 'pg';
import { NotLeaseHolderError, NotWritableError, ValidationError, WrongInstanceError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeFailure, ProbeAnswer } from '../../lambdas/core/probe';
import { isRunning, killInstance } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { SegmentTimeoutError, identityMismatch } from '../../lambdas/adapters/postgres/connection';
import { HEARTBEAT_TABLE, PgSegmentProbe, classifyProbeError, classifyWriteError, mapLimit, settingMs } from '../../lambdas/adapters/postgres/probe';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';
import { crashBackend } from '../../cli/faults/slow-recovery';

const AUTH_ROLE = 'fts_auth_check';
const RIGHT_PASSWORD = 'right-pass-3f9c';
const WRONG_PASSWORD = 'wrong-pass-71ad';

let pair: PgPair;
let primary: SegmentRow;
let mirror: SegmentRow;
let blackhole: Server | undefined;
const blackholeSockets: Socket[] = [];

beforeAll(async () => {
  pair = await createPair({
    syncRep: true,
    // First match wins: this role must give a password; everyone else is trusted on loopback.
    instanceConfig: { extraHbaLines: [`host all ${AUTH_ROLE} 127.0.0.1/32 scram-sha-256`] },
  });
  primary = pair.primary;
  mirror = pair.mirror!;
}, 180_000);

afterAll(async () => {
  for (const s of blackholeSockets) s.destroy();
  await new Promise<void>((resolve) => (blackhole ? blackhole.close(() => resolve()) : resolve()));
  await pair?.destroy();
}, 60_000);

function expectAnswer(r: Awaited<ReturnType<PgSegmentProbe['probe']>>): ProbeAnswer {
  if (!r.ok) throw new Error(`expected an answer, got ${r.kind}: ${r.message}`);
  return r;
}

function expectFailure(r: Awaited<ReturnType<PgSegmentProbe['probe']>>): ProbeFailure {
  if (r.ok) throw new Error(`expected a failure, got an answer from dbid ${r.dbid}`);
  return r;
}

describe('PgSegmentProbe', () => {
  test('a healthy primary answers: not in recovery, its mirror streaming in sync, sync rep on', async () => {
    const r = expectAnswer(await pair.probe.probe(primary, pair.settings, mirror));
    expect(r.dbid).toBe(primary.dbid);
    expect(r.inRecovery).toBe(false);
    expect(r.syncRepOn).toBe(true);
    expect(r.mirror.state).toBe('streaming');
    expect(r.mirror.syncState).toBe('sync');
    expect(r.mirror.flushLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(r.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(r.attempts).toBe(1);
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
    expect(r.systemIdentifier).toMatch(/^[0-9]+$/);
    // pg-pair's instances run with wal_sender_timeout = 6s.
    expect(r.walSenderTimeoutMs).toBe(6000);
    expect(Date.parse(r.startedAt!)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(r.initializedAt!)).toBeGreaterThanOrEqual(Date.parse(r.startedAt!));
    expect(r.wrote).toBeUndefined(); // no write check asked
  });

  test('a probe that names another mirror reports that mirror absent', async () => {
    const stranger: SegmentRow = { ...mirror, dbid: 99 };
    const r = expectAnswer(await pair.probe.probe(primary, pair.settings, stranger));
    expect(r.mirror).toEqual({ state: 'absent', syncState: 'none' });
  });

  test('the mirror answers in recovery; its WAL receiver streams from the primary', async () => {
    const r = expectAnswer(await pair.probe.probe(mirror, pair.settings));
    expect(r.inRecovery).toBe(true);
    expect(r.mirror.state).toBe('absent');
    const receiver = await pair.control.walReceiver(mirror);
    expect(receiver.inRecovery).toBe(true);
    expect(receiver.state).toBe('streaming');
    expect(receiver.senderPort).toBe(primary.port);
    expect(receiver.senderHost).toBe('127.0.0.1');
    expect(typeof receiver.lastMessageAt).toBe('number');
    // Measured on the mirror; on one machine it agrees with the sender's timestamp.
    expect(receiver.heardSecondsAgo).toBeGreaterThanOrEqual(0);
    expect(Math.abs((Date.now() - receiver.lastMessageAt!) / 1000 - receiver.heardSecondsAgo!)).toBeLessThan(1);
    // A mirror is a physical copy: same system identifier as its primary.
    expect(r.systemIdentifier).toBe(expectAnswer(await pair.probe.probe(primary, pair.settings)).systemIdentifier);
  });

  test("both ends of the replication as gpstate -f shows them: the primary's walsender (state, sync state, sent/write/flush/replay, replay lag) and the mirror's WAL receiver", async () => {
    await pair.query(primary, 'CREATE TABLE IF NOT EXISTS probe_lag_check (id int); INSERT INTO probe_lag_check VALUES (1)');
    const p = expectAnswer(await pair.probe.probe(primary, pair.settings, mirror));
    const lsn = /^[0-9A-F]+\/[0-9A-F]+$/;
    expect(p.mirror).toMatchObject({ state: 'streaming', senderState: 'streaming', syncState: 'sync', sentLsn: expect.stringMatching(lsn), writeLsn: expect.stringMatching(lsn), flushLsn: expect.stringMatching(lsn), replayLsn: expect.stringMatching(lsn) });
    // replay_lag is null once an idle standby has caught up for a while; else seconds.
    if (p.mirror.replayLagSeconds !== undefined) expect(p.mirror.replayLagSeconds).toBeGreaterThanOrEqual(0);
    expect(p.receiver).toBeUndefined(); // a primary has no WAL receiver
    const m = expectAnswer(await pair.probe.probe(mirror, pair.settings));
    expect(m.receiver).toEqual({ state: 'streaming', receivedLsn: expect.stringMatching(lsn), replayLsn: m.lsn, heardSecondsAgo: expect.any(Number) });
    expect(m.receiver!.heardSecondsAgo).toBeGreaterThanOrEqual(0);
    expect(m.receiver!.heardSecondsAgo).toBeLessThan(10);
  });

  test("the mirror's heardSecondsAgo grows while its primary's walsender is frozen, and falls when it runs again", async () => {
    const [{ pid }] = await pair.query<{ pid: number }>(primary, `SELECT pid FROM pg_stat_replication WHERE application_name = 'fts_mirror_dbid_${mirror.dbid}'`);
    // An idle walsender pings its mirror every wal_sender_timeout / 2 (3 s): past that, the mirror has not heard from it.
    process.kill(pid, 'SIGSTOP');
    try {
      await waitFor('the mirror to have heard nothing for 3.5 s', async () => {
        const r = await pair.control.walReceiver(mirror);
        return r.heardSecondsAgo! > 3.5 ? r : undefined;
      }, 15_000, 200);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor('the mirror to hear from its primary again', async () => {
      const r = await pair.control.walReceiver(mirror);
      return r.state === 'streaming' && r.heardSecondsAgo! < 3.5 ? r : undefined;
    }, 30_000, 200);
    await pair.waitForStreaming(primary, mirror, true);
  });

  test('probeAll keeps the input order and reports each primary its own mirror from the catalog rows', async () => {
    const results = await pair.probe.probeAll([mirror, primary], pair.settings, pair.rows);
    expect(results.map((r) => r.dbid)).toEqual([mirror.dbid, primary.dbid]);
    expect(expectAnswer(results[1]).mirror.state).toBe('streaming');
  });

  test('a port that accepts TCP but never answers times out instead of hanging', async () => {
    blackhole = createServer((socket) => void blackholeSockets.push(socket));
    const port = await freePort();
    await new Promise<void>((resolve) => blackhole!.listen(port, '127.0.0.1', resolve));
    const silent: SegmentRow = { ...primary, dbid: 50, port };
    const r = expectFailure(await pair.probe.probe(silent, { ...pair.settings, probeTimeoutSeconds: 0.5, probeRetries: 0 }));
    expect(r.kind).toBe('timeout');
    expect(r.attempts).toBe(1);
    expect(blackholeSockets.length).toBeGreaterThanOrEqual(1);
  });

  test('wrong credentials fail as authentication at once (no retries) and the password is not reported', async () => {
    await pair.query(primary, `CREATE ROLE ${AUTH_ROLE} LOGIN PASSWORD '${RIGHT_PASSWORD}'`);
    const probe = new PgSegmentProbe({ credentials: () => ({ user: AUTH_ROLE, password: WRONG_PASSWORD }) });
    const r = expectFailure(await probe.probe(primary, { ...pair.settings, probeRetries: 3 }));
    expect(r.kind).toBe('authentication');
    expect(r.attempts).toBe(1);
    expect(r.message).not.toContain(WRONG_PASSWORD);
  });

  test('a role without the documented privileges is misconfigured (never a failover), not a failed disk check; with them it probes', async () => {
    const probe = new PgSegmentProbe({ credentials: () => ({ user: AUTH_ROLE, password: RIGHT_PASSWORD }) });
    const denied = expectFailure(await probe.probe(primary, { ...pair.settings, probeRetries: 0 }, mirror));
    expect(denied.kind).toBe('authentication');
    expect(denied.message).toMatch(/permission denied/);
    await pair.query(primary, `GRANT EXECUTE ON FUNCTION pg_stat_file(text) TO ${AUTH_ROLE}`);
    await pair.query(primary, `GRANT pg_read_all_stats TO ${AUTH_ROLE}`);
    const r = expectAnswer(await probe.probe(primary, pair.settings, mirror));
    expect(r.mirror.state).toBe('streaming');
    expect(r.mirror.syncState).toBe('sync');
  });

  test('classifyProbeError tells the PostgreSQL refusal reasons apart', () => {
    const pgError = (code: string, message: string, detail?: string): Error => Object.assign(new Error(message), { code, detail });
    expect(classifyProbeError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })).kind).toBe('refused');
    expect(classifyProbeError(pgError('28P01', 'password authentication failed for user "x"')).kind).toBe('authentication');
    expect(classifyProbeError(pgError('28000', 'no pg_hba.conf entry for host')).kind).toBe('authentication');
    expect(classifyProbeError(pgError('57P03', 'the database system is starting up')).kind).toBe('starting-up');
    expect(classifyProbeError(pgError('57P03', 'the database system is shutting down')).kind).toBe('starting-up');
    expect(classifyProbeError(pgError('57P03', 'the database system is in recovery mode')).kind).toBe('in-recovery');
    expect(classifyProbeError(pgError('57P03', 'the database system is not yet accepting connections', 'last replayed record at 0/3000148'))).toEqual({
      kind: 'in-recovery',
      message: 'the database system is not yet accepting connections',
      recoveryLsn: '0/3000148',
    });
    expect(classifyProbeError(pgError('57014', 'canceling statement due to statement timeout')).kind).toBe('timeout');
    expect(classifyProbeError(pgError('58P01', 'could not stat file "pg_wal": No such file or directory')).kind).toBe('check-failed');
    expect(classifyProbeError(pgError('42501', 'permission denied for function pg_stat_file')).kind).toBe('authentication');
    expect(classifyProbeError(pgError('XX000', 'something else')).kind).toBe('error');
    expect(classifyProbeError(pgError('53300', 'sorry, too many clients already')).kind).toBe('too-many-connections');
    expect(classifyProbeError(pgError('53300', 'remaining connection slots are reserved for non-replication superuser connections')).kind).toBe('too-many-connections');
    expect(classifyProbeError(new WrongInstanceError('the instance at 127.0.0.1:1 is fts.dbid 3, not dbid 2'))).toEqual({
      kind: 'wrong-instance',
      message: 'wrong instance: the instance at 127.0.0.1:1 is fts.dbid 3, not dbid 2',
    });
  });

  test('classifyWriteError: an I/O error or a write that does not finish is the disk; a lost connection is classified as usual', () => {
    const pgError = (code: string, message: string): Error => Object.assign(new Error(message), { code });
    expect(classifyWriteError(pgError('53100', 'could not extend file "base/5/16390": No space left on device'))).toMatchObject({ kind: 'disk', diskError: 'io' });
    expect(classifyWriteError(pgError('58030', 'could not write to file "pg_wal/xlogtemp.123": Input/output error'))).toMatchObject({ kind: 'disk', diskError: 'io' });
    expect(classifyWriteError(pgError('42501', 'could not open file "base/5/16390": Permission denied'))).toMatchObject({ kind: 'disk', diskError: 'io' });
    expect(classifyWriteError(pgError('57014', 'canceling statement due to statement timeout'))).toMatchObject({ kind: 'disk', diskError: 'timeout' });
    expect(classifyWriteError(new SegmentTimeoutError('dbid 2 did not answer within 1000 ms', 1000))).toMatchObject({ kind: 'disk', diskError: 'timeout' });
    // Not the disk (privileges and configuration are answered as alive before this is asked).
    expect(classifyWriteError(pgError('42501', 'permission denied for table fts_heartbeat'))?.kind).toBe('error');
    expect(classifyWriteError(pgError('25006', 'cannot execute INSERT in a read-only transaction'))?.kind).toBe('error');
    // The instance went away (or crashed) while writing: classified like any other failure.
    expect(classifyWriteError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBeUndefined();
    expect(classifyWriteError(new Error('Connection terminated unexpectedly'))).toBeUndefined();
    expect(classifyWriteError(pgError('57P02', 'terminating connection because of crash of another server process'))).toBeUndefined();
    expect(classifyWriteError(pgError('08006', 'connection failure'))).toBeUndefined();
  });

  test('settingMs converts pg_settings time values to milliseconds', () => {
    expect(settingMs('6000', 'ms')).toBe(6000);
    expect(settingMs('60', 's')).toBe(60_000);
    expect(settingMs('2', 'min')).toBe(120_000);
    expect(settingMs('0', 'ms')).toBe(0);
    expect(settingMs('0', null)).toBe(0);
    expect(settingMs('8', '8kB')).toBeUndefined();
    expect(settingMs(null, 'ms')).toBeUndefined();
  });

  test('mapLimit never runs more than the limit at once and keeps the order', async () => {
    let inFlight = 0;
    let most = 0;
    const out = await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 5 * (8 - n)));
      inFlight -= 1;
      return n * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(most).toBe(3);
  });
});

describe('PgSegmentControl', () => {
  test('setSyncRep on without a mirror is refused', async () => {
    await expect(pair.control.setSyncRep(primary, undefined, true)).rejects.toBeInstanceOf(ValidationError);
  });

  test('ensureSlot is idempotent', async () => {
    await pair.control.ensureSlot(primary, 77);
    await pair.control.ensureSlot(primary, 77);
    const slots = await pair.query<{ n: string }>(primary, `SELECT count(*)::text AS n FROM pg_replication_slots WHERE slot_name = 'fts_mirror_dbid_77'`);
    expect(slots[0].n).toBe('1');
    await pair.query(primary, `SELECT pg_drop_replication_slot('fts_mirror_dbid_77')`);
  });

  test('setSyncRep asks its guard last: a caller whose lease lapsed changes nothing', async () => {
    const before = (await pair.query<{ v: string }>(primary, `SELECT current_setting('synchronous_standby_names') AS v`))[0].v;
    await expect(pair.control.setSyncRep(primary, mirror, false, () => false)).rejects.toBeInstanceOf(NotLeaseHolderError);
    expect((await pair.query<{ v: string }>(primary, `SELECT current_setting('synchronous_standby_names') AS v`))[0].v).toBe(before);
    await pair.control.setSyncRep(primary, mirror, before !== '', () => true);
  });

  test('with sync rep on and the mirror stopped a write blocks until the timeout; with sync rep off it commits', async () => {
    await pair.host.stop(mirror, 'fast');
    expect(isRunning(mirror.datadir)).toBe(false);
    const blocked = pair.control.verifyWritable(primary, 1000);
    await expect(blocked).rejects.toBeInstanceOf(NotWritableError);
    await expect(blocked).rejects.toThrow(/synchronous standby.*committed locally/);
    // The waiting commit was cancelled, not abandoned: no backend is left holding a connection slot.
    const waiting = await pair.query<{ n: string }>(primary, `SELECT count(*)::text AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'`);
    expect(waiting[0].n).toBe('0');

    const r = expectAnswer(await pair.probe.probe(primary, pair.settings, mirror));
    expect(r.mirror.state).toBe('absent');
    expect(r.syncRepOn).toBe(true);
    // The probe's heartbeat commits locally: it never waits for the absent synchronous standby.
    const written = expectAnswer(await pair.probe.probe(primary, { ...pair.settings, probeRetries: 0 }, mirror, { writeCheck: true }));
    expect(written.wrote).toBe(true);
    expect(written.syncRepOn).toBe(true);

    await pair.control.setSyncRep(primary, mirror, false);
    await pair.control.verifyWritable(primary, 5000);
    expect(expectAnswer(await pair.probe.probe(primary, pair.settings, mirror)).syncRepOn).toBe(false);

    // Back to a synchronized pair for the next test.
    await pair.host.start(mirror);
    await pair.waitForStreaming(primary, mirror, false);
    await pair.control.setSyncRep(primary, mirror, true);
    await pair.waitForStreaming(primary, mirror, true);
    await pair.control.verifyWritable(primary, 5000);
  });
});

describe('identity', () => {
  test('a row whose port reaches the other instance of the pair is wrong-instance at once; control calls on it do nothing', async () => {
    const dbid2AtMirror: SegmentRow = { ...primary, port: mirror.port };
    const r = expectFailure(await pair.probe.probe(dbid2AtMirror, { ...pair.settings, probeRetries: 3 }, mirror, { writeCheck: true }));
    expect(r.kind).toBe('wrong-instance');
    expect(r.attempts).toBe(1);
    expect(r.message).toMatch(/fts\.dbid 3, not dbid 2/);

    await expect(pair.control.promote(dbid2AtMirror, 5000)).rejects.toBeInstanceOf(WrongInstanceError);
    await expect(pair.control.ensureSlot(dbid2AtMirror, 50)).rejects.toBeInstanceOf(WrongInstanceError);
    await expect(pair.control.walReceiver(dbid2AtMirror)).rejects.toBeInstanceOf(WrongInstanceError);
    await expect(pair.control.verifyWritable(dbid2AtMirror, 1000)).rejects.toBeInstanceOf(WrongInstanceError);
    // The mirror was not promoted, and still streams in sync.
    expect((await pair.query<{ r: boolean }>(mirror, 'SELECT pg_is_in_recovery() AS r'))[0].r).toBe(true);
    await pair.waitForStreaming(primary, mirror, true);

    const dbid3AtPrimary: SegmentRow = { ...mirror, role: 'p', port: primary.port };
    const writesBefore = await writeCheckRows(primary);
    await expect(pair.control.setSyncRep(dbid3AtPrimary, undefined, false)).rejects.toThrow(WrongInstanceError);
    await expect(pair.control.setSyncRep(dbid3AtPrimary, primary, true)).rejects.toThrow(/fts\.dbid 2, not dbid 3; nothing was done/);
    await expect(pair.control.promote(dbid3AtPrimary, 5000)).rejects.toBeInstanceOf(WrongInstanceError);
    await expect(pair.control.ensureSlot(dbid3AtPrimary, 51)).rejects.toBeInstanceOf(WrongInstanceError);
    await expect(pair.control.verifyWritable(dbid3AtPrimary, 1000)).rejects.toBeInstanceOf(WrongInstanceError);
    // The primary keeps its synchronous standby, got no slot and no write-check row.
    expect((await pair.query<{ v: string }>(primary, `SELECT current_setting('synchronous_standby_names') AS v`))[0].v).toBe(`fts_mirror_dbid_${mirror.dbid}`);
    expect((await pair.query(primary, `SELECT 1 FROM pg_replication_slots WHERE slot_name = 'fts_mirror_dbid_51'`)).length).toBe(0);
    expect(await writeCheckRows(primary)).toBe(writesBefore);
  });

  test('the content and, when the row has one, the system identifier must match too', async () => {
    const sysid = expectAnswer(await pair.probe.probe(primary, pair.settings)).systemIdentifier!;
    const otherContent = expectFailure(await pair.probe.probe({ ...primary, content: 1 }, pair.settings));
    expect(otherContent.kind).toBe('wrong-instance');
    expect(otherContent.message).toMatch(/fts\.content 0, not content 1/);
    const otherSystem = expectFailure(await pair.probe.probe({ ...primary, systemIdentifier: '12345' }, pair.settings));
    expect(otherSystem.kind).toBe('wrong-instance');
    expect(otherSystem.message).toMatch(new RegExp(`system identifier ${sysid}, not 12345`));
    await expect(pair.control.setSyncRep({ ...primary, systemIdentifier: '12345' }, mirror, false)).rejects.toBeInstanceOf(WrongInstanceError);
    expect(expectAnswer(await pair.probe.probe({ ...primary, systemIdentifier: sysid }, pair.settings)).systemIdentifier).toBe(sysid);
    expect(expectAnswer(await pair.probe.probe({ ...mirror, systemIdentifier: sysid }, pair.settings)).inRecovery).toBe(true);
    await pair.control.walReceiver({ ...mirror, systemIdentifier: sysid });
  });

  test('identityMismatch: an instance without fts.dbid or fts.content is never taken for the row', () => {
    const found = { fts_dbid: '2', fts_content: '0', system_identifier: '7' };
    expect(identityMismatch(primary, found)).toBeUndefined();
    expect(identityMismatch(primary, { ...found, fts_dbid: null })).toMatch(/has no fts\.dbid setting/);
    expect(identityMismatch(primary, { ...found, fts_dbid: '' })).toMatch(/has no fts\.dbid setting/);
    expect(identityMismatch(primary, { ...found, fts_dbid: 'two' })).toMatch(/is fts\.dbid two, not dbid 2/);
    expect(identityMismatch(primary, { ...found, fts_content: null })).toMatch(/has no fts\.content setting/);
    expect(identityMismatch({ ...primary, systemIdentifier: '7' }, found)).toBeUndefined();
    expect(identityMismatch({ ...primary, systemIdentifier: '8' }, found)).toMatch(/system identifier 7, not 8/);
  });
});

describe('write check', () => {
  test('a primary commits its heartbeat row; a standby is answered but never written', async () => {
    const before = new Date(Date.now() - 1000);
    const r = expectAnswer(await pair.probe.probe(primary, pair.settings, mirror, { writeCheck: true }));
    expect(r.wrote).toBe(true);
    const rows = await pair.query<{ dbid: number; at: Date }>(primary, `SELECT dbid, at FROM ${HEARTBEAT_TABLE}`);
    expect(rows.map((x) => x.dbid)).toEqual([primary.dbid]);
    expect(rows[0].at.getTime()).toBeGreaterThanOrEqual(before.getTime());

    const m = expectAnswer(await pair.probe.probe(mirror, pair.settings, undefined, { writeCheck: true }));
    expect(m.inRecovery).toBe(true);
    expect(m.wrote).toBe(false);
    // Only the primary's row, replicated: nothing was written for the mirror's dbid anywhere.
    for (const s of [primary, mirror]) {
      await waitFor(`the heartbeat table on dbid ${s.dbid}`, async () => {
        const ids = (await pair.query<{ dbid: number }>(s, `SELECT dbid FROM ${HEARTBEAT_TABLE}`)).map((x) => x.dbid);
        return ids.length === 1 ? ids : undefined;
      });
      expect((await pair.query(s, `SELECT 1 FROM ${HEARTBEAT_TABLE} WHERE dbid = $1`, [mirror.dbid])).length).toBe(0);
    }
  });
});

describe('a second instance (solo): another database cluster, a small connection table', () => {
  const LIMITED_ROLE = 'fts_limited_prober';
  let solo: PgPair;
  let soloRow: SegmentRow;

  beforeAll(async () => {
    // Same dbid and content as the pair's primary; max_connections 5 with the default
    // superuser_reserved_connections (3) leaves 2 slots for other roles.
    solo = await createPair({ withMirror: false, instanceConfig: { maxConnections: 5 } });
    soloRow = solo.primary;
    await solo.query(soloRow, `CREATE ROLE ${LIMITED_ROLE} LOGIN`);
    await solo.query(soloRow, `GRANT pg_read_all_stats TO ${LIMITED_ROLE}`);
    await solo.query(soloRow, `GRANT EXECUTE ON FUNCTION pg_stat_file(text) TO ${LIMITED_ROLE}`);
  }, 120_000);
  afterAll(async () => solo?.destroy(), 60_000);

  const limitedProbe = () => new PgSegmentProbe({ credentials: () => ({ user: LIMITED_ROLE }) });

  test('same dbid and content but another system identifier: only a row that knows its identifier tells them apart', async () => {
    const pairSysid = expectAnswer(await pair.probe.probe(primary, pair.settings)).systemIdentifier!;
    const soloSysid = expectAnswer(await solo.probe.probe(soloRow, solo.settings)).systemIdentifier!;
    expect(soloSysid).not.toBe(pairSysid);
    const primaryRowAtSolo: SegmentRow = { ...primary, port: soloRow.port };
    expect(expectAnswer(await pair.probe.probe(primaryRowAtSolo, pair.settings)).systemIdentifier).toBe(soloSysid);
    const r = expectFailure(await pair.probe.probe({ ...primaryRowAtSolo, systemIdentifier: pairSysid }, { ...pair.settings, probeRetries: 2 }, undefined, { writeCheck: true }));
    expect(r.kind).toBe('wrong-instance');
    expect(r.attempts).toBe(1);
    expect(r.message).toContain(`system identifier ${soloSysid}, not ${pairSysid}`);
    await expect(pair.control.verifyWritable({ ...primaryRowAtSolo, systemIdentifier: pairSysid }, 1000)).rejects.toBeInstanceOf(WrongInstanceError);
    // Nothing was written there, neither by the probe nor by verifyWritable.
    expect((await solo.query(soloRow, `SELECT to_regclass('${HEARTBEAT_TABLE}') IS NULL AND to_regclass('fts_write_check') IS NULL AS none`))[0].none).toBe(true);
  });

  test('a role without rights on the heartbeat table answers alive, not written, with the reason (never a disk failure); with them, it writes', async () => {
    expectAnswer(await solo.probe.probe(soloRow, solo.settings, undefined, { writeCheck: true })); // creates the table as the superuser
    const denied = expectAnswer(await limitedProbe().probe(soloRow, { ...solo.settings, probeRetries: 0 }, undefined, { writeCheck: true }));
    expect(denied).toMatchObject({ wrote: false, writeError: expect.stringMatching(/permission denied for table fts_heartbeat/) });
    await solo.query(soloRow, `GRANT SELECT, INSERT, UPDATE ON ${HEARTBEAT_TABLE} TO ${LIMITED_ROLE}`);
    expect(expectAnswer(await limitedProbe().probe(soloRow, solo.settings, undefined, { writeCheck: true })).wrote).toBe(true);
  });

  test('a heartbeat table whose file the server cannot open is a disk failure; restored, it writes again', async () => {
    // A new, empty table: the insert must extend its file, which the server must open.
    await solo.query(soloRow, `DROP TABLE ${HEARTBEAT_TABLE}`);
    await solo.query(soloRow, `CREATE TABLE ${HEARTBEAT_TABLE} (dbid int PRIMARY KEY, at timestamptz NOT NULL)`);
    const [{ path }] = await solo.query<{ path: string }>(soloRow, `SELECT pg_relation_filepath('${HEARTBEAT_TABLE}') AS path`);
    const file = join(soloRow.datadir, path);
    await chmod(file, 0o000);
    try {
      const r = expectFailure(await solo.probe.probe(soloRow, { ...solo.settings, probeRetries: 1 }, undefined, { writeCheck: true }));
      expect(r.kind).toBe('disk');
      expect(r.attempts).toBe(2);
      expect(r.message).toMatch(/heartbeat write failed: could not open file .*Permission denied/);
      // Without the write check the same instance answers: only writes fail.
      expectAnswer(await solo.probe.probe(soloRow, solo.settings));
    } finally {
      await chmod(file, 0o600);
    }
    expect(expectAnswer(await solo.probe.probe(soloRow, solo.settings, undefined, { writeCheck: true })).wrote).toBe(true);
  });

  test('a session holding the heartbeat row (a lock, not the disk): alive, not written, never a disk failure', async () => {
    const holder = new Client({ host: soloRow.address, port: soloRow.port, user: 'postgres', database: 'postgres' });
    holder.on('error', () => undefined);
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT * FROM ${HEARTBEAT_TABLE} WHERE dbid = $1 FOR UPDATE`, [soloRow.dbid]);
      const r = expectAnswer(await solo.probe.probe(soloRow, { ...solo.settings, probeTimeoutSeconds: 1, probeRetries: 0 }, undefined, { writeCheck: true }));
      expect(r).toMatchObject({ wrote: false, writeError: expect.stringMatching(/heartbeat row is locked by another session/) });
      expect(r.durationMs).toBeLessThan(3000);
    } finally {
      await holder.end().catch(() => undefined);
    }
    expect(expectAnswer(await solo.probe.probe(soloRow, solo.settings, undefined, { writeCheck: true })).wrote).toBe(true);
  });

  test('wal_sender_timeout is reported in milliseconds whatever unit it was set in', async () => {
    try {
      for (const [value, ms] of [['2min', 120_000], ['0', 0], ['1500ms', 1500]] as const) {
        await solo.query(soloRow, `ALTER SYSTEM SET wal_sender_timeout = '${value}'`);
        await solo.query(soloRow, 'SELECT pg_reload_conf()');
        await waitFor(`wal_sender_timeout ${value}`, async () => {
          const r = expectAnswer(await solo.probe.probe(soloRow, solo.settings));
          return r.walSenderTimeoutMs === ms ? r : undefined;
        }, 10_000);
      }
    } finally {
      await solo.query(soloRow, 'ALTER SYSTEM RESET wal_sender_timeout');
      await solo.query(soloRow, 'SELECT pg_reload_conf()');
    }
  });

  test('a full connection table is too-many-connections at once for a role without reserved slots; a superuser prober still gets in', async () => {
    const clients: Client[] = [];
    try {
      // Only this test's sessions may hold slots (backends of closed sessions exit asynchronously).
      await waitFor('no other client sessions on solo', async () => {
        const [{ n }] = await solo.query<{ n: number }>(soloRow, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`);
        return n === 0 ? n : undefined;
      });
      // Fill every slot but the reserved ones with sessions of the limited role.
      let refusal: unknown;
      for (let i = 0; i < 10 && refusal === undefined; i++) {
        const c = new Client({ host: soloRow.address, port: soloRow.port, user: LIMITED_ROLE, database: 'postgres' });
        c.on('error', () => undefined);
        try {
          await c.connect();
          clients.push(c);
        } catch (e) {
          refusal = e;
        }
      }
      expect((refusal as { code?: string }).code).toBe('53300');
      expect(clients.length).toBe(2);

      const r = expectFailure(await limitedProbe().probe(soloRow, { ...solo.settings, probeRetries: 3 }));
      expect(r.kind).toBe('too-many-connections');
      expect(r.attempts).toBe(1);
      expect(r.message).toMatch(/reserved for non-replication superuser connections/);
      // superuser_reserved_connections keeps the superuser prober's slot free.
      const su = expectAnswer(await solo.probe.probe(soloRow, solo.settings, undefined, { writeCheck: true }));
      expect(su.wrote).toBe(true);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
    expectAnswer(await limitedProbe().probe(soloRow, solo.settings));
  });

  test('a crash reset (a backend killed) moves initializedAt forward; startedAt stays', async () => {
    const before = expectAnswer(await solo.probe.probe(soloRow, solo.settings));
    expect(before.initializedAt).toBeDefined();
    await crashBackend(soloRow);
    const after = await waitFor('solo to accept connections after its crash reset', async () => {
      const r = await solo.probe.probe(soloRow, { ...solo.settings, probeRetries: 0 });
      return r.ok && !r.inRecovery && r.initializedAt !== before.initializedAt ? r : undefined;
    }, 60_000, 200);
    expect(Date.parse(after.initializedAt!)).toBeGreaterThan(Date.parse(before.initializedAt!));
    expect(after.startedAt).toBe(before.startedAt);
  });

  test('an idle checkpointer has applied the configuration; one caught busy in an immediate checkpoint has not', async () => {
    expect(expectAnswer(await solo.probe.probe(soloRow, solo.settings))).toMatchObject({ syncRepSettled: true });
    // Dirty many buffers, then catch the checkpointer writing them for CHECKPOINT and freeze it there.
    await solo.query(soloRow, 'CREATE TABLE IF NOT EXISTS settle_fill (id int, pad text)');
    await solo.query(soloRow, "INSERT INTO settle_fill SELECT g, repeat('x', 500) FROM generate_series(1, 150000) g");
    const [{ pid }] = await solo.query<{ pid: number }>(soloRow, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
    const checkpoint = solo.query(soloRow, 'CHECKPOINT').catch(() => undefined);
    let frozen = false;
    try {
      await waitFor('the checkpointer busy in the checkpoint', async () => {
        const [{ busy }] = await solo.query<{ busy: boolean }>(soloRow, "SELECT wait_event IS DISTINCT FROM 'CheckpointerMain' AS busy FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
        if (!busy) return undefined;
        process.kill(pid, 'SIGSTOP');
        frozen = true;
        const [{ still }] = await solo.query<{ still: boolean }>(soloRow, "SELECT wait_event IS DISTINCT FROM 'CheckpointerMain' AND wait_event IS DISTINCT FROM 'CheckpointWriteDelay' AS still FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
        if (still) return true;
        process.kill(pid, 'SIGCONT'); // caught it between two states: try again
        frozen = false;
        return undefined;
      }, 30_000, 1);
      expect(expectAnswer(await solo.probe.probe(soloRow, solo.settings))).toMatchObject({ syncRepSettled: false });
    } finally {
      if (frozen) process.kill(pid, 'SIGCONT');
      await checkpoint;
      await solo.query(soloRow, 'DROP TABLE IF EXISTS settle_fill');
    }
    await waitFor('the checkpointer idle again', async () => {
      const r = expectAnswer(await solo.probe.probe(soloRow, solo.settings));
      return r.syncRepSettled ? true : undefined;
    }, 30_000);
  });
});

/** Rows of verifyWritable's table on an instance (0 when it does not exist yet). */
async function writeCheckRows(segment: SegmentRow): Promise<number> {
  const [{ exists }] = await pair.query<{ exists: boolean }>(segment, `SELECT to_regclass('fts_write_check') IS NOT NULL AS exists`);
  if (!exists) return 0;
  return (await pair.query<{ n: number }>(segment, 'SELECT count(*)::int AS n FROM fts_write_check'))[0].n;
}

describe('failover and incremental recovery', () => {
  test('killed primary is refused, the mirror is promoted (twice), the old primary is rewound and streams again', async () => {
    await pair.query(primary, `CREATE TABLE failover_marks (id int PRIMARY KEY, phase text NOT NULL)`);
    await pair.query(primary, `INSERT INTO failover_marks VALUES (1, 'before')`);

    expect(await killInstance(primary.datadir)).toBe(true);
    expect(isRunning(primary.datadir)).toBe(false);
    const failed = expectFailure(await pair.probe.probe(primary, { ...pair.settings, probeRetries: 2, probeRetryDelaySeconds: 0.1 }));
    expect(failed.kind).toBe('refused');
    expect(failed.attempts).toBe(3);

    await pair.control.promote(mirror, 10_000);
    await pair.control.promote(mirror, 10_000); // already a primary: only the sync rep step, no error
    const newPrimary: SegmentRow = { ...mirror, role: 'p', mode: 'n' };
    const promoted = expectAnswer(await pair.probe.probe(newPrimary, pair.settings));
    expect(promoted.inRecovery).toBe(false);
    expect(promoted.syncRepOn).toBe(false);
    await pair.control.verifyWritable(newPrimary, 5000);
    await pair.query(newPrimary, `INSERT INTO failover_marks SELECT g, 'after' FROM generate_series(2, 101) AS g`);

    const oldPrimary: SegmentRow = { ...primary, role: 'm', status: 'd', mode: 'n' };
    await pair.host.rebuildAsMirror(oldPrimary, newPrimary, 'rewind');
    expect(isRunning(oldPrimary.datadir)).toBe(true);
    await pair.control.setSyncRep(newPrimary, oldPrimary, true);
    const streaming = await pair.waitForStreaming(newPrimary, oldPrimary, true);
    expect(streaming.mirror.syncState).toBe('sync');
    expect(streaming.syncRepOn).toBe(true);

    const receiver = await pair.control.walReceiver(oldPrimary);
    expect(receiver.inRecovery).toBe(true);
    expect(receiver.senderPort).toBe(newPrimary.port);

    // Rows written after the promotion reached the rewound mirror.
    const rows = await waitFor('rows written after promotion on the rewound mirror', async () => {
      const r = await pair.query<{ n: string }>(oldPrimary, `SELECT count(*)::text AS n FROM failover_marks WHERE phase = 'after'`);
      return r[0].n === '100' ? r[0].n : undefined;
    }, 15_000);
    expect(rows).toBe('100');
    const inRecovery = await pair.query<{ r: boolean }>(oldPrimary, 'SELECT pg_is_in_recovery() AS r');
    expect(inRecovery[0].r).toBe(true);
    // The mirror keeps no slot from its time as a primary (it would pin WAL forever).
    const slots = await pair.query<{ n: string }>(oldPrimary, 'SELECT count(*)::text AS n FROM pg_replication_slots');
    expect(slots[0].n).toBe('0');
  });
});
