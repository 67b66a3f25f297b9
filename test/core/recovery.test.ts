/**
 * gprecoverseg's building blocks: the `-i` file format, the recovery plan (in place,
 * `-F`, `-i` new locations, `-p` spare host, placement checks) and the rebalance plan
 * (`-r` with the replay-lag guard), the lock per content they respect, and the
 * transitions they need.
 */
import { parseChange, validateChange } from '../../lambdas/core/catalog-change';
import { ValidationError } from '../../lambdas/core/errors';
import type { ClusterSnapshot, PendingOperation, SegmentRow } from '../../lambdas/core/model';
import { emptyMemory } from '../../lambdas/core/model';
import {
  normalizePath,
  parseRecoverConfig,
  planRecovery,
  rebalancePlan,
  relocationChange,
  type RecoveryRequest,
} from '../../lambdas/core/recovery';
import { TRANSITIONS, findTransition, rowState, type TransitionActor } from '../../lambdas/core/transitions';
import { cluster } from './fixtures';

/** The ValidationError a call throws (fails the test when it throws nothing or something else). */
function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ValidationError) return e;
    throw e;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

/** Content 0 failed over: old primary 2 is a down mirror, mirror 4 the acting primary. */
const failedOver = () => cluster({ 2: { role: 'm', status: 'd', mode: 'n' }, 4: { role: 'p', mode: 'n' } });
const row = (snapshot: ClusterSnapshot, dbid: number): SegmentRow => snapshot.segments.find((r) => r.dbid === dbid)!;

/**
 * Three hosts, group mirroring, EC2 placement: sdw1 (us-east-1a, partition 1),
 * sdw2 (us-east-1b, partition 2), sdw3 (us-east-1c, partition 3); addresses are IPs.
 * Content c: primary on sdw(c+1) port 6000, mirror on the next host port 7000.
 */
function threeHosts(overrides: Partial<Record<number, Partial<SegmentRow>>> = {}): ClusterSnapshot {
  const hosts = [1, 2, 3].map((n) => ({ hostname: `sdw${n}`, address: `10.0.0.${n}`, availabilityZone: `us-east-1${'abc'[n - 1]}`, placementGroup: 'fts', partitionNumber: n, instanceId: `i-0${n}` }));
  const segments: SegmentRow[] = [];
  for (let c = 0; c < 3; c++) {
    const p = hosts[c];
    const m = hosts[(c + 1) % 3];
    segments.push({ dbid: 2 + c, content: c, role: 'p', preferredRole: 'p', mode: 's', status: 'u', port: 6000, datadir: `/data/primary/gpseg${c}`, ...p });
    segments.push({ dbid: 5 + c, content: c, role: 'm', preferredRole: 'm', mode: 's', status: 'u', port: 7000, datadir: `/data/mirror/gpseg${c}`, ...m });
  }
  return {
    clusterId: 'c3', version: 3, status: 'up', pendingPromotions: [], pendingFences: [], pendingOperations: [], memory: emptyMemory(),
    segments: segments.map((r) => ({ ...r, ...overrides[r.dbid] })),
  };
}
/** Mirror dbid 5 of content 0 (on sdw2) is down; its primary 2 runs on sdw1. */
const mirror5Down = () => threeHosts({ 2: { mode: 'n' }, 5: { status: 'd', mode: 'n' } });

