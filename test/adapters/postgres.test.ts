/**
 * PostgreSQL adapters against real instances: one primary/mirror pair (sync rep on),
 * reused by every test in order; the last test fails the primary over and rewinds it.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { NotWritableError, ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { ProbeFailure, ProbeAnswer } from '../../lambdas/core/probe';
import { isRunning, killInstance } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { PgSegmentProbe, classifyProbeError, mapLimit } from '../../lambdas/adapters/postgres/probe';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';

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

  test('a role without the documented privileges is an error, not a failed disk check; with them it probes', async () => {
    const probe = new PgSegmentProbe({ credentials: () => ({ user: AUTH_ROLE, password: RIGHT_PASSWORD }) });
    const denied = expectFailure(await probe.probe(primary, { ...pair.settings, probeRetries: 0 }, mirror));
    expect(denied.kind).toBe('error');
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
    expect(classifyProbeError(pgError('42501', 'permission denied for function pg_stat_file')).kind).toBe('error');
    expect(classifyProbeError(pgError('XX000', 'something else')).kind).toBe('error');
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
