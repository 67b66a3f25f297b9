/** `ftsctl recoverseg`: Greenplum's flags mapped onto the workflows' console input; bad combinations start nothing. */
import { InvalidArgumentError } from 'commander';
import { buildProgram, formatRecoverseg, progressLine, recoversegRequest } from '../../bin/ftsctl';
import { WORKFLOW_SPECS } from '../../lambdas/workflows';
import { parseWorkflowInput } from '../../lambdas/workflows/spec';

const parse = (argv: string[]) => {
  const program = buildProgram();
  const cmd = program.commands.find((c) => c.name() === 'recoverseg')!;
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  cmd.parseOptions(argv);
  return cmd.opts();
};

test('the default is an incremental recovery of every down mirror', () => {
  expect(recoversegRequest('prod', 7, {})).toEqual({ kind: 'RecoverSegments', input: { clusterId: 'prod', catalogVersion: 7, mode: 'incremental' } });
});

test('-F, -B, --content, -p, -i map onto RecoverSegments input the spec accepts', () => {
  const full = recoversegRequest('prod', 7, { F: true, B: 4, content: [0, 2], poll: 3 });
  expect(full.input).toEqual({ clusterId: 'prod', catalogVersion: 7, mode: 'full', parallel: 4, pollSeconds: 3, contents: [0, 2] });
  const spare = recoversegRequest('prod', 7, { p: 'sdw9', spareAddress: '10.0.0.9' });
  expect(spare.input).toMatchObject({ spareHost: { hostname: 'sdw9', address: '10.0.0.9' } });
  const file = recoversegRequest('prod', 7, { i: '/tmp/x' }, () => 'sdw1|6000|/data/p0 sdw3|6001|/data/p0\n');
  expect(file.input).toMatchObject({ recoverConfig: 'sdw1|6000|/data/p0 sdw3|6001|/data/p0\n' });
  for (const r of [full, spare, file]) expect(() => parseWorkflowInput(WORKFLOW_SPECS.RecoverSegments, r.input)).not.toThrow();
});

test('-r maps onto Rebalance, with --replay-lag or --disable-replay-lag', () => {
  expect(recoversegRequest('prod', 7, { r: true })).toEqual({ kind: 'Rebalance', input: { clusterId: 'prod', catalogVersion: 7 } });
  expect(recoversegRequest('prod', 7, { r: true, replayLag: 64 }).input).toMatchObject({ replayLagMB: 64 });
  expect(recoversegRequest('prod', 7, { r: true, replayLagCheck: false }).input).toMatchObject({ replayLagMB: null });
  expect(() => parseWorkflowInput(WORKFLOW_SPECS.Rebalance, recoversegRequest('prod', 7, { r: true, replayLagCheck: false }).input)).not.toThrow();
});

test.each([
  [{ r: true, F: true }, /-r \(rebalance\) does not go with -F/],
  [{ r: true, i: 'x' }, /does not go with -i/],
  [{ replayLag: 5 }, /only go with -r/],
  [{ r: true, replayLag: 5, replayLagCheck: false }, /exclude each other/],
  [{ i: 'x', p: 'h' }, /-i and -p exclude each other/],
  [{ i: 'x', content: [1] }, /-i and --content exclude each other/],
  [{ spareAddress: '1.2.3.4' }, /--spare-address goes with -p/],
])('refused: %j', (options, message) => {
  expect(() => recoversegRequest('prod', 7, options, () => '')).toThrow(InvalidArgumentError);
  expect(() => recoversegRequest('prod', 7, options, () => '')).toThrow(message);
});

test('an unreadable -i file is a clear error', () => {
  expect(() => recoversegRequest('prod', 7, { i: '/nope' }, () => { throw new Error('ENOENT: no such file'); })).toThrow(/cannot read the recover config file \/nope: ENOENT/);
});

test('flags parse as gprecoverseg spells them', () => {
  expect(parse(['-F', '-B', '4', '--content', '0,2'])).toMatchObject({ F: true, B: 4, content: [0, 2] });
  expect(parse(['-r', '--replay-lag', '12.5'])).toMatchObject({ r: true, replayLag: 12.5 });
  expect(() => parse(['--content', '0,x'])).toThrow(/--content takes content ids/);
  expect(() => parse(['-B', '0'])).toThrow(/-B must be a positive integer/);
  expect(() => parse(['--replay-lag', 'lots'])).toThrow(/--replay-lag must be a number of MB/);
});

test('progress and summary text', () => {
  expect(progressLine(3, 50 * 1024 * 1024, 200 * 1024 * 1024, 'pg_basebackup')).toBe('content 3 [#####...............] 25% 50/200 MB (pg_basebackup)');
  const text = formatRecoverseg({
    stateMachine: 'RecoverSegments',
    executionName: 'x',
    status: 'FAILED',
    output: { summarize: { done: [{ content: 0, dbid: 2 }], failed: [{ content: 1, reason: 'RebuildFailedError: boom' }], skipped: [{ content: 2, reason: 'double fault' }], warnings: ['w'] } },
  });
  expect(text).toBe(['RecoverSegments execution x: FAILED', '  content 0: dbid 2 recovered (up; in sync once caught up)', '  content 1: FAILED: RebuildFailedError: boom', '  content 2: left alone: double fault', '  warning: w'].join('\n'));
});