describe('parseRecoverConfig', () => {
  it('reads in-place and move lines, skipping blanks and comments, with line numbers and normalized directories', () => {
    const text = [
      '# recover content 0 in place',
      'sdw1|6000|/data/m/gpseg0',
      '',
      '   ',
      '  # indented comment',
      'sdw2|7001|/data//m/./gpseg1/ sdw4|7001|/data/recover/../recover1/gpseg1',
      'sdw3|7002|/data/m/gpseg2\t  sdw5|7002|/data/m/gpseg2\r',
    ].join('\r\n');
    expect(parseRecoverConfig(text)).toEqual([
      { line: 2, failedAddress: 'sdw1', failedPort: 6000, failedDataDirectory: '/data/m/gpseg0' },
      { line: 6, failedAddress: 'sdw2', failedPort: 7001, failedDataDirectory: '/data/m/gpseg1', newAddress: 'sdw4', newPort: 7001, newDataDirectory: '/data/recover1/gpseg1' },
      { line: 7, failedAddress: 'sdw3', failedPort: 7002, failedDataDirectory: '/data/m/gpseg2', newAddress: 'sdw5', newPort: 7002, newDataDirectory: '/data/m/gpseg2' },
    ]);
  });

  it('keeps IPv6 addresses whole (| separates fields, not :)', () => {
    expect(parseRecoverConfig('fd00::1|7000|/data/m/gpseg0')).toEqual([{ line: 1, failedAddress: 'fd00::1', failedPort: 7000, failedDataDirectory: '/data/m/gpseg0' }]);
  });

  it.each<[string, string, RegExp]>([
    ['three groups', 'a|1|/d b|2|/e c|3|/f', /^line 1: expected the failed segment, optionally followed by its new location .* found 3 groups$/],
    ['two fields', 'sdw1|6000', /^line 1: the failed segment must be address\|port\|dataDirectory \(3 fields separated by \|\), found 2 fields in "sdw1\|6000"$/],
    ['four fields (the hostname form of the docs)', 'sdw1|sdw1|6000|/data/m/gpseg0', /^line 1: the failed segment must be .* found 4 fields/],
    ['a bad new group', 'sdw1|6000|/d sdw2|7000', /^line 1: the new segment must be address\|port\|dataDirectory/],
    ['an empty address', '|6000|/data/m/gpseg0', /^line 1: the failed address is empty$/],
    ['port 0', 'sdw1|0|/data/m/gpseg0', /^line 1: the failed port "0" is not a port \(1-65535\)$/],
    ['port 65536', 'sdw1|65536|/data/m/gpseg0', /port "65536" is not a port/],
    ['a negative port', 'sdw1|-1|/data/m/gpseg0', /port "-1" is not a port/],
    ['a port with letters', 'sdw1|6000x|/data/m/gpseg0', /port "6000x" is not a port/],
    ['a new port out of range', 'sdw1|6000|/d/x sdw2|99999|/d/y', /^line 1: the new port "99999" is not a port/],
    ['a relative directory', 'sdw1|6000|data/m/gpseg0', /^line 1: the failed data directory "data\/m\/gpseg0" is not an absolute path$/],
    ['the root directory', 'sdw1|6000|/', /^line 1: the failed data directory "\/" is the root directory$/],
    ['a directory that resolves to the root', 'sdw1|6000|/data/..', /"\/data\/\.\." is the root directory/],
    ['an empty directory', 'sdw1|6000|', /^line 1: the failed data directory is empty$/],
    ['a relative new directory', 'sdw1|6000|/d/x sdw2|7000|rel', /^line 1: the new data directory "rel" is not an absolute path$/],
  ])('refuses %s, naming the line', (_name, line, message) => {
    const error = validationError(() => parseRecoverConfig(line));
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatch(message);
    expect(error.message).toMatch(/^invalid recover config: /);
  });

  it('lists every bad line, and returns nothing for a file with one', () => {
    const error = validationError(() => parseRecoverConfig('sdw1|6000|/data/m/gpseg0\nsdw2|0|/data/m/gpseg1\n# ok\nsdw3|7000|relative'));
    expect(error.issues).toEqual([
      'line 2: the failed port "0" is not a port (1-65535)',
      'line 4: the failed data directory "relative" is not an absolute path',
    ]);
  });

  it.each<[string, string, string]>([
    ['the same failed segment twice (the port does not matter, as in Greenplum)', 'sdw1|7000|/data/m/gpseg0\n\nsdw1|7001|/data/m/gpseg0/', 'lines 1 and 3 both recover the failed segment sdw1:/data/m/gpseg0; each failed segment is recovered once'],
    ['the same target twice', 'sdw1|7000|/data/m/gpseg0 sdw9|7000|/data/x\nsdw1|7001|/data/m/gpseg1 sdw9|7001|/data/x', 'lines 1 and 2 both recover to sdw9:/data/x; a target is used once'],
    ['the same target port twice', 'sdw1|7000|/data/m/gpseg0 sdw9|7000|/data/x\nsdw1|7001|/data/m/gpseg1 sdw9|7000|/data/y', 'lines 1 and 2 both recover to port 7000 on sdw9; a target is used once'],
    ['a target recovered in place by a later line', 'sdw1|7000|/data/m/gpseg0 sdw2|7001|/data/m/gpseg1\nsdw2|7001|/data/m/gpseg1', 'lines 1 and 2 conflict: sdw2:/data/m/gpseg1 is recovered in place on line 2 and used as a recovery target on line 1'],
    ['a target recovered in place by an earlier line', 'sdw2|7001|/data/m/gpseg1\nsdw1|7000|/data/m/gpseg0 sdw2|7001|/data/m/gpseg1', 'lines 2 and 1 conflict: sdw2:/data/m/gpseg1 is recovered in place on line 1 and used as a recovery target on line 2'],
  ])('refuses %s', (_name, text, issue) => {
    expect(validationError(() => parseRecoverConfig(text)).issues).toEqual([issue]);
  });

  it('refuses a file that names no segment', () => {
    expect(validationError(() => parseRecoverConfig('# nothing\n\n')).message).toMatch(/names no segment: every line is blank or a comment/);
  });

  it('normalizes paths as os.path.normpath does', () => {
    expect(normalizePath('/data//primary/./gpseg0/')).toBe('/data/primary/gpseg0');
    expect(normalizePath('/data/a/../b')).toBe('/data/b');
    expect(normalizePath('/../data')).toBe('/data');
  });
});

