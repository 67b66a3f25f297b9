import {
  arrangeHosts, assertValidPlacement, planCluster, validatePlacement,
  type ClusterSpec, type MirroringType, type PlacementHost,
} from '../../lambdas/core/placement';
import { ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import type { HostInfo } from '../../lambdas/ports/compute';

const sdw = (n: number, extra: Partial<PlacementHost> = {}): PlacementHost => ({ hostname: `sdw${n}`, ...extra });
const hostsOf = (count: number, extra: (i: number) => Partial<PlacementHost> = () => ({})): PlacementHost[] =>
  Array.from({ length: count }, (_, i) => sdw(i + 1, extra(i)));

/** The ValidationError `fn` throws (fails the test if it throws nothing or something else). */
function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return e as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

const count = <T>(items: readonly T[], pred: (item: T) => boolean): number => items.filter(pred).length;

describe('planCluster: group and spread mirroring on 2 to 8 hosts', () => {
  const cases: [MirroringType, number, number][] = [];
  for (const mirroring of ['group', 'spread'] as const) {
    for (let hosts = 2; hosts <= 8; hosts++) {
      for (const perHost of [1, 2, 3, 4]) if (mirroring === 'group' || hosts > perHost) cases.push([mirroring, hosts, perHost]);
    }
  }

  test.each(cases)('%s mirroring, %i hosts, %i primaries per host', (mirroring, hostCount, perHost) => {
    const hosts = hostsOf(hostCount);
    const rows = planCluster({ hosts, primariesPerHost: perHost, mirroring });
    const contents = hostCount * perHost;
    expect(rows).toHaveLength(2 * contents);
    expect(new Set(rows.map((r) => r.dbid)).size).toBe(rows.length);
    expect(rows.map((r) => r.dbid)).toEqual(Array.from({ length: 2 * contents }, (_, i) => i + 2));

    // Every content: exactly one primary and one mirror, in sync, never on the same host.
    for (let content = 0; content < contents; content++) {
      const pair = rows.filter((r) => r.content === content);
      const primary = pair.filter((r) => r.role === 'p');
      const mirror = pair.filter((r) => r.role === 'm');
      expect(primary).toHaveLength(1);
      expect(mirror).toHaveLength(1);
      expect(primary[0]).toMatchObject({ preferredRole: 'p', mode: 's', status: 'u', dbid: content + 2, datadir: `/data/primary/gpseg${content}` });
      expect(mirror[0]).toMatchObject({ preferredRole: 'm', mode: 's', status: 'u', dbid: contents + content + 2, datadir: `/data/mirror/gpseg${content}` });
      expect(mirror[0].hostname).not.toBe(primary[0].hostname);
    }

    // Each host carries P primaries and P mirrors; ports and data directories unique per host.
    for (const host of hosts) {
      const on = rows.filter((r) => r.hostname === host.hostname);
      expect(count(on, (r) => r.role === 'p')).toBe(perHost);
      expect(count(on, (r) => r.role === 'm')).toBe(perHost);
      expect(new Set(on.map((r) => r.port)).size).toBe(on.length);
      expect(new Set(on.map((r) => r.datadir)).size).toBe(on.length);
      expect(on.filter((r) => r.role === 'p').map((r) => r.port).sort((a, b) => a - b)).toEqual(Array.from({ length: perHost }, (_, k) => 6000 + k));
      expect(on.filter((r) => r.role === 'm').map((r) => r.port).sort((a, b) => a - b)).toEqual(Array.from({ length: perHost }, (_, k) => 7000 + k));

      // Where the mirrors of this host's primaries went.
      const mirrorHosts = on.filter((r) => r.role === 'p').map((p) => rows.find((r) => r.content === p.content && r.role === 'm')!.hostname);
      if (mirroring === 'group') expect(new Set(mirrorHosts).size).toBe(1);
      else expect(new Set(mirrorHosts).size).toBe(perHost);
    }
    // Primaries are numbered host by host, in the given order (no placement info to reorder by).
    expect(rows.filter((r) => r.role === 'p').map((r) => r.hostname)).toEqual(hosts.flatMap((h) => Array<string>(perHost).fill(h.hostname)));
    expect(validatePlacement(rows, hosts)).toEqual({ errors: [], warnings: [] });
  });

  test.each([[2, 2], [3, 3], [3, 4], [4, 5]])('spread mirroring on %i hosts with %i primaries per host is rejected', (hostCount, perHost) => {
    const e = validationError(() => planCluster({ hosts: hostsOf(hostCount), primariesPerHost: perHost, mirroring: 'spread' }));
    expect(e.issues).toEqual([`spread mirroring puts the mirrors of a host's ${perHost} primaries on ${perHost} other hosts, so it needs more than ${perHost} hosts; got ${hostCount}`]);
  });
});

describe('planCluster: the rows gpinitsystem would write', () => {
  test('group mirroring, 3 hosts x 2, coordinator with standby', () => {
    const rows = planCluster({
      hosts: hostsOf(3), primariesPerHost: 2, mirroring: 'group',
      coordinator: { host: 'cdw', standbyHost: 'scdw' },
    });
    const brief = rows.map((r) => [r.dbid, r.content, r.role, r.preferredRole, r.mode, r.status, r.hostname, r.port, r.datadir].join(' '));
    expect(brief).toEqual([
      '1 -1 p p s u cdw 5432 /data/coordinator/gpseg-1',
      '2 0 p p s u sdw1 6000 /data/primary/gpseg0',
      '3 1 p p s u sdw1 6001 /data/primary/gpseg1',
      '4 2 p p s u sdw2 6000 /data/primary/gpseg2',
      '5 3 p p s u sdw2 6001 /data/primary/gpseg3',
      '6 4 p p s u sdw3 6000 /data/primary/gpseg4',
      '7 5 p p s u sdw3 6001 /data/primary/gpseg5',
      '8 0 m m s u sdw2 7000 /data/mirror/gpseg0',
      '9 1 m m s u sdw2 7001 /data/mirror/gpseg1',
      '10 2 m m s u sdw3 7000 /data/mirror/gpseg2',
      '11 3 m m s u sdw3 7001 /data/mirror/gpseg3',
      '12 4 m m s u sdw1 7000 /data/mirror/gpseg4',
      '13 5 m m s u sdw1 7001 /data/mirror/gpseg5',
      '14 -1 m m s u scdw 5432 /data/coordinator/gpseg-1',
    ]);
    expect(rows[0].address).toBe('cdw');
  });

  test('spread mirroring, 3 hosts x 2: the k-th primary of host h goes to host h+1+k', () => {
    const rows = planCluster({ hosts: hostsOf(3), primariesPerHost: 2, mirroring: 'spread', basePort: 40000, mirrorBasePort: 41000, dataDirectoryRoot: '/gpdata/' });
    const mirrors = rows.filter((r) => r.role === 'm').map((r) => `${r.content}@${r.hostname}:${r.port} ${r.datadir}`);
    expect(mirrors).toEqual([
      '0@sdw2:41000 /gpdata/mirror/gpseg0', '1@sdw3:41000 /gpdata/mirror/gpseg1',
      '2@sdw3:41001 /gpdata/mirror/gpseg2', '3@sdw1:41000 /gpdata/mirror/gpseg3',
      '4@sdw1:41001 /gpdata/mirror/gpseg4', '5@sdw2:41001 /gpdata/mirror/gpseg5',
    ]);
  });

  test('no mirroring: primaries only, not in sync; a single host is fine; coordinator without standby is mode n', () => {
    const rows = planCluster({ hosts: [sdw(1)], primariesPerHost: 3, mirroring: 'none', coordinator: { host: 'cdw', port: 15432 } });
    expect(rows.map((r) => [r.dbid, r.content, r.role, r.mode, r.port])).toEqual([
      [1, -1, 'p', 'n', 15432], [2, 0, 'p', 'n', 6000], [3, 1, 'p', 'n', 6001], [4, 2, 'p', 'n', 6002],
    ]);
  });

  test('a no-mirroring standby gets the next dbid after the primaries', () => {
    const rows = planCluster({ hosts: hostsOf(2), primariesPerHost: 1, mirroring: 'none', coordinator: { host: 'cdw', standbyHost: 'scdw', standbyPort: 5433 } });
    expect(rows.at(-1)).toMatchObject({ dbid: 4, content: -1, role: 'm', preferredRole: 'm', mode: 's', hostname: 'scdw', port: 5433 });
  });

  test('a HostInfo from Compute.discoverHosts is a host: placement fields are copied, the private IP is the address', () => {
    const info = (n: number, partition: number): HostInfo => ({
      instanceId: `i-000${n}`, hostname: `sdw${n}`, privateIp: `10.0.0.${n}`, availabilityZone: 'us-east-1a',
      placementGroup: 'fts-pg', placementStrategy: 'partition', partitionNumber: partition,
      state: 'running', systemStatus: 'ok', instanceStatus: 'ok',
    });
    const hosts = [info(1, 1), info(2, 2)];
    const rows = planCluster({ hosts, primariesPerHost: 1, mirroring: 'group', coordinator: { host: 'sdw1', port: 5432 } });
    expect(rows[0]).toEqual({
      dbid: 1, content: -1, role: 'p', preferredRole: 'p', mode: 'n', status: 'u', port: 5432, hostname: 'sdw1', address: '10.0.0.1',
      datadir: '/data/coordinator/gpseg-1', instanceId: 'i-0001', availabilityZone: 'us-east-1a', placementGroup: 'fts-pg', partitionNumber: 1,
    });
    expect(rows.find((r) => r.dbid === 4)).toEqual({
      dbid: 4, content: 0, role: 'm', preferredRole: 'm', mode: 's', status: 'u', port: 7000, hostname: 'sdw2', address: '10.0.0.2',
      datadir: '/data/mirror/gpseg0', instanceId: 'i-0002', availabilityZone: 'us-east-1a', placementGroup: 'fts-pg', partitionNumber: 2,
    });
    // Same zone: allowed, with warnings naming the dbids.
    expect(validatePlacement(rows, hosts).warnings).toEqual([
      'mirror dbid 4 (content 0) is in availability zone us-east-1a, the zone of its primary dbid 2; a zone outage takes both',
      'mirror dbid 5 (content 1) is in availability zone us-east-1a, the zone of its primary dbid 3; a zone outage takes both',
    ]);
  });

  test('an explicit address wins over the private IP and the hostname', () => {
    const rows = planCluster({ hosts: [sdw(1, { address: 'sdw1.internal', privateIp: '10.0.0.1' }), sdw(2)], primariesPerHost: 1, mirroring: 'group' });
    expect(rows.map((r) => r.address)).toEqual(['sdw1.internal', 'sdw2', 'sdw2', 'sdw1.internal']);
  });
});

describe('planCluster: placement groups and zones', () => {
  const partitioned = (partitions: number[]): PlacementHost[] =>
    partitions.map((p, i) => sdw(i + 1, { placementGroup: 'fts-pg', placementStrategy: 'partition', partitionNumber: p, availabilityZone: 'us-east-1a' }));

  const mirrorPartitions = (rows: SegmentRow[]) => rows.filter((r) => r.role === 'm').map((m) => {
    const p = rows.find((r) => r.content === m.content && r.role === 'p')!;
    return [p.partitionNumber, m.partitionNumber];
  });

  test.each<[string, MirroringType, number[], number]>([
    ['group, hosts listed partition by partition', 'group', [1, 1, 2, 2], 2],
    ['group, three partitions', 'group', [1, 1, 1, 2, 2, 3], 1],
    ['group, uneven partitions that still fit', 'group', [1, 1, 2, 3], 3],
    ['spread, three partitions of two hosts', 'spread', [1, 1, 2, 2, 3, 3], 2],
    ['spread, four partitions', 'spread', [1, 2, 3, 4, 1, 2, 3, 4], 3],
  ])('%s: no mirror shares its primary\'s partition', (_name, mirroring, partitions, perHost) => {
    const hosts = partitioned(partitions);
    const rows = planCluster({ hosts, primariesPerHost: perHost, mirroring });
    for (const [p, m] of mirrorPartitions(rows)) expect(m).not.toBe(p);
    expect(validatePlacement(rows, hosts).errors).toEqual([]);
    expect(new Set(rows.map((r) => r.hostname))).toEqual(new Set(hosts.map((h) => h.hostname)));
  });

  /** Every way of putting `count` hosts into partitions (partition numbers in order of first use). */
  function* assignments(count: number, prefix: number[] = []): Generator<number[]> {
    if (prefix.length === count) { yield prefix; return; }
    const next = prefix.length === 0 ? 1 : Math.max(...prefix) + 1;
    for (let p = 1; p <= next; p++) yield* assignments(count, [...prefix, p]);
  }

  test('every assignment of 2 to 8 hosts to partitions that can be laid out is laid out', () => {
    let planned = 0;
    for (let hostCount = 2; hostCount <= 8; hostCount++) {
      for (const partitions of assignments(hostCount)) {
        const sizes = [...new Set(partitions)].map((p) => count(partitions, (q) => q === p));
        const largest = Math.max(...sizes);
        const layouts: [MirroringType, number, boolean][] = [
          // Group: possible exactly when no partition holds more than half the hosts (a ring).
          ['group', 1, largest <= Math.floor(hostCount / 2)],
          // Spread with P = 2: any 3 ring neighbours in distinct partitions; enough when this holds.
          ['spread', 2, hostCount > 2 && sizes.length > 2 && largest * 3 <= hostCount],
        ];
        for (const [mirroring, perHost, possible] of layouts) {
          if (!possible) continue;
          const hosts = partitioned(partitions);
          expect(validatePlacement(planCluster({ hosts, primariesPerHost: perHost, mirroring }), hosts).errors).toEqual([]);
          planned++;
        }
      }
    }
    expect(planned).toBeGreaterThan(1000);
  });

  test('hosts in order of partition are reordered so that neighbours differ', () => {
    expect(arrangeHosts(partitioned([1, 1, 2, 2]), 1).map((h) => h.hostname)).toEqual(['sdw1', 'sdw3', 'sdw2', 'sdw4']);
    // Already interleaved, or without placement information: kept as given.
    expect(arrangeHosts(partitioned([1, 2, 1, 2]), 1).map((h) => h.hostname)).toEqual(['sdw1', 'sdw2', 'sdw3', 'sdw4']);
    expect(arrangeHosts(hostsOf(4), 3).map((h) => h.hostname)).toEqual(['sdw1', 'sdw2', 'sdw3', 'sdw4']);
  });

  test('preserveHostOrder keeps a bad order and is rejected, naming the dbids', () => {
    const e = validationError(() => planCluster({ hosts: partitioned([1, 1, 2, 2]), primariesPerHost: 1, mirroring: 'group', preserveHostOrder: true }));
    expect(e.message).toMatch(/^the planned placement is invalid: /);
    expect(e.issues).toEqual([
      'mirror dbid 6 (content 0) is in partition 1 of placement group fts-pg, the partition of its primary dbid 2; one partition failure takes both',
      'mirror dbid 8 (content 2) is in partition 2 of placement group fts-pg, the partition of its primary dbid 4; one partition failure takes both',
    ]);
  });

  test('a partition holding most hosts cannot be laid out: rejected, naming the dbids', () => {
    const e = validationError(() => planCluster({ hosts: partitioned([1, 1, 2]), primariesPerHost: 1, mirroring: 'group' }));
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatch(/^mirror dbid \d \(content \d\) is in partition 1 of placement group fts-pg, the partition of its primary dbid \d;/);
  });

  test('hosts in two zones are interleaved so that every mirror is in the other zone: no warnings', () => {
    const hosts = hostsOf(4, (i) => ({ availabilityZone: i < 2 ? 'us-east-1a' : 'us-east-1b' }));
    const rows = planCluster({ hosts, primariesPerHost: 2, mirroring: 'group' });
    expect(validatePlacement(rows, hosts)).toEqual({ errors: [], warnings: [] });
  });

  test('one cluster placement group: planned, with a warning per pair naming the dbids', () => {
    const hosts = hostsOf(2, () => ({ placementGroup: 'fts-cg', placementStrategy: 'cluster' }));
    const rows = planCluster({ hosts, primariesPerHost: 1, mirroring: 'group' });
    expect(validatePlacement(rows, hosts).warnings).toEqual([
      'mirror dbid 4 (content 0) is in cluster placement group fts-cg with its primary dbid 2; a cluster group packs instances together (often one rack), so one rack failure can take both',
      'mirror dbid 5 (content 1) is in cluster placement group fts-cg with its primary dbid 3; a cluster group packs instances together (often one rack), so one rack failure can take both',
    ]);
    // Without the hosts the strategy is unknown: no cluster warning.
    expect(validatePlacement(rows).warnings).toEqual([]);
  });
});

describe('planCluster rejects a bad spec, listing every issue', () => {
  const base: ClusterSpec = { hosts: hostsOf(3), primariesPerHost: 2, mirroring: 'group' };
  test.each<[string, Partial<ClusterSpec>, string[]]>([
    ['no hosts', { hosts: [] }, ['at least one segment host is needed']],
    ['a single host with group mirroring', { hosts: [sdw(1)] }, ['group mirroring needs at least 2 hosts so that no mirror shares its primary\'s host; got 1 (sdw1)']],
    ['a single host with spread mirroring', { hosts: [sdw(1)], mirroring: 'spread' }, ['spread mirroring needs at least 2 hosts so that no mirror shares its primary\'s host; got 1 (sdw1)']],
    ['no primaries', { primariesPerHost: 0 }, ['primariesPerHost must be a whole number of at least 1, got 0']],
    ['a fraction of a primary', { primariesPerHost: 1.5 }, ['primariesPerHost must be a whole number of at least 1, got 1.5']],
    ['duplicate hostnames', { hosts: [sdw(1), sdw(2), sdw(1), sdw(1)] }, ['host sdw1 is listed 3 times']],
    ['an empty hostname', { hosts: [sdw(1), { hostname: '' }] }, ['host 2 has no hostname']],
    ['unknown mirroring', { mirroring: 'ring' as MirroringType }, ['mirroring must be group, spread or none, got ring']],
    ['overlapping port ranges', { basePort: 7000, mirrorBasePort: 7001 }, ['primary ports 7000-7001 overlap mirror ports 7001-7002']],
    ['ports past 65535', { basePort: 65535 }, ['basePort 65535 leaves no room for 2 port(s) within 1-65535']],
    ['a relative data directory', { dataDirectoryRoot: 'data' }, ['dataDirectoryRoot must be an absolute path, got data']],
    ['a bad coordinator port', { coordinator: { host: 'cdw', port: 0 } }, ['coordinator port must be within 1-65535, got 0']],
    ['several issues at once', { hosts: [], primariesPerHost: 0 }, ['at least one segment host is needed', 'primariesPerHost must be a whole number of at least 1, got 0']],
  ])('%s', (_name, change, issues) => {
    const e = validationError(() => planCluster({ ...base, ...change }));
    expect(e.issues).toEqual(issues);
    expect(e.message).toBe(`cluster spec is invalid: ${issues.join('; ')}`);
    expect(e.name).toBe('ValidationError');
  });

  test('a standby on the coordinator\'s host: the plan fails validation, naming the dbids', () => {
    const e = validationError(() => planCluster({ ...base, coordinator: { host: 'cdw', standbyHost: 'cdw' } }));
    expect(e.issues).toEqual([
      'standby dbid 14 (content -1) is on host cdw, the host of its coordinator dbid 1',
      'dbid 1 and dbid 14 both use port 5432 on host cdw',
      'dbid 1 and dbid 14 both use data directory /data/coordinator/gpseg-1 on host cdw',
    ]);
  });

  test('a coordinator on a segment host whose port a primary uses: rejected, naming the dbids', () => {
    const e = validationError(() => planCluster({ ...base, coordinator: { host: 'sdw1', port: 6001 } }));
    expect(e.issues).toEqual(['dbid 1 and dbid 3 both use port 6001 on host sdw1']);
  });
});

describe('validatePlacement on hand-written configurations', () => {
  const row = (dbid: number, content: number, role: 'p' | 'm', hostname: string, port: number, extra: Partial<SegmentRow> = {}): SegmentRow => ({
    dbid, content, role, preferredRole: role, mode: 's', status: 'u', port, hostname, address: hostname,
    datadir: `/data/${role === 'p' ? 'primary' : 'mirror'}/gpseg${content}`, ...extra,
  });
  /** Coordinator 1 + standby 6; content 0: 2 on sdw1, 4 on sdw2; content 1: 3 on sdw2, 5 on sdw1. */
  const good = (): SegmentRow[] => [
    row(1, -1, 'p', 'cdw', 5432, { datadir: '/data/coordinator/gpseg-1' }), row(6, -1, 'm', 'scdw', 5432, { datadir: '/data/coordinator/gpseg-1' }),
    row(2, 0, 'p', 'sdw1', 6000), row(4, 0, 'm', 'sdw2', 7000),
    row(3, 1, 'p', 'sdw2', 6000), row(5, 1, 'm', 'sdw1', 7000),
  ];
  const change = (dbid: number, extra: Partial<SegmentRow>) => good().map((r) => (r.dbid === dbid ? { ...r, ...extra } : r));

  test('a good configuration has no findings', () => {
    expect(validatePlacement(good())).toEqual({ errors: [], warnings: [] });
    expect(assertValidPlacement(good())).toEqual([]);
  });

  test('after a failover (roles swapped, preferred roles kept) it is still fine', () => {
    const rows = good().map((r) => (r.content === 0 ? { ...r, role: r.role === 'p' ? 'm' as const : 'p' as const, mode: 'n' as const } : r));
    expect(validatePlacement(rows)).toEqual({ errors: [], warnings: [] });
  });

  test.each<[string, SegmentRow[], string[]]>([
    ['mirror on its primary\'s host', change(4, { hostname: 'sdw1', port: 7001 }),
      ['mirror dbid 4 (content 0) is on host sdw1, the host of its primary dbid 2']],
    ['standby on the coordinator\'s host', change(6, { hostname: 'cdw', port: 5433, datadir: '/data/standby' }),
      ['standby dbid 6 (content -1) is on host cdw, the host of its coordinator dbid 1']],
    ['mirror in its primary\'s partition', good().map((r) => (r.content === 1 ? { ...r, placementGroup: 'pg', partitionNumber: 3 } : r)),
      ['mirror dbid 5 (content 1) is in partition 3 of placement group pg, the partition of its primary dbid 3; one partition failure takes both']],
    ['two instances on one host:port', change(5, { port: 6000 }),
      ['dbid 2 and dbid 5 both use port 6000 on host sdw1']],
    ['two instances on one host:datadir', change(5, { datadir: '/data/primary/gpseg0/' }),
      ['dbid 2 and dbid 5 both use data directory /data/primary/gpseg0 on host sdw1']],
    ['three instances on one port', good().map((r) => (r.content >= 0 ? { ...r, hostname: 'sdw9', port: 6000, datadir: `/d${r.dbid}` } : r)),
      [
        'mirror dbid 4 (content 0) is on host sdw9, the host of its primary dbid 2',
        'mirror dbid 5 (content 1) is on host sdw9, the host of its primary dbid 3',
        'dbids 2, 3, 4 and 5 all use port 6000 on host sdw9',
      ]],
    ['two primaries for one content', change(4, { role: 'p' }),
      ['content 0 has 2 primaries: dbid 2 and dbid 4']],
    ['two mirrors for one content, no primary', change(2, { role: 'm' }),
      ['content 0 has 2 mirrors: dbid 2 and dbid 4', 'content 0 has no primary, only mirrors dbid 2 and dbid 4']],
    ['two rows with one preferred role', change(4, { preferredRole: 'p' }),
      ['content 0 has 2 rows with preferred role p: dbid 2 and dbid 4']],
    ['three rows for one content', [...good(), row(7, 0, 'm', 'sdw3', 7000)],
      ['content 0 has 3 rows (dbids 2, 4 and 7); a content has at most a primary and a mirror', 'content 0 has 2 mirrors: dbid 4 and dbid 7', 'content 0 has 2 rows with preferred role m: dbid 4 and dbid 7']],
    ['a duplicate dbid', change(5, { dbid: 4 }),
      ['dbid 4 is used by 2 rows (content 0 on sdw2, content 1 on sdw1)']],
    ['a port out of range', change(3, { port: 70000 }),
      ['primary dbid 3 (content 1) has port 70000, outside 1-65535']],
  ])('%s is an error naming the dbids', (_name, rows, errors) => {
    expect(validatePlacement(rows).errors).toEqual(errors);
    const e = validationError(() => assertValidPlacement(rows));
    expect(e.issues).toEqual(errors);
    expect(e.message).toBe(`placement is invalid: ${errors.join('; ')}`);
  });

  test('the hosts given are the truth: a partition number the rows lack is taken from them', () => {
    const hosts: PlacementHost[] = [
      { hostname: 'cdw' }, { hostname: 'scdw' },
      { hostname: 'sdw1', placementGroup: 'pg', placementStrategy: 'partition', partitionNumber: 1 },
      { hostname: 'sdw2', placementGroup: 'pg', placementStrategy: 'partition', partitionNumber: 1 },
    ];
    expect(validatePlacement(good(), hosts).errors).toEqual([
      'mirror dbid 4 (content 0) is in partition 1 of placement group pg, the partition of its primary dbid 2; one partition failure takes both',
      'mirror dbid 5 (content 1) is in partition 1 of placement group pg, the partition of its primary dbid 3; one partition failure takes both',
    ]);
    // Different partitions of the same group are fine.
    expect(validatePlacement(good(), hosts.map((h) => (h.hostname === 'sdw2' ? { ...h, partitionNumber: 2 } : h)))).toEqual({ errors: [], warnings: [] });
  });

  test.each<[string, SegmentRow[], PlacementHost[] | undefined, string[]]>([
    ['mirror in its primary\'s zone', change(4, { availabilityZone: 'us-east-1a' }).map((r) => (r.dbid === 2 ? { ...r, availabilityZone: 'us-east-1a' } : r)), undefined,
      ['mirror dbid 4 (content 0) is in availability zone us-east-1a, the zone of its primary dbid 2; a zone outage takes both']],
    ['standby in the coordinator\'s zone (from the hosts)', good(), [{ hostname: 'cdw', availabilityZone: 'az1' }, { hostname: 'scdw', availabilityZone: 'az1' }, sdw(1), sdw(2)],
      ['standby dbid 6 (content -1) is in availability zone az1, the zone of its coordinator dbid 1; a zone outage takes both']],
    ['mirror in its primary\'s cluster group', good(), [{ hostname: 'cdw' }, { hostname: 'scdw' }, sdw(1, { placementGroup: 'cg', placementStrategy: 'cluster' }), sdw(2, { placementGroup: 'cg', placementStrategy: 'cluster' })],
      [
        'mirror dbid 4 (content 0) is in cluster placement group cg with its primary dbid 2; a cluster group packs instances together (often one rack), so one rack failure can take both',
        'mirror dbid 5 (content 1) is in cluster placement group cg with its primary dbid 3; a cluster group packs instances together (often one rack), so one rack failure can take both',
      ]],
    ['two hosts of one spread group: no finding', good(), [{ hostname: 'cdw' }, { hostname: 'scdw' }, sdw(1, { placementGroup: 'sg', placementStrategy: 'spread' }), sdw(2, { placementGroup: 'sg', placementStrategy: 'spread' })], []],
    ['a row on a host not among the hosts', good(), [{ hostname: 'cdw' }, sdw(1), sdw(2)],
      ['standby dbid 6 (content -1) is on host scdw, which is not among the given hosts']],
  ])('%s is a warning naming the dbids', (_name, rows, hosts, warnings) => {
    const report = validatePlacement(rows, hosts);
    expect(report).toEqual({ errors: [], warnings });
    expect(assertValidPlacement(rows, hosts)).toEqual(warnings);
  });
});
