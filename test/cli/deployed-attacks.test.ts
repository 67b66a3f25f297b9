/**
 * Adversarial review of the deployed-stack CLI (aws-target, init, settings): bad input must
 * get a clear error and change nothing. Tests named `found by attack` failed before their fix.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { pickStack, resolveAwsTarget, targetFromOutputs } from '../../cli/aws-target';
import { parseDiscoverTag, parseInitSpec, planInit, readInitSpec, registerCluster } from '../../cli/init';
import { applySettingChanges, collectSet } from '../../cli/settings-command';
import { DynamoDbCatalog } from '../../lambdas/adapters/dynamodb/catalog';
import { createCatalogTables, type CatalogTableNames } from '../../lambdas/adapters/dynamodb/tables';
import { ValidationError } from '../../lambdas/core/errors';
import { DEFAULT_SETTINGS } from '../../lambdas/core/settings';

jest.setTimeout(60_000);

const suffix = randomUUID().slice(0, 8);
const tables: CatalogTableNames = { segments: `atk-segments-${suffix}`, history: `atk-history-${suffix}`, clusters: `atk-clusters-${suffix}` };
const catalog = new DynamoDbCatalog({ client: new DynamoDBClient({}), tables });
beforeAll(async () => {
  await createCatalogTables(new DynamoDBClient({}), tables);
});

const arn = (region = 'us-east-1', partition = 'aws') => `arn:${partition}:states:${region}:123456789012:stateMachine:PromoteMirror-x`;
const good = { SegmentsTable: 'seg-t', HistoryTable: 'hist-t', ClustersTable: 'cl-t', PromoteMirrorStateMachineArn: arn(), ClusterId: 'prod' };
const resolveDoc = (doc: unknown, o: { stack?: string; region?: string } = {}) =>
  resolveAwsTarget({ outputs: 'o.json', ...o }, { readFile: () => (typeof doc === 'string' ? doc : JSON.stringify(doc)) });

describe('--outputs attacks', () => {
  test.each([
    ['not JSON', 'not json{'],
    ['empty file', ''],
    ['an array', '[1,2]'],
    ['null', 'null'],
    ['a number', '42'],
    ['empty object', '{}'],
    ['non-FTS stack', { Network: { VpcId: 'vpc-1' } }],
    ['two FTS stacks without --stack', { A: good, B: good }],
    ['Stacks: []', { Stacks: [] }],
  ])('%s: ValidationError', async (_, doc) => {
    await expect(resolveDoc(doc)).rejects.toThrow(ValidationError);
  });

  test('an ARN of another region than --region is refused', async () => {
    await expect(resolveDoc({ S: good }, { region: 'eu-west-1' })).rejects.toThrow(/--region eu-west-1, but the stack .* is in us-east-1/);
  });

  test('state machine ARNs in two regions are refused', () => {
    expect(() => targetFromOutputs({ ...good, RecoverSegmentsStateMachineArn: arn('eu-west-1').replace('PromoteMirror', 'RecoverSegments') } as Record<string, string>, 'x')).toThrow(/several regions/);
  });

  // Found by attack (fixed): a state machine ARN in a different partition than its region (aws-cn with us-east-1) was accepted.
  test('found by attack: an ARN whose partition does not match its region is refused', () => {
    expect(() => targetFromOutputs({ ...good, PromoteMirrorStateMachineArn: arn('us-east-1', 'aws-cn') }, 'x')).toThrow(ValidationError);
  });

  // Found by attack (fixed): the table names were not checked: odd characters were accepted and failed only later, inside the SDK.
  test.each([['with a space', 'seg t'], ['with a slash', 'seg/t'], ['too short', 'ab'], ['with a colon', 'arn:aws:x']])('found by attack: a table name %s is refused', (_, name) => {
    expect(() => targetFromOutputs({ ...good, SegmentsTable: name }, 'x')).toThrow(ValidationError);
  });

  // Found by attack (fixed): two outputs naming the same table were accepted (segments and clusters in one table).
  test('found by attack: the same table for segments and clusters is refused', () => {
    expect(() => targetFromOutputs({ ...good, ClustersTable: good.SegmentsTable }, 'x')).toThrow(ValidationError);
  });

  // Note (not failing): a ClusterId output with spaces is accepted here; checkClusterId refuses it at the first catalog read.

  test('--stack naming a stack the file lacks is refused', () => {
    expect(() => pickStack({ A: good }, 'o.json', 'B')).toThrow(/has no stack B; it has A/);
  });
});

const twoHosts = ['sdw1', 'sdw2'];
describe('init spec attacks', () => {
  const refused = async (spec: unknown) => {
    let err: unknown;
    try {
      await planInit(parseInitSpec(spec), { clusterId: 'atk' });
    } catch (e) {
      err = e;
    }
    return err;
  };
  test.each([
    ['a JSON array', [1]],
    ['unknown keys', { hosts: twoHosts, bogus: 1 }],
    ['a clusterId with spaces', { clusterId: 'a b', hosts: twoHosts }],
    ['negative port', { hosts: twoHosts, basePort: -1 }],
    ['huge port', { hosts: twoHosts, basePort: 70000 }],
    ['relative dataDirectoryRoot', { hosts: twoHosts, dataDirectoryRoot: 'data' }],
    ['duplicate hostnames', { hosts: ['sdw1', 'sdw1'] }],
    ['unknown setting', { hosts: twoHosts, settings: { probeIntervalSecs: 2 } }],
    ['contradictory settings', { hosts: twoHosts, settings: { autoActivateStandby: true, standbySynchronous: false } }],
    ['ports past 65535 (basePort 65535, 2 per host)', { hosts: twoHosts, primariesPerHost: 2, basePort: 65535 }],
    ['primary and mirror port ranges overlapping', { hosts: twoHosts, primariesPerHost: 2, basePort: 6000, mirrorBasePort: 6001 }],
    ['coordinator on a segment host at a primary port', { hosts: twoHosts, coordinator: { host: 'sdw1', port: 6000 } }],
    ['standby on the coordinator host and port', { hosts: twoHosts, coordinator: { host: 'cdw', standbyHost: 'cdw' } }],
    ['segments: duplicate ports on one host', { segments: [
      { dbid: 1, content: -1, role: 'p', port: 5432, hostname: 'cdw', datadir: '/c' },
      { dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/p0' },
      { dbid: 3, content: 1, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/p1' },
    ] }],
    ['segments: relative datadir', { segments: [{ dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: 'p0' }] }],
    ['segments: a mirror on its primary host', { segments: [
      { dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/p0' },
      { dbid: 3, content: 0, role: 'm', port: 7000, hostname: 'sdw1', datadir: '/m0' },
    ] }],
    ['segments: contents with gaps', { segments: [
      { dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/p0' },
      { dbid: 3, content: 2, role: 'p', port: 6000, hostname: 'sdw2', datadir: '/p2' },
    ] }],
    ['segments: duplicate dbid', { segments: [
      { dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/p0' },
      { dbid: 2, content: 1, role: 'p', port: 6000, hostname: 'sdw2', datadir: '/p1' },
    ] }],
    ['segments: one datadir twice on a host', { segments: [
      { dbid: 2, content: 0, role: 'p', port: 6000, hostname: 'sdw1', datadir: '/p' },
      { dbid: 3, content: 1, role: 'p', port: 6001, hostname: 'sdw1', datadir: '/p' },
    ] }],
    ['segments: no primary for content 0 (two mirrors)', { segments: [
      { dbid: 2, content: 0, role: 'm', port: 6000, hostname: 'sdw1', datadir: '/p0' },
      { dbid: 3, content: 0, role: 'm', port: 7000, hostname: 'sdw2', datadir: '/m0' },
    ] }],
  ])('%s: ValidationError', async (_, spec) => {
    const err = await refused(spec);
    expect(err).toBeInstanceOf(ValidationError);
  });

  test('empty and non-JSON spec files are refused', () => {
    expect(() => readInitSpec('s.json', () => '')).toThrow(/not valid JSON/);
    expect(() => readInitSpec('s.json', () => '[]')).toThrow(ValidationError);
  });

  test.each(['k', 'k=', '=v', 'k= ', ' =v'])('--discover-tag %j is refused', (v) => {
    expect(() => parseDiscoverTag(v)).toThrow(/--discover-tag takes key=value/);
  });
});

describe('settings --set attacks', () => {
  test.each([
    ['unknown key', 'probeIntervalSecs=2'],
    ['not a number', 'probeRetries=abc'],
    ['empty value', 'probeRetries='],
    ['boolean as number', 'autoActivateStandby=1'],
    ['number as boolean', 'probeRetries=true'],
    ['exponent', 'probeRetries=1e1'],
    ['no =', 'probeRetries'],
  ])('%s is refused by the flag parser', (_, v) => {
    expect(() => collectSet(v)).toThrow();
  });
  test('the same key twice is refused', () => {
    expect(() => collectSet('probeRetries=2', collectSet('probeRetries=3'))).toThrow(/given twice/);
  });
});

describe('settings and init against DynamoDB Local', () => {
  const spec = parseInitSpec({ hosts: ['sdw1', 'sdw2'], mirroring: 'group', coordinator: { host: 'cdw' } });
  const register = async (clusterId: string) => registerCluster(catalog, await planInit(spec, { clusterId }));

  test('out of range, non-integer and contradictory settings change nothing', async () => {
    const id = `s-${suffix}`;
    await register(id);
    for (const set of [['probeRetries=-1'], ['probeRetries=1.5'], ['probeIntervalSeconds=99999999999999999999'], ['autoActivateStandby=true', 'standbySynchronous=false'], ['probeTimeoutSeconds=60', 'probeRetries=10']]) {
      const changes = set.reduce((acc, v) => collectSet(v, acc), {});
      await expect(catalog.updateSettings(id, (c) => applySettingChanges(c, changes))).rejects.toThrow(ValidationError);
    }
    expect(await catalog.loadSettings(id)).toEqual(DEFAULT_SETTINGS);
  });

  test('two settings --set at once: neither is lost', async () => {
    const id = `c-${suffix}`;
    await register(id);
    const keys = ['probeRetries=5', 'probeParallelism=7', 'replicationAttempts=9', 'resetLoopThreshold=11'];
    const results = await Promise.allSettled(keys.map((k) => catalog.updateSettings(id, (c) => applySettingChanges(c, collectSet(k)))));
    const s = await catalog.loadSettings(id);
    const applied = keys.filter((k) => String((s as Record<string, unknown>)[k.split('=')[0]]) === k.split('=')[1]);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    // Every write that reported success must be in the catalog.
    expect(applied.length).toBe(ok);
  });

  // Found by attack (fixed): DynamoDbCatalog.initialize purged leftover rows (purgeRows) before its conditional
  // transaction; a losing concurrent init purges the winner's freshly written history (and
  // sometimes rows) after the winner committed, leaving a registered cluster without them.
  test('found by attack: init twice at once: one wins, with its rows and history intact', async () => {
    for (let i = 0; i < 5; i++) {
      const id = `r-${i}-${suffix}`;
      const results = await Promise.allSettled([register(id), register(id), register(id)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const snap = await catalog.load(id);
      expect(snap.segments).toHaveLength(5);
      expect(await catalog.history(id)).toHaveLength(1);
    }
  });

  test('init again without --replace is refused and changes nothing', async () => {
    const id = `p-${suffix}`;
    await register(id);
    await expect(register(id)).rejects.toThrow(/already registered .*nothing was written/);
    expect((await catalog.load(id)).segments).toHaveLength(5);
    expect(await catalog.history(id)).toHaveLength(1);
  });
});
