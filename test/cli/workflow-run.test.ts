/**
 * `ftsctl workflow run`: the local path as a user runs it (a child process through tsx,
 * against a local cluster), and the AWS path's requests in-process with
 * aws-sdk-client-mock (no network).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { DescribeExecutionCommand, GetExecutionHistoryCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { buildProgram, runWorkflowInAws } from '../../bin/ftsctl';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';

jest.setTimeout(180_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const env: NodeJS.ProcessEnv = { ...process.env };
delete env.FTS_CLUSTER_ID;

/** Runs ftsctl as a child process. */
function ftsctl(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [require.resolve('tsx/cli'), join(__dirname, '..', '..', 'bin', 'ftsctl.ts'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('on a local cluster', () => {
  let cluster: TestCluster;
  // dbids of the default test layout: content 0 has primary 2 and mirror 4.
  const PRIMARY = 2;
  const MIRROR = 4;
  beforeAll(async () => {
    cluster = await testCluster('wf-run');
  });
  afterAll(async () => {
    await cluster?.destroy();
  });
  const local = (): string[] => ['--cluster', cluster.clusterId, '--dir', cluster.state.dir];

  test('malformed JSON: a clear error, nothing runs', async () => {
    const before = await cluster.catalog.load(cluster.clusterId);
    const run = await ftsctl(['workflow', 'run', 'PromoteMirror', '--input', '{"clusterId": ', ...local()]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/^ftsctl: the execution input is not valid JSON: /);
    expect(run.stdout).toBe('');
    expect((await cluster.catalog.load(cluster.clusterId)).version).toBe(before.version);
  });

  test('an unknown state machine: a clear error naming the known ones', async () => {
    const run = await ftsctl(['workflow', 'run', 'PromoteMirrors', '--input', '{}', ...local()]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/unknown state machine "PromoteMirrors"; known: PromoteMirror/);
  });

  test('input the workflow rejects (an unknown key): FAILED with InvalidInput, exit 1', async () => {
    const before = await cluster.catalog.load(cluster.clusterId);
    const input = { clusterId: cluster.clusterId, content: 0, failedPrimaryDbid: PRIMARY, mirrorDbid: MIRROR, catalogVersion: before.version, force: true };
    const run = await ftsctl(['workflow', 'run', 'PromoteMirror', '--input', JSON.stringify(input), ...local()]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^PromoteMirror execution ftsctl-[0-9a-f-]+: FAILED\nerror: InvalidInput\ncause: invalid PromoteMirror input: .*force/);
    expect(await cluster.catalog.load(cluster.clusterId)).toEqual(before);
  });

  test('PromoteMirror with the two dbids swapped on a healthy cluster: FAILED with InvalidInput, nothing changed', async () => {
    const before = await cluster.catalog.load(cluster.clusterId);
    // What a person might paste into the console: the healthy primary named as the mirror to promote.
    const input = { clusterId: cluster.clusterId, content: 0, failedPrimaryDbid: MIRROR, mirrorDbid: PRIMARY, catalogVersion: before.version, reason: 'by hand' };
    const run = await ftsctl(['workflow', 'run', 'PromoteMirror', '--json', '--input', JSON.stringify(input), ...local()]);
    const after = await cluster.catalog.load(cluster.clusterId);
    const settings = await cluster.catalog.loadSettings(cluster.clusterId);
    const primary = await cluster.probe.probe(await cluster.row(PRIMARY), settings, await cluster.row(MIRROR));
    const mirror = await cluster.probe.probe(await cluster.row(MIRROR), settings);

    expect(run.stderr).toBe('');
    const result = JSON.parse(run.stdout) as { status: string; error?: string; cause?: string };
    expect(result).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
    expect(run.code).toBe(1);
    expect(after.version).toBe(before.version);
    expect(after.segments).toEqual(before.segments);
    expect(primary).toMatchObject({ ok: true, inRecovery: false, syncRepOn: true, mirror: { state: 'streaming', syncState: 'sync' } });
    expect(mirror).toMatchObject({ ok: true, inRecovery: true });
  });
});

describe('in AWS (--state-machine-arn), requests checked in-process', () => {
  const sfn = mockClient(SFNClient);
  beforeEach(() => sfn.reset());
  afterAll(() => sfn.restore());
  const ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:PromoteMirror-prod';
  const EXECUTION_ARN = 'arn:aws:states:us-east-1:123456789012:execution:PromoteMirror-prod:by-hand';
  const client = (): SFNClient => new SFNClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  const inputText = '{ "clusterId": "prod", "content": 3, "failedPrimaryDbid": 5, "mirrorDbid": 9, "catalogVersion": 42 }';

  test('StartExecution with the name and the input exactly as given, DescribeExecution until it ends', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION_ARN, startDate: new Date() });
    sfn
      .on(DescribeExecutionCommand)
      .resolvesOnce({ executionArn: EXECUTION_ARN, status: 'RUNNING', stateMachineArn: ARN, startDate: new Date() })
      .resolves({ executionArn: EXECUTION_ARN, status: 'SUCCEEDED', stateMachineArn: ARN, startDate: new Date(), output: '{"notify":{"notified":true}}' });
    const result = await runWorkflowInAws(client(), ARN, 'PromoteMirror', inputText, { executionName: 'by-hand', pollMs: 1 });

    expect(sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input)).toEqual([{ stateMachineArn: ARN, name: 'by-hand', input: inputText }]);
    expect(sfn.commandCalls(DescribeExecutionCommand).map((c) => c.args[0].input)).toEqual([{ executionArn: EXECUTION_ARN }, { executionArn: EXECUTION_ARN }]);
    expect(result).toEqual({ stateMachine: 'PromoteMirror', executionName: 'by-hand', executionArn: EXECUTION_ARN, status: 'SUCCEEDED', output: { notify: { notified: true } } });
  });

  test('a failed execution: error and the Lambda error message as the cause', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION_ARN, startDate: new Date() });
    sfn.on(DescribeExecutionCommand).resolves({
      executionArn: EXECUTION_ARN,
      status: 'FAILED',
      stateMachineArn: ARN,
      startDate: new Date(),
      error: 'InvalidInput',
      cause: JSON.stringify({ errorType: 'ValidationError', errorMessage: 'invalid PromoteMirror input: reason: too long', trace: [] }),
    });
    const result = await runWorkflowInAws(client(), ARN, 'PromoteMirror', inputText, { pollMs: 1 });
    expect(result).toMatchObject({ status: 'FAILED', error: 'InvalidInput', cause: 'invalid PromoteMirror input: reason: too long' });
    expect(result.executionName).toMatch(/^ftsctl-[0-9a-f-]{36}$/);
    expect(sfn.commandCalls(StartExecutionCommand)[0].args[0].input.name).toBe(result.executionName);
  });

  test('a RecoverSegments run in AWS reports each content\'s latest copy progress from the execution history', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION_ARN, startDate: new Date() });
    sfn
      .on(DescribeExecutionCommand)
      .resolvesOnce({ executionArn: EXECUTION_ARN, status: 'RUNNING', stateMachineArn: ARN, startDate: new Date() })
      .resolves({ executionArn: EXECUTION_ARN, status: 'SUCCEEDED', stateMachineArn: ARN, startDate: new Date(), output: '{}' });
    const exited = (id: number, name: string, content: number, bytes: number) => ({
      id,
      timestamp: new Date(),
      type: 'TaskStateExited' as const,
      stateExitedEventDetails: { name, output: JSON.stringify({ item: { content }, pollRebuild: { state: 'running', progress: { bytes, total: 100, tool: 'pg_basebackup' } } }) },
    });
    // Newest first, as reverseOrder gives them.
    sfn.on(GetExecutionHistoryCommand).resolves({ events: [exited(9, 'PollRebuild', 1, 70), exited(8, 'PollRebuild', 0, 40), exited(5, 'PollRebuild', 1, 10), exited(4, 'Plan', 0, 0)] });
    const seen: unknown[] = [];
    await runWorkflowInAws(client(), ARN, 'RecoverSegments', '{"clusterId":"prod"}', { pollMs: 1, onProgress: (p) => seen.push(p) });
    expect(seen).toEqual([
      { content: 0, bytes: 40, total: 100, tool: 'pg_basebackup' },
      { content: 1, bytes: 70, total: 100, tool: 'pg_basebackup' },
    ]);
    expect(sfn.commandCalls(GetExecutionHistoryCommand)[0].args[0].input).toEqual({ executionArn: EXECUTION_ARN, reverseOrder: true, maxResults: 200, includeExecutionData: true });
  });

  test('a bad ARN is refused before any request', async () => {
    await expect(runWorkflowInAws(client(), 'arn:aws:lambda:us-east-1:123456789012:function:x', 'PromoteMirror', inputText)).rejects.toThrow(/--state-machine-arn must be a state machine ARN/);
    expect(sfn.calls()).toHaveLength(0);
  });

  describe('through the command line', () => {
    let out: string;
    let exitCode: typeof process.exitCode;
    beforeEach(() => {
      out = '';
      exitCode = process.exitCode;
      jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
        out += chunk.toString();
        return true;
      });
    });
    afterEach(() => {
      jest.restoreAllMocks();
      process.exitCode = exitCode; // the command sets it; the test run's own must not change
    });
    const run = (args: string[]) => buildProgram().exitOverride().parseAsync(['node', 'ftsctl', 'workflow', 'run', ...args]);

    test('--json prints one object; exit code 1 when the execution did not succeed', async () => {
      sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION_ARN, startDate: new Date() });
      sfn.on(DescribeExecutionCommand).resolves({ executionArn: EXECUTION_ARN, status: 'ABORTED', stateMachineArn: ARN, startDate: new Date() });
      await run(['PromoteMirror', '--input', inputText, '--state-machine-arn', ARN, '--name', 'by-hand', '--json']);
      expect(JSON.parse(out)).toEqual({ stateMachine: 'PromoteMirror', executionName: 'by-hand', executionArn: EXECUTION_ARN, status: 'ABORTED' });
      expect(process.exitCode).toBe(1);
      expect(sfn.commandCalls(StartExecutionCommand)[0].args[0].input).toEqual({ stateMachineArn: ARN, name: 'by-hand', input: inputText });
    });

    test('malformed JSON starts nothing', async () => {
      await expect(run(['PromoteMirror', '--input', '{"content": 3,', '--state-machine-arn', ARN])).rejects.toThrow(/the execution input is not valid JSON/);
      expect(sfn.calls()).toHaveLength(0);
      expect(out).toBe('');
    });
  });
});