describe('planRecovery: which contents, from which primary, how', () => {
  it('rebuilds the failed-over old primary in place with pg_rewind from the acting primary', () => {
    const snapshot = failedOver();
    const plan = planRecovery(snapshot, { mode: 'incremental' });
    expect(plan).toEqual({
      recoveries: [{ content: 0, failedDbid: 2, actingPrimaryDbid: 4, method: 'rewind', target: { ...row(snapshot, 2), role: 'm', status: 'u', mode: 'n' }, moved: false }],
      skipped: [],
      warnings: [],
    });
    expect(plan.recoveries[0].target.preferredRole).toBe('p'); // rebalance brings it back later
  });

  it('uses pg_basebackup in full mode (-F)', () => {
    expect(planRecovery(failedOver(), { mode: 'full' }).recoveries.map((r) => [r.failedDbid, r.method, r.moved])).toEqual([[2, 'basebackup', false]]);
  });

  it('rebuilds a mirror that went down without a failover from its primary', () => {
    const plan = planRecovery(cluster({ 4: { status: 'd', mode: 'n' }, 2: { mode: 'n' }, 5: { status: 'd', mode: 'n' }, 3: { mode: 'n' } }), { mode: 'incremental' });
    expect(plan.recoveries.map((r) => [r.content, r.failedDbid, r.actingPrimaryDbid, r.method])).toEqual([[0, 4, 2, 'rewind'], [1, 5, 3, 'rewind']]);
  });

  it('does nothing on a healthy cluster, and lists nothing', () => {
    expect(planRecovery(cluster(), { mode: 'incremental' })).toEqual({ recoveries: [], skipped: [], warnings: [] });
  });

  it.each<[string, ClusterSnapshot, RegExp]>([
    ['both down (double fault)', cluster({ 2: { status: 'd', mode: 'n' }, 4: { status: 'd', mode: 'n' } }), /^acting primary dbid 2 is down as well as mirror dbid 4 \(double fault\): no source to recover from$/],
    ['a down primary with a mirror not in sync', cluster({ 2: { status: 'd', mode: 'n' }, 4: { mode: 'n' } }), /^acting primary dbid 2 is down and mirror dbid 4 is not in sync \(double fault\): no source/],
    ['a promotion pending', { ...failedOver(), pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 7, startedAt: '2026-01-01T00:00:00.000Z' }] }, /^a promotion of dbid 4 \(replacing dbid 2\) is pending: the prober is failing it over/],
    ['a fence still owed to the down mirror', { ...failedOver(), pendingFences: [{ dbid: 2, content: 0, newPrimaryDbid: 4, since: '2026-01-01T00:00:00.000Z', reason: 'failed over to dbid 4' }] }, /^a fence is still owed to dbid 2 .*: it is fenced before it is rebuilt$/],
  ])('skips content 0 with %s, giving the reason', (_name, snapshot, reason) => {
    const plan = planRecovery(snapshot, { mode: 'incremental' });
    expect(plan.recoveries).toEqual([]);
    expect(plan.skipped).toEqual([{ content: 0, reason: expect.stringMatching(reason) }]);
  });

  it("skips the coordinator's down standby: gpinitstandby's job", () => {
    const plan = planRecovery(cluster({ 6: { status: 'd', mode: 'n' }, 1: { mode: 'n' } }), { mode: 'incremental' });
    expect(plan).toEqual({ recoveries: [], skipped: [{ content: -1, reason: expect.stringMatching(/gpinitstandby, not gprecoverseg/) }], warnings: [] });
  });

  it('recovers only the contents asked for, and says why an asked content needs nothing', () => {
    const snapshot = cluster({ 4: { status: 'd', mode: 'n' }, 2: { mode: 'n' }, 5: { status: 'd', mode: 'n' }, 3: { mode: 'n' } });
    expect(planRecovery(snapshot, { mode: 'incremental', contents: [1] }).recoveries.map((r) => r.failedDbid)).toEqual([5]);
    expect(planRecovery(failedOver(), { mode: 'incremental', contents: [1] })).toEqual({ recoveries: [], skipped: [{ content: 1, reason: 'nothing to recover: mirror dbid 5 is up' }], warnings: [] });
    expect(validationError(() => planRecovery(snapshot, { mode: 'incremental', contents: [1, 9] })).issues).toEqual(['content 9 is not in the catalog of cluster c1']);
  });

  it.each<[string, unknown, RegExp]>([
    ['an unknown mode', { mode: 'fast' }, /mode: /],
    ['an unknown key', { mode: 'full', force: true }, /Unrecognized key/],
    ['config and spareHost together', { mode: 'full', config: [{ line: 1, failedAddress: 'sdw1', failedPort: 6000, failedDataDirectory: '/data/p/gpseg0' }], spareHost: { hostname: 's', address: 's' } }, /config and spareHost exclude each other/],
    ['config and contents together', { mode: 'full', config: [{ line: 1, failedAddress: 'sdw1', failedPort: 6000, failedDataDirectory: '/data/p/gpseg0' }], contents: [0] }, /config and contents exclude each other/],
    ['an empty config', { mode: 'full', config: [] }, /config: /],
    ['a config entry with a bad port', { mode: 'full', config: [{ line: 1, failedAddress: 'sdw1', failedPort: 0, failedDataDirectory: '/d' }] }, /config\.0\.failedPort/],
    ['a config entry with half a new location', { mode: 'full', config: [{ line: 1, failedAddress: 'sdw1', failedPort: 6000, failedDataDirectory: '/d', newAddress: 'x' }] }, /newAddress, newPort and newDataDirectory go together/],
    ['config entries that conflict', { mode: 'full', config: [{ line: 1, failedAddress: 'sdw1', failedPort: 6000, failedDataDirectory: '/d' }, { line: 2, failedAddress: 'sdw1', failedPort: 6000, failedDataDirectory: '/d' }] }, /lines 1 and 2 both recover the failed segment/],
    ['a spare host without an address', { mode: 'full', spareHost: { hostname: 'spare' } }, /spareHost\.address/],
  ])('refuses a request with %s', (_name, request, message) => {
    const error = validationError(() => planRecovery(failedOver(), request as RecoveryRequest));
    expect(error.message).toMatch(/^invalid recovery request: /);
    expect(error.message).toMatch(message);
  });
});

