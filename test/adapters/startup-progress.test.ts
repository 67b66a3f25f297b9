/** Crash-recovery progress from the startup process's title, on a real PostgreSQL primary. */
import { compareLsn } from '../../lambdas/core/model';
import { parseSettings } from '../../lambdas/core/settings';
import { PgSegmentProbe } from '../../lambdas/adapters/postgres/probe';
import { trustCredentials } from '../../lambdas/adapters/postgres/connection';
import { localRecoveryProgress, walFileStartLsn } from '../../lambdas/adapters/local/startup-progress';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';
import { crashBackend, throttleRecovery, writeWalSinceCheckpoint } from '../../cli/faults/slow-recovery';

jest.setTimeout(120_000);

test.each([
  ['000000010000000000000003', '0/3000000'],
  ['000000010000000000000000', '0/0'],
  ['0000000200000001000000FF', '1/FF000000'],
  ['00000001000000A3000000A2', 'A3/A2000000'],
])('WAL file %s starts at %s', (file, lsn) => {
  expect(walFileStartLsn(file)).toBe(lsn);
});

test('a name that is not a WAL file has no LSN', () => {
  expect(walFileStartLsn('00000001.history')).toBeUndefined();
  expect(walFileStartLsn('0000000100000000000000GG')).toBeUndefined();
});

describe('a primary in crash recovery', () => {
  let pair: PgPair;
  beforeAll(async () => {
    pair = await createPair({ withMirror: false });
  });
  afterAll(async () => pair?.destroy());

  test('probes fail as starting up or in recovery, carry an advancing LSN, and answer once recovery is over', async () => {
    const probe = new PgSegmentProbe({ credentials: trustCredentials('postgres'), recoveryProgress: localRecoveryProgress });
    const settings = parseSettings({ probeTimeoutSeconds: 1, probeRetries: 0 });
    expect(await localRecoveryProgress(pair.primary)).toBeUndefined(); // running normally
    await writeWalSinceCheckpoint(pair.primary, 160);
    await crashBackend(pair.primary);
    const throttle = throttleRecovery(pair.primary.datadir, 10, 90);
    const lsns: string[] = [];
    try {
      await waitFor('two distinct recovery LSNs', async () => {
        const r = await probe.probe(pair.primary, settings);
        if (r.ok) throw new Error('recovery ended before two LSNs were seen');
        expect(['starting-up', 'in-recovery']).toContain(r.kind);
        if (r.recoveryLsn && r.recoveryLsn !== lsns.at(-1)) lsns.push(r.recoveryLsn);
        return lsns.length >= 2 ? true : undefined;
      }, 60_000, 200);
    } finally {
      await throttle.stop();
    }
    expect(compareLsn(lsns[1], lsns[0])).toBeGreaterThan(0);
    await waitFor('the primary to answer again', async () => {
      const r = await probe.probe(pair.primary, settings);
      return r.ok && !r.inRecovery ? r : undefined;
    }, 60_000, 200);
    expect(await localRecoveryProgress(pair.primary)).toBeUndefined();
  });
});
