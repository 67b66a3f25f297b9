/** The local cluster's spec and layout, without starting anything. */
import { localClusterSpecSchema, parseLocalClusterSpec, planLocalCluster } from '../../cli/local-cluster';
import { validatePlacement } from '../../lambdas/core/placement';

describe('parseLocalClusterSpec', () => {
  test('defaults: cluster local, 2 hosts, 1 primary each, group mirroring, coordinator and standby, default settings', () => {
    const spec = parseLocalClusterSpec({});
    expect(spec).toMatchObject({ clusterId: 'local', hosts: 2, primariesPerHost: 1, mirroring: 'group', coordinator: true, standby: true });
    expect(spec.parsedSettings.probeIntervalSeconds).toBe(2);
  });

  test.each<[string, unknown, RegExp]>([
    ['no hosts', { hosts: 0 }, /hosts: must be at least 1/],
    ['fractional hosts', { hosts: 1.5 }, /hosts: must be a whole number/],
    ['unknown option', { hosts: 2, mirorring: 'group' }, /unknown option\(s\) mirorring; known options are clusterId, hosts/],
    ['bad mirroring', { mirroring: 'ring' }, /mirroring: /],
    ['standby without coordinator', { coordinator: false, standby: true }, /a standby needs a coordinator/],
    ['bad cluster id', { clusterId: 'a b' }, /clusterId: must be 1 to 48 letters/],
    ['privileged base port', { basePort: 80 }, /basePort: must be from 1024 to 65000/],
    ['bad setting', { settings: { probeRetries: 99 } }, /probeRetries must be at most 10/],
    ['unknown setting', { settings: { probeEverySecond: 1 } }, /unknown setting\(s\) probeEverySecond/],
  ])('%s is rejected', (_name, input, message) => {
    expect(() => parseLocalClusterSpec(input)).toThrow(message);
  });

  test('every option is documented by the schema', () => {
    expect(Object.keys(localClusterSpecSchema.shape)).toEqual(['clusterId', 'hosts', 'primariesPerHost', 'mirroring', 'coordinator', 'standby', 'basePort', 'endpointPort', 'settings']);
  });
});

describe('planLocalCluster', () => {
  test('group mirroring on 3 hosts: gpinitsystem dbids, hosts sdw1..3, directories per host, valid placement', () => {
    const rows = planLocalCluster(parseLocalClusterSpec({ hosts: 3, primariesPerHost: 2 }), '/tmp/x');
    expect(rows).toHaveLength(1 + 6 + 6 + 1);
    expect(rows[0]).toMatchObject({ dbid: 1, content: -1, role: 'p', hostname: 'cdw', address: '127.0.0.1', datadir: '/tmp/x/cdw/coordinator/gpseg-1' });
    expect(rows.at(-1)).toMatchObject({ dbid: 14, content: -1, role: 'm', hostname: 'scdw', datadir: '/tmp/x/scdw/coordinator/gpseg-1' });
    const mirror0 = rows.find((r) => r.content === 0 && r.role === 'm')!;
    expect(mirror0).toMatchObject({ hostname: 'sdw2', datadir: '/tmp/x/sdw2/mirror/gpseg0' });
    expect(new Set(rows.map((r) => r.datadir)).size).toBe(rows.length);
    expect(validatePlacement(rows.map((r, i) => ({ ...r, port: 10000 + i }))).errors).toEqual([]);
  });

  test('spread mirroring needs more hosts than primaries per host', () => {
    expect(() => planLocalCluster(parseLocalClusterSpec({ hosts: 2, primariesPerHost: 2, mirroring: 'spread' }), '/tmp/x')).toThrow(/spread/);
  });

  test('no mirroring, no coordinator: primaries only, not in sync', () => {
    const rows = planLocalCluster(parseLocalClusterSpec({ hosts: 1, mirroring: 'none', coordinator: false, standby: false }), '/tmp/x');
    expect(rows).toEqual([expect.objectContaining({ dbid: 2, content: 0, role: 'p', mode: 'n' })]);
  });
});