describe('planRecovery with a recover config (-i)', () => {
  it('recovers only what the file names: in place with pg_rewind (incremental)', () => {
    const snapshot = cluster({ 4: { status: 'd', mode: 'n' }, 2: { mode: 'n' }, 5: { status: 'd', mode: 'n' }, 3: { mode: 'n' } });
    const plan = planRecovery(snapshot, { mode: 'incremental', config: parseRecoverConfig('sdw1|7000|/data/m/gpseg1/') });
    expect(plan.recoveries).toEqual([{ content: 1, failedDbid: 5, actingPrimaryDbid: 3, method: 'rewind', target: { ...row(snapshot, 5), status: 'u' }, moved: false }]);
    expect(plan.skipped).toEqual([]);
  });

  it('moves to a known host with pg_basebackup, taking its hostname and placement', () => {
    const snapshot = mirror5Down();
    const plan = planRecovery(snapshot, { mode: 'incremental', config: parseRecoverConfig('10.0.0.2|7000|/data/mirror/gpseg0 10.0.0.3|7100|/data2/mirror/gpseg0') });
    expect(plan.warnings).toEqual([]);
    expect(plan.recoveries).toEqual([
      {
        content: 0, failedDbid: 5, actingPrimaryDbid: 2, method: 'basebackup', moved: true,
        target: { ...row(snapshot, 5), status: 'u', hostname: 'sdw3', address: '10.0.0.3', port: 7100, datadir: '/data2/mirror/gpseg0', availabilityZone: 'us-east-1c', partitionNumber: 3, instanceId: 'i-03', placementGroup: 'fts' },
      },
    ]);
  });

  it('recognizes a known host by its hostname too', () => {
    const plan = planRecovery(mirror5Down(), { mode: 'full', config: parseRecoverConfig('10.0.0.2|7000|/data/mirror/gpseg0 sdw3|7100|/data2/mirror/gpseg0') });
    expect(plan.warnings).toEqual([]);
    expect(plan.recoveries[0].target).toMatchObject({ hostname: 'sdw3', address: 'sdw3', partitionNumber: 3, availabilityZone: 'us-east-1c' });
  });

  it('the failed instance\'s own address keeps it on its own host, even when other hosts share that address (one machine)', () => {
    // Every host at one address, as in local mode: the primary's host sdw1 shares it too.
    const shared = threeHosts({ 2: { mode: 'n', address: '127.0.0.1' }, 3: { address: '127.0.0.1' }, 5: { status: 'd', mode: 'n', address: '127.0.0.1' } });
    const plan = planRecovery(shared, { mode: 'incremental', config: parseRecoverConfig('127.0.0.1|7000|/data/mirror/gpseg0 127.0.0.1|7100|/data2/mirror/gpseg0') });
    expect(plan.recoveries[0].target).toMatchObject({ hostname: 'sdw2', address: '127.0.0.1', port: 7100, datadir: '/data2/mirror/gpseg0', partitionNumber: 2 });
  });

  it('refuses the data directory of another instance at the same address (hosts sharing one machine)', () => {
    const shared = threeHosts({ 2: { mode: 'n', address: '127.0.0.1' }, 3: { address: '127.0.0.1' }, 5: { status: 'd', mode: 'n', address: '127.0.0.1' } });
    const error = validationError(() => planRecovery(shared, { mode: 'full', config: parseRecoverConfig('127.0.0.1|7000|/data/mirror/gpseg0 127.0.0.1|7100|/data/primary/gpseg0') }));
    expect(error.message).toMatch(/dbid 5 would use data directory \/data\/primary\/gpseg0 at 127.0.0.1, the data directory of dbid 2 \(sdw1, same address\)/);
  });

  it('a line with two groups is a full recovery even to the same place', () => {
    const plan = planRecovery(mirror5Down(), { mode: 'incremental', config: parseRecoverConfig('10.0.0.2|7000|/data/mirror/gpseg0 10.0.0.2|7000|/data/mirror/gpseg0') });
    expect(plan.recoveries.map((r) => [r.method, r.moved])).toEqual([['basebackup', false]]);
  });

  it('moves to an unknown address with a warning: it becomes the hostname, its placement is unknown', () => {
    const snapshot = mirror5Down();
    const plan = planRecovery(snapshot, { mode: 'full', config: parseRecoverConfig('10.0.0.2|7000|/data/mirror/gpseg0 10.0.0.9|7000|/data/mirror/gpseg0') });
    const { instanceId: _i, availabilityZone: _a, placementGroup: _g, partitionNumber: _n, ...bare } = row(snapshot, 5);
    expect(plan.recoveries[0].target).toEqual({ ...bare, status: 'u', hostname: '10.0.0.9', address: '10.0.0.9' });
    expect(plan.warnings).toEqual([expect.stringMatching(/^line 1: 10\.0\.0\.9 is not a host of cluster c3; .*placement is unknown/)]);
  });

  it('refuses lines that name no down mirror, naming each line', () => {
    const snapshot = cluster({ 4: { status: 'd', mode: 'n' }, 2: { mode: 'n' }, 6: { status: 'd', mode: 'n' }, 1: { mode: 'n' } });
    const config = parseRecoverConfig(['sdw9|7000|/data/m/gpseg0', 'sdw1|6000|/data/p/gpseg0', 'sdw1|7000|/data/m/gpseg1', 'scdw|5432|/data/m/gpseg-1', 'sdw2|7000|/data/m/gpseg0'].join('\n'));
    const error = validationError(() => planRecovery(snapshot, { mode: 'incremental', config }));
    expect(error.issues).toEqual([
      'line 1: no instance of cluster c1 is at sdw9|7000|/data/m/gpseg0',
      'line 2: sdw1|6000|/data/p/gpseg0 is dbid 2, the acting primary of content 0, not a down mirror; there is no source to recover it from',
      'line 3: sdw1|7000|/data/m/gpseg1 is dbid 5, the mirror of content 1, and it is up: nothing to recover',
      'line 4: scdw|5432|/data/m/gpseg-1 is dbid 6 of the coordinator (content -1); gprecoverseg does not recover it (gpinitstandby does)',
    ]);
  });

  it('skips, with the reason, a named down mirror whose primary is down too', () => {
    const snapshot = cluster({ 2: { status: 'd', mode: 'n' }, 4: { status: 'd', mode: 'n' } });
    const plan = planRecovery(snapshot, { mode: 'incremental', config: parseRecoverConfig('sdw2|7000|/data/m/gpseg0') });
    expect(plan).toEqual({ recoveries: [], skipped: [{ content: 0, reason: expect.stringMatching(/double fault/) }], warnings: [] });
  });
});

