/** `ftsctl initstandby`: gpinitstandby's flags mapped onto the InitStandby console input; bad flags start nothing. */
import { InvalidArgumentError } from 'commander';
import { buildProgram } from '../../bin/ftsctl';
import { formatInitstandby, initstandbyRequest, parsePort } from '../../cli/initstandby';
import { WORKFLOW_SPECS } from '../../lambdas/workflows';
import { parseWorkflowInput } from '../../lambdas/workflows/spec';

const parse = (argv: string[]) => {
  const program = buildProgram();
  const cmd = program.commands.find((c) => c.name() === 'initstandby')!;
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  cmd.parseOptions(argv);
  return cmd.opts();
};

test('-s, -P, --datadir map onto the input the spec accepts', () => {
  const r = initstandbyRequest('prod', 7, { s: 'scdw', P: 5433, datadir: '/data/standby/gpseg-1', poll: 3 });
  expect(r).toEqual({ kind: 'InitStandby', input: { clusterId: 'prod', catalogVersion: 7, hostname: 'scdw', port: 5433, datadir: '/data/standby/gpseg-1', pollSeconds: 3 } });
  expect(() => parseWorkflowInput(WORKFLOW_SPECS.InitStandby, r.input)).not.toThrow();
});

test('the address: --address, 127.0.0.1 on a local cluster, else (left out) the hostname', () => {
  expect(initstandbyRequest('prod', 7, { s: 'scdw', address: '10.0.1.9' }).input).toMatchObject({ address: '10.0.1.9' });
  expect(initstandbyRequest('local', 7, { s: 'scdw2' }, { local: true }).input).toMatchObject({ address: '127.0.0.1' });
  expect(initstandbyRequest('prod', 7, { s: 'scdw' }).input).not.toHaveProperty('address');
});

test('placement flags for AWS', () => {
  expect(initstandbyRequest('prod', 7, { s: 'scdw', instanceId: 'i-0abc', availabilityZone: 'us-east-1b', allowSameZone: true }).input).toMatchObject({
    instanceId: 'i-0abc',
    availabilityZone: 'us-east-1b',
    allowSameZone: true,
  });
});

test('-r removes the standby', () => {
  expect(initstandbyRequest('prod', 7, { r: true })).toEqual({ kind: 'InitStandby', input: { clusterId: 'prod', catalogVersion: 7, remove: true } });
  // The local address default does not make -r take an address.
  expect(initstandbyRequest('prod', 7, { r: true }, { local: true }).input).toEqual({ clusterId: 'prod', catalogVersion: 7, remove: true });
});

test('without a catalog version (a check of the flags alone) it is left out', () => {
  expect(initstandbyRequest('prod', undefined, { r: true }).input).toEqual({ clusterId: 'prod', remove: true });
});

test.each<[object, RegExp]>([
  [{}, /initstandby needs -s <host> \(add a standby on that host\) or -r \(remove the standby\)/],
  [{ r: true, s: 'scdw' }, /-r removes the standby the catalog names: it does not go with -s/],
  [{ r: true, P: 5433, datadir: '/x' }, /it does not go with -P, --datadir/],
  [{ r: true, allowSameZone: true }, /it does not go with --allow-same-zone/],
  [{ s: 'scdw', datadir: 'data/standby' }, /--datadir must be an absolute path, got "data\/standby"/],
  [{ s: 'scdw', datadir: '/' }, /initstandby: --datadir: must not be the root directory/],
  [{ s: 'sc dw' }, /initstandby: -s: must be a host name/],
  [{ s: 'scdw', address: 'a b' }, /initstandby: --address: must be an IP address or a DNS name/],
])('refused: %j', (options, message) => {
  expect(() => initstandbyRequest('prod', 7, options)).toThrow(InvalidArgumentError);
  expect(() => initstandbyRequest('prod', 7, options)).toThrow(message);
});

test('-P takes a port', () => {
  expect(parsePort('5433')).toBe(5433);
  for (const bad of ['0', '65536', 'x', '54.3', '-1']) expect(() => parsePort(bad)).toThrow(/-P must be a port \(1-65535\)/);
});

test('flags parse as gpinitstandby spells them', () => {
  expect(parse(['-s', 'scdw', '-P', '5433', '-S', '/data/s'])).toMatchObject({ s: 'scdw', P: 5433, datadir: '/data/s' });
  expect(parse(['-s', 'scdw', '--datadir', '/data/s', '--address', '10.0.0.9', '--allow-same-zone'])).toMatchObject({ s: 'scdw', datadir: '/data/s', address: '10.0.0.9', allowSameZone: true });
  expect(parse(['-r'])).toMatchObject({ r: true });
  expect(parse(['-r', '--state-machine-arn', 'arn:aws:states:us-east-1:123456789012:stateMachine:x', '--no-wait', '--json'])).toMatchObject({ r: true, wait: false, json: true });
  expect(() => parse(['-s', 'scdw', '-P', 'x'])).toThrow(/-P must be a port/);
  expect(() => parse(['-s', 'scdw', '--poll', '0'])).toThrow(/--poll must be a positive integer/);
});

test('a local run without --state-machine-arn refuses --no-wait before reading anything', async () => {
  const program = buildProgram();
  program.exitOverride();
  program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  await expect(program.parseAsync(['node', 'ftsctl', 'initstandby', '-s', 'scdw', '--no-wait', '--cluster', 'no-such-cluster'])).rejects.toThrow(/--no-wait needs --state-machine-arn/);
  await expect(program.parseAsync(['node', 'ftsctl', 'initstandby', '--cluster', 'no-such-cluster'])).rejects.toThrow(/initstandby needs -s <host>/);
});

test('what it prints', () => {
  expect(formatInitstandby({ executionName: 'e1', status: 'SUCCEEDED', output: { plan: { action: 'add', warnings: ['w1'] }, finish: { message: 'standby dbid 6 on scdw:5432 streams' } } })).toBe(
    'standby dbid 6 on scdw:5432 streams\nwarning: w1\n(InitStandby execution e1: SUCCEEDED)',
  );
  expect(formatInitstandby({ executionName: 'e2', status: 'SUCCEEDED', output: { plan: { action: 'remove' }, removeStandby: { message: 'standby dbid 6 removed' }, stopStandby: { warning: 'host down' } } })).toBe(
    'standby dbid 6 removed\nwarning: host down\n(InitStandby execution e2: SUCCEEDED)',
  );
  expect(formatInitstandby({ executionName: 'e3', status: 'FAILED', error: 'InvalidInput', cause: 'cluster x has a standby already' })).toBe('refused (nothing was changed): cluster x has a standby already\n(InitStandby execution e3: FAILED)');
  expect(formatInitstandby({ executionName: 'e4', status: 'FAILED', error: 'InitStandbyFailed', cause: 'the copy failed' })).toMatch(/^gpinitstandby failed: the copy failed/);
  expect(formatInitstandby({ executionName: 'e5', status: 'FAILED', error: 'RemoveStandbyFailed', cause: 'still streams' })).toMatch(/^gpinitstandby -r failed: still streams/);
});