describe('planRecovery to a spare host (-p)', () => {
  const spare = { hostname: 'sdw4', address: '10.0.0.4', availabilityZone: 'us-east-1c', placementGroup: 'fts', partitionNumber: 4, instanceId: 'i-04' };

  it('keeps port and data directory, takes the host and its placement, always pg_basebackup', () => {
    const snapshot = mirror5Down();
    const plan = planRecovery(snapshot, { mode: 'incremental', spareHost: spare });
    expect(plan.recoveries).toEqual([
      { content: 0, failedDbid: 5, actingPrimaryDbid: 2, method: 'basebackup', moved: true, target: { ...row(snapshot, 5), status: 'u', ...spare } },
    ]);
    expect(plan.warnings).toEqual([]);
  });

  it("drops the old host's placement fields the spare does not have", () => {
    const plan = planRecovery(mirror5Down(), { mode: 'full', spareHost: { hostname: 'sdw4', address: '10.0.0.4' } });
    const target = plan.recoveries[0].target;
    expect(Object.keys(target).filter((k) => ['instanceId', 'availabilityZone', 'placementGroup', 'partitionNumber'].includes(k))).toEqual([]);
  });

  it('warns when the move shares the primary\'s availability zone', () => {
    const plan = planRecovery(mirror5Down(), { mode: 'full', spareHost: { ...spare, availabilityZone: 'us-east-1a' } });
    expect(plan.warnings).toEqual([expect.stringMatching(/^moving dbid 5: mirror dbid 5 \(content 0\) is in availability zone us-east-1a, the zone of its primary dbid 2/)]);
  });

  it.each<[string, ClusterSnapshot, RecoveryRequest, RegExp[]]>([
    ["the primary's host", mirror5Down(), { mode: 'full', spareHost: { hostname: 'sdw1', address: '10.0.0.1' } }, [/^moving dbid 5: mirror dbid 5 \(content 0\) is on host sdw1, the host of its primary dbid 2$/, /^moving dbid 5: dbid 5 and dbid 7 both use port 7000 on host sdw1$/]],
    ["the primary's partition", mirror5Down(), { mode: 'full', spareHost: { ...spare, partitionNumber: 1 } }, [/^moving dbid 5: mirror dbid 5 \(content 0\) is in partition 1 of placement group fts, the partition of its primary dbid 2/]],
    ['a port and directory in use on that host', mirror5Down(), { mode: 'full', config: parseRecoverConfig('10.0.0.2|7000|/data/mirror/gpseg0 10.0.0.3|7000|/data/mirror/gpseg1') }, [/^moving dbid 5: dbid 5 and dbid 6 both use port 7000 on host sdw3$/, /^moving dbid 5: dbid 5 and dbid 6 both use data directory \/data\/mirror\/gpseg1 on host sdw3$/]],
    ["another host's address and port", mirror5Down(), { mode: 'full', spareHost: { hostname: 'sdw3-alias', address: '10.0.0.3' } }, [/^dbid 5 would listen on 10\.0\.0\.3:7000, the address and port of dbid 6$/]],
    ['a directory around another instance', mirror5Down(), { mode: 'full', config: parseRecoverConfig('10.0.0.2|7000|/data/mirror/gpseg0 10.0.0.3|7100|/data') }, [/^dbid 5 would use data directory \/data on host sdw3, around the data directory \/data\/mirror\/gpseg1 of dbid 6$/, /around the data directory \/data\/primary\/gpseg2 of dbid 4$/]],
    [
      'two moves onto the same port',
      threeHosts({ 2: { mode: 'n' }, 5: { status: 'd', mode: 'n' }, 3: { mode: 'n' }, 6: { status: 'd', mode: 'n' } }),
      { mode: 'full', spareHost: spare },
      [/^moving dbids 5, 6: dbid 5 and dbid 6 both use port 7000 on host sdw4$/],
    ],
  ])('refuses a move onto %s, naming the dbids, and plans nothing', (_name, snapshot, request, messages) => {
    const error = validationError(() => planRecovery(snapshot, request));
    expect(error.message).toMatch(/^the recovery of cluster c3 would break its placement: /);
    expect(error.issues).toEqual(messages.map((m) => expect.stringMatching(m)));
  });

  it('does not blame a move for placement errors the cluster already had', () => {
    // Mirror 6 already shares primary 3's host: not the recovery's doing.
    const snapshot = threeHosts({ 2: { mode: 'n' }, 5: { status: 'd', mode: 'n' }, 6: { hostname: 'sdw2', address: '10.0.0.2', port: 7001 } });
    expect(planRecovery(snapshot, { mode: 'full', spareHost: spare }).recoveries.map((r) => r.failedDbid)).toEqual([5]);
  });
});

describe('relocationChange: the catalog write before a moved rebuild', () => {
  const now = new Date('2026-11-23T10:00:00.000Z');

  it('writes each moved row at its new place, still a down mirror, with a history row; the validator accepts it', () => {
    const snapshot = mirror5Down();
    const plan = planRecovery(snapshot, { mode: 'full', spareHost: { hostname: 'sdw4', address: '10.0.0.4' } });
    const change = relocationChange(snapshot, plan, now)!;
    expect(change.rows).toEqual([{ ...plan.recoveries[0].target, status: 'd', mode: 'n' }]);
    expect(change.history).toEqual([
      { time: now.toISOString(), dbid: 5, description: 'FTS: dbid 5 with contentid 0 moved for recovery from sdw2 10.0.0.2:7000 /data/mirror/gpseg0 to sdw4 10.0.0.4:7000 /data/mirror/gpseg0' },
    ]);
    expect(validateChange(snapshot, parseChange(change)).segments.find((r) => r.dbid === 5)).toEqual(change.rows[0]);
  });

  it('is null when nothing moves', () => {
    const snapshot = failedOver();
    expect(relocationChange(snapshot, planRecovery(snapshot, { mode: 'full' }), now)).toBeNull();
  });

  it('refuses a plan whose mirror is no longer down', () => {
    const plan = planRecovery(mirror5Down(), { mode: 'full', spareHost: { hostname: 'sdw4', address: '10.0.0.4' } });
    expect(() => relocationChange(threeHosts(), plan, now)).toThrow(/plan is stale: dbid 5 is no longer a down mirror \(m\/u\/s\)/);
  });
});

describe('rebalancePlan (-r)', () => {
  /** Content 0 failed over and was recovered: 4 acts as primary, 2 as mirror, both up and in sync. */
  const unbalanced = (over: Partial<Record<number, Partial<SegmentRow>>> = {}) => cluster({ ...over, 2: { role: 'm', ...over[2] }, 4: { role: 'p', ...over[4] } });

  it('switches an in-sync pair back to its preferred roles', () => {
    const snapshot = unbalanced();
    expect(rebalancePlan(snapshot)).toEqual({
      switches: [{ content: 0, primaryDbid: 4, mirrorDbid: 2, rows: [{ ...row(snapshot, 4), role: 'm', status: 'd', mode: 'n' }, { ...row(snapshot, 2), role: 'p', mode: 'n' }] }],
      refused: [],
      skipped: [],
    });
  });

  it('leaves a balanced cluster alone', () => {
    expect(rebalancePlan(cluster())).toEqual({ switches: [], refused: [], skipped: [] });
  });

  it.each<[string, ClusterSnapshot, RegExp]>([
    ['a pair not in sync', unbalanced({ 2: { mode: 'n' }, 4: { mode: 'n' } }), /^primary dbid 4 is p\/u\/n and mirror dbid 2 is m\/u\/n: a pair is switched only when both are up and in sync/],
    ['a down mirror', unbalanced({ 2: { status: 'd', mode: 'n' }, 4: { mode: 'n' } }), /mirror dbid 2 is m\/d\/n/],
    ['a pending promotion', { ...unbalanced(), pendingPromotions: [{ content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 7, startedAt: '2026-01-01T00:00:00.000Z' }] }, /promotion of dbid 4 is pending/],
    ['a fence owed', { ...unbalanced(), pendingFences: [{ dbid: 2, content: 0, since: '2026-01-01T00:00:00.000Z', reason: 'x' }] }, /fence is still owed to dbid 2/],
    ['inconsistent preferred roles', unbalanced({ 2: { preferredRole: 'm' } }), /are not one primary and one mirror/],
  ])('skips %s with the reason', (_name, snapshot, reason) => {
    expect(rebalancePlan(snapshot)).toEqual({ switches: [], refused: [], skipped: [{ content: 0, reason: expect.stringMatching(reason) }] });
  });

  it('skips the coordinator whose standby was activated', () => {
    expect(rebalancePlan(cluster({ 1: { role: 'm' }, 6: { role: 'p' } })).skipped).toEqual([{ content: -1, reason: expect.stringMatching(/gpactivatestandby, never rebalanced/) }]);
  });

  it('refuses a pair whose mirror has more WAL to replay than allowed, and switches the others', () => {
    const snapshot = unbalanced({ 3: { role: 'm' }, 5: { role: 'p' } });
    const plan = rebalancePlan(snapshot, { maxReplayLagBytes: 1000, lags: { 0: 1001, 1: 1000 } });
    expect(plan.switches.map((s) => [s.content, s.replayLagBytes])).toEqual([[1, 1000]]);
    expect(plan.refused).toEqual([{ content: 0, reason: 'mirror dbid 2 has 1001 bytes of WAL still to replay, more than the 1000 allowed (--replay-lag): let it catch up, then rebalance' }]);
  });

  it('refuses a pair whose lag is unknown while a limit is set; without a limit there is no check', () => {
    expect(rebalancePlan(unbalanced(), { maxReplayLagBytes: 0 }).refused).toEqual([{ content: 0, reason: expect.stringMatching(/replay lag of mirror dbid 2 is unknown/) }]);
    expect(rebalancePlan(unbalanced(), { lags: { 0: 10 ** 12 } }).switches.map((s) => s.content)).toEqual([0]);
  });

  it.each<[string, unknown]>([
    ['a negative limit', { maxReplayLagBytes: -1 }],
    ['a fractional limit', { maxReplayLagBytes: 1.5 }],
    ['a negative lag', { lags: { 0: -1 } }],
    ['a lag keyed by something else than a content', { lags: { zero: 1 } }],
    ['an unknown option', { force: true }],
  ])('refuses %s', (_name, options) => {
    expect(() => rebalancePlan(unbalanced(), options as never)).toThrow(/^invalid rebalance options: /);
  });
});

describe('the lock per content: planners skip a content another execution holds', () => {
  const now = new Date('2026-11-23T10:00:00.000Z');
  const op = (content: number, kind: 'recovery' | 'rebalance', execution: string, expiresAt = '2026-11-23T11:00:00.000Z'): PendingOperation => ({
    content, kind, execution, since: '2026-11-23T09:00:00.000Z', expiresAt,
  });
  const held = <T extends ClusterSnapshot>(snapshot: T, ...ops: PendingOperation[]): T => ({ ...snapshot, pendingOperations: ops });
  /** Content 0 failed over and was recovered: 4 acts as primary, 2 as mirror, both up and in sync. */
  const unbalanced = () => cluster({ 2: { role: 'm' }, 4: { role: 'p' } });

  it('planRecovery skips a content held by a live operation of another execution, naming its kind and execution', () => {
    const snapshot = held(failedOver(), op(0, 'rebalance', 'rebalance-7'));
    expect(planRecovery(snapshot, { mode: 'incremental' }, { now, execution: 'recover-1' })).toEqual({
      recoveries: [],
      skipped: [{ content: 0, reason: 'content 0 is held by rebalance execution rebalance-7 (since 2026-11-23T09:00:00.000Z, until 2026-11-23T11:00:00.000Z): another workflow is working on it' }],
      warnings: [],
    });
    // A content named by the request is skipped the same way.
    expect(planRecovery(snapshot, { mode: 'incremental', contents: [0] }, { now }).skipped).toEqual([{ content: 0, reason: expect.stringMatching(/^content 0 is held by rebalance execution rebalance-7 /) }]);
  });

  it('planRecovery plans a content held by its own execution (a re-run), and one whose operation lapsed', () => {
    const snapshot = held(failedOver(), op(0, 'recovery', 'recover-1'));
    expect(planRecovery(snapshot, { mode: 'incremental' }, { now, execution: 'recover-1' }).recoveries.map((r) => r.failedDbid)).toEqual([2]);
    const lapsed = held(failedOver(), op(0, 'recovery', 'recover-0', now.toISOString()));
    expect(planRecovery(lapsed, { mode: 'incremental' }, { now, execution: 'recover-1' }).recoveries.map((r) => r.failedDbid)).toEqual([2]);
    // Without a clock every stored operation holds its content.
    expect(planRecovery(lapsed, { mode: 'incremental' }, { execution: 'recover-1' }).recoveries).toEqual([]);
  });

  it('rebalancePlan skips a pair held by another execution and switches one held by its own', () => {
    const other = rebalancePlan(held(unbalanced(), op(0, 'recovery', 'recover-1')), {}, { now, execution: 'rebalance-7' });
    expect(other).toEqual({
      switches: [],
      refused: [],
      skipped: [{ content: 0, reason: 'content 0 is held by recovery execution recover-1 (since 2026-11-23T09:00:00.000Z, until 2026-11-23T11:00:00.000Z): another workflow is working on it' }],
    });
    expect(rebalancePlan(held(unbalanced(), op(0, 'rebalance', 'rebalance-7')), {}, { now, execution: 'rebalance-7' }).switches.map((s) => s.content)).toEqual([0]);
    expect(rebalancePlan(held(unbalanced(), op(0, 'rebalance', 'rebalance-7', now.toISOString())), {}, { now }).switches.map((s) => s.content)).toEqual([0]);
    // A hold on another content does not matter.
    expect(rebalancePlan(held(unbalanced(), op(1, 'recovery', 'recover-1')), {}, { now }).switches.map((s) => s.content)).toEqual([0]);
  });

  it.each<[string, unknown]>([
    ['an invalid date', { now: new Date('nope') }],
    ['an empty execution', { execution: '' }],
  ])('refuses %s', (_name, hold) => {
    expect(() => planRecovery(failedOver(), { mode: 'incremental' }, hold as never)).toThrow(/^invalid recovery plan options: /);
    expect(() => rebalancePlan(unbalanced(), {}, hold as never)).toThrow(/^invalid rebalance plan options: /);
  });
});

describe('transitions of recovery and rebalance', () => {
  const allowed = (before: SegmentRow, after: SegmentRow, by: TransitionActor) => findTransition(before, after, by) !== undefined;

  it('every state change a recovery plans is a RecoverSegments row', () => {
    const snapshot = failedOver();
    const { recoveries } = planRecovery(snapshot, { mode: 'incremental' });
    expect(recoveries).toHaveLength(1);
    for (const r of recoveries) expect(allowed(row(snapshot, r.failedDbid), r.target, 'RecoverSegments')).toBe(true);
  });

  it('the flip a rebalance plans is Rebalance rows, and so is the old primary streaming again; the validator accepts the flip', () => {
    const unbalanced = cluster({ 2: { role: 'm' }, 4: { role: 'p' } });
    const plan = rebalancePlan(unbalanced);
    expect(plan.switches).toHaveLength(1);
    const [oldPrimary, oldMirror] = plan.switches[0].rows;
    expect([rowState(oldPrimary), rowState(oldMirror)]).toEqual(['m/d/n', 'p/u/n']);
    for (const after of plan.switches[0].rows) expect(allowed(row(unbalanced, after.dbid), after, 'Rebalance')).toBe(true);
    expect(allowed(oldPrimary, { ...oldPrimary, status: 'u' }, 'Rebalance')).toBe(true);
    const change = { rows: plan.switches[0].rows, history: plan.switches[0].rows.map((r) => ({ time: '2026-11-23T10:00:00.000Z', dbid: r.dbid, description: 'rebalance' })) };
    expect(validateChange(unbalanced, parseChange(change)).segments.filter((r) => r.content === 0).map((r) => `${r.dbid}:${rowState(r)}`)).toEqual(['2:p/u/n', '4:m/d/n']);
  });

  it('RECOVERY_TRANSITIONS is gone: TRANSITIONS is the one table', () => {
    expect(TRANSITIONS.filter((t) => t.by === 'RecoverSegments' || t.by === 'Rebalance').map((t) => `${t.by} ${t.from} -> ${t.to}`)).toEqual([
      'RecoverSegments m/d/n -> m/u/n',
      'Rebalance p/u/s -> m/d/n',
      'Rebalance m/u/s -> p/u/n',
      'Rebalance m/d/n -> m/u/n',
    ]);
  });
});
