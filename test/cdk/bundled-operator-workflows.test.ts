/**
 * What ships is what is tested, for the operator workflows: the FtsStack is synthesized
 * WITH bundling, and the bundled index.js of the PromoteMirror, RecoverSegments,
 * Rebalance, ActivateStandby and InitStandby functions run their synthesized definitions
 * (LocalWorkflows) against a real local cluster with a coordinator and its standby, end
 * to end: a primary is killed, the bundled PromoteMirror fails over to its mirror and
 * fences it, the bundled RecoverSegments brings it back as a mirror, and the bundled
 * Rebalance switches the pair back to its preferred roles. Then the coordinator is
 * killed and the bundled ActivateStandby fences it and makes its standby the
 * coordinator, and the bundled InitStandby adds a new standby on another host (copied
 * with pg_basebackup) and removes it again. Their host operations go through the
 * shipped SsmSegmentHost to a local SSM Run Command endpoint (../support/local-ssm.ts)
 * that runs each script on this machine, as the SSM agent runs it on a segment host;
 * every row of the cluster names its host's instance id. ActivateStandby's native EC2
 * StopInstances task is answered by a stand-in that records the request. The cluster's
 * prober runs in-process meanwhile, as it runs beside the workflows in AWS.
 *
 * The endpoint itself is checked first against the AWS SDK's own client: the statuses,
 * output limits, timeout, cancel and errors SsmSegmentHost relies on.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  SendCommandCommand,
  SSMClient,
  type GetCommandInvocationCommandOutput,
  type SendCommandCommandInput,
} from '@aws-sdk/client-ssm';
import { LOCAL_ADDRESS, LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { isRunning, killInstance } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { LocalWorkflows, type LocalExecutionOutcome, type StepEvent } from '../../lambdas/adapters/local/local-workflows';
import { localShellOptions } from '../../lambdas/adapters/local/postgres-binaries';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import { COORDINATOR_CONTENT, mirrorSlotName, type ClusterSnapshot, type SegmentRow } from '../../lambdas/core/model';
import type { WorkflowInputs } from '../../lambdas/workflows';
import type { WorkflowKind } from '../../lambdas/workflows/spec';
import { localFunctionEnvironment, synthesizeBundledStack, type BundledStack, type FtsFunctionName } from '../support/bundled-handlers';
import { testCluster, type TestCluster } from '../support/local-cluster-fixture';
import { MAX_STDERR_CHARS, MAX_STDOUT_CHARS, startLocalSsm, STOPPED_PREEMPTIVELY_EXIT_CODE, type LocalSsm, type LocalSsmInvocation } from '../support/local-ssm';
import { waitFor } from '../support/pg-pair';

jest.setTimeout(120_000);

const TERMINAL = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled']);

/** Whether a process runs (a zombie does not: PID 1 of a container may never reap it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

describe('the local SSM endpoint, through the AWS SDK', () => {
  let ssm: LocalSsm | undefined;
  let delayed: LocalSsm | undefined;
  let client: SSMClient;
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  const INSTANCE = 'i-0123456789abcdef0';
  let scratch: string;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'fts-local-ssm-test-'));
    ssm = await startLocalSsm();
    client = new SSMClient({ endpoint: ssm.endpoint, region: 'us-east-1', credentials, maxAttempts: 1 });
  });

  afterAll(async () => {
    client?.destroy();
    await ssm?.close();
    await delayed?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  const send = async (commands: string[], extra: Partial<SendCommandCommandInput> = {}, c = client): Promise<string> => {
    const sent = await c.send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', InstanceIds: [INSTANCE], Parameters: { commands }, TimeoutSeconds: 30, ...extra }));
    return sent.Command!.CommandId!;
  };
  const ended = (commandId: string, c = client): Promise<GetCommandInvocationCommandOutput> =>
    waitFor(
      `command ${commandId} to end`,
      async () => {
        const inv = await c.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: INSTANCE }));
        return TERMINAL.has(inv.Status ?? '') ? inv : undefined;
      },
      20_000,
      50,
    );
  const errorOf = (p: Promise<unknown>) => p.then(() => 'no error', (e: Error) => e.name);

  test('runs the commands joined with newlines as one bash script, in a process group of its own, and reports Success with its output', async () => {
    const id = await send(['#!/bin/bash', 'set -euo pipefail', 'echo "out $BASH_VERSION $AWS_SSM_INSTANCE_ID"', 'echo err >&2', 'read -r -a stat < /proc/$$/stat', 'echo "group ${stat[4]} of $$"']);
    const inv = await ended(id);
    expect(inv).toMatchObject({ Status: 'Success', StatusDetails: 'Success', ResponseCode: 0, PluginName: 'aws:runShellScript', StandardErrorContent: 'err\n' });
    expect(inv.StandardOutputContent).toMatch(new RegExp(`^out \\d+\\.\\S+ ${INSTANCE}\\ngroup (\\d+) of \\1\\n$`));
    expect(inv.ExecutionEndDateTime).not.toBe('');
  });

  test('a non-zero exit is Failed with that code; a script killed by a signal not sent by SSM is Failed with ResponseCode -1', async () => {
    expect(await ended(await send(['echo about to fail >&2', 'exit 3']))).toMatchObject({ Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 3, StandardErrorContent: 'about to fail\n' });
    expect(await ended(await send(['kill -9 $$']))).toMatchObject({ Status: 'Failed', ResponseCode: -1 });
  });

  test('gives only the first 24,000 characters of stdout and 8,000 of stderr, and nothing while the script runs', async () => {
    const inv = await ended(await send(['head -c 30000 /dev/zero | tr "\\0" o', 'head -c 10000 /dev/zero | tr "\\0" e >&2']));
    expect(inv.Status).toBe('Success');
    expect(inv.StandardOutputContent).toBe('o'.repeat(MAX_STDOUT_CHARS));
    expect(inv.StandardErrorContent).toBe('e'.repeat(MAX_STDERR_CHARS));
    const id = await send(['echo early', 'sleep 30']);
    const running = await waitFor('the script to run', async () => {
      const r = await client.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: INSTANCE }));
      return r.Status === 'InProgress' ? r : undefined;
    });
    expect(running).toMatchObject({ ResponseCode: -1, StandardOutputContent: '', StandardErrorContent: '' });
    await client.send(new CancelCommandCommand({ CommandId: id, InstanceIds: [INSTANCE] }));
    expect((await ended(id)).Status).toBe('Cancelled');
  });

  test('past its executionTimeout the script and everything it started are killed: TimedOut (ExecutionTimedOut)', async () => {
    const pidFile = join(scratch, 'timed-out.pid');
    const commands = [`sleep 60 & echo $! > ${pidFile}`, 'wait'];
    const inv = await ended(await send(commands, { Parameters: { commands, executionTimeout: ['1'] } }));
    expect(inv).toMatchObject({ Status: 'TimedOut', StatusDetails: 'ExecutionTimedOut', ResponseCode: STOPPED_PREEMPTIVELY_EXIT_CODE });
    const child = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(`process ${child} to be gone`, async () => (alive(child) ? undefined : true), 5000, 20);
  });

  test('CancelCommand kills the script and everything it started: Cancelled; cancelling again is no error', async () => {
    const pidFile = join(scratch, 'cancelled.pid');
    const id = await send([`sleep 60 & echo $! > ${pidFile}`, 'wait']);
    const child = await waitFor('the script to start its child', async () => Number(await readFile(pidFile, 'utf8').catch(() => '')) || undefined);
    expect(alive(child)).toBe(true);
    await client.send(new CancelCommandCommand({ CommandId: id, InstanceIds: [INSTANCE] }));
    expect(await ended(id)).toMatchObject({ Status: 'Cancelled', StatusDetails: 'Cancelled', ResponseCode: STOPPED_PREEMPTIVELY_EXIT_CODE });
    await waitFor(`process ${child} to be gone`, async () => (alive(child) ? undefined : true), 5000, 20);
    await client.send(new CancelCommandCommand({ CommandId: id, InstanceIds: [INSTANCE] }));
    expect(ssm!.running()).toBe(0);
  });

  test('errors as SSM gives them: unknown invocation or command, a document, parameter, instance id or timeout SSM refuses', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    expect(await errorOf(client.send(new GetCommandInvocationCommand({ CommandId: unknown, InstanceId: INSTANCE })))).toBe('InvocationDoesNotExist');
    expect(await errorOf(client.send(new CancelCommandCommand({ CommandId: unknown, InstanceIds: [INSTANCE] })))).toBe('InvalidCommandId');
    expect(await errorOf(send(['true'], { DocumentName: 'AWS-RunPowerShellScript' }))).toBe('InvalidDocument');
    expect(await errorOf(send(['true'], { Parameters: { commands: ['true'], executionTimeout: ['0'] } }))).toBe('InvalidParameters');
    expect(await errorOf(send(['true'], { Parameters: { commands: ['true'], timeout: ['5'] } }))).toBe('InvalidParameters');
    expect(await errorOf(send(['true'], { InstanceIds: ['sdw1'] }))).toBe('InvalidInstanceId');
    expect(await errorOf(send(['true'], { TimeoutSeconds: 10 }))).toBe('ValidationException');
    expect(await errorOf(send(['true'], { Comment: 'x'.repeat(101) }))).toBe('ValidationException');
  });

  test('right after SendCommand the invocation may not exist yet (InvocationDoesNotExist), as in SSM', async () => {
    delayed = await startLocalSsm({ registrationDelayMs: 300 });
    const c = new SSMClient({ endpoint: delayed.endpoint, region: 'us-east-1', credentials, maxAttempts: 1 });
    try {
      const id = await send(['echo hello'], {}, c);
      expect(await errorOf(c.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: INSTANCE })))).toBe('InvocationDoesNotExist');
      expect(await ended(id, c)).toMatchObject({ Status: 'Success', StandardOutputContent: 'hello\n' });
    } finally {
      c.destroy();
    }
  });
});

// dbids of the default test layout: primary 2 (sdw1) and mirror 4 (sdw2) hold content 0;
// the coordinator is dbid 1 (cdw), its standby the next dbid after the mirrors (scdw).
const P0 = 2;
const M0 = 4;
const COORDINATOR = 1;

type OperatorKind = Extract<WorkflowKind, 'PromoteMirror' | 'RecoverSegments' | 'Rebalance' | 'ActivateStandby' | 'InitStandby'>;
type StepHandler = (event: StepEvent) => Promise<Record<string, unknown>>;
type Definition = ReturnType<BundledStack['definition']>;

const FUNCTION_OF: Record<OperatorKind, Exclude<FtsFunctionName, 'prober'>> = {
  PromoteMirror: 'promoteMirror',
  RecoverSegments: 'recoverSegments',
  Rebalance: 'rebalance',
  ActivateStandby: 'activateStandby',
  InitStandby: 'initStandby',
};

/** The EC2 instance id of a segment host: one per host name, as on EC2. */
const instanceIdOf = (hostname: string): string => `i-${Buffer.from(hostname).toString('hex').padStart(17, '0').slice(-17)}`;

describe('the bundled operator workflows, end to end on a local cluster with a coordinator and standby, host operations through SSM', () => {
  let bundled: BundledStack | undefined;
  let cluster: TestCluster | undefined;
  let ssm: LocalSsm | undefined;
  const handlers = {} as Record<OperatorKind, StepHandler>;
  const definitions = {} as Record<OperatorKind, Definition>;
  const bundleTexts = {} as Record<OperatorKind, string>;
  /** Executions still running when a test gave up: aborted in afterAll. */
  const inFlight = new Set<LocalWorkflows>();
  const savedEnv = { ...process.env };
  /** Rows that write the commit log, and what was committed so far. */
  const commits: string[] = [];
  /** What the stand-in of EC2 StopInstances (ActivateStandby's native task) was asked. */
  const stopInstancesRequests: unknown[] = [];

  beforeAll(async () => {
    bundled = synthesizeBundledStack();
    cluster = await testCluster('bundled-ops', { coordinator: true, standby: true });
    const c = cluster;
    // The scripts switch to the OS user the local cluster runs PostgreSQL as: root (as the
    // SSM agent) uses runuser; a non-root run already is that user (the local endpoint's
    // sudo then only runs the command).
    const shell = localShellOptions();
    const switchUserToSelf = shell.runAs === 'none';
    // As in SSM, an invocation exists a moment after SendCommand: the first PollRebuild (200 ms
    // after StartRebuild) meets InvocationDoesNotExist, as it may in AWS.
    ssm = await startLocalSsm({ registrationDelayMs: 800, switchUserToSelf });
    const hostEnv = { FTS_PG_OS_USER: shell.osUser!, FTS_PG_BIN: shell.pgBin!, FTS_PG_RUN_AS: switchUserToSelf ? 'sudo' : 'runuser', AWS_ENDPOINT_URL_SSM: ssm.endpoint };
    // SsmSegmentHost connects pg_rewind, pg_basebackup and the mirrors as the OS user: a role of that name must exist.
    if (shell.osUser !== LOCAL_SUPERUSER) await createReplicationRole(c, shell.osUser!);

    // Every row names its host's EC2 instance: a catalog change, with a history row each.
    const before = await c.catalog.load(c.clusterId);
    const time = new Date().toISOString();
    await c.catalog.apply(c.clusterId, before.version, {
      rows: before.segments.map((r) => ({ ...r, instanceId: instanceIdOf(r.hostname) })),
      history: before.segments.map((r) => ({ time, dbid: r.dbid, description: `test: dbid ${r.dbid} runs on ${r.hostname}, instance ${instanceIdOf(r.hostname)} (local SSM)` })),
    });

    for (const kind of Object.keys(FUNCTION_OF) as OperatorKind[]) {
      const fn = FUNCTION_OF[kind];
      definitions[kind] = bundled.definition(fn);
      const path = bundled.bundlePath(fn);
      expect(path.startsWith(bundled.outdir)).toBe(true);
      bundleTexts[kind] = readFileSync(path, 'utf8');
      // Each bundle reads its own function's environment when it is loaded: that one alone, nothing left from the one before.
      for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
      Object.assign(process.env, savedEnv, localFunctionEnvironment(bundled.environment(fn), c.clusterId), hostEnv);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      handlers[kind] = (require(path) as { handler: StepHandler }).handler;
      expect(typeof handlers[kind]).toBe('function');
    }
  }, 300_000);

  afterAll(async () => {
    const steps: [string, () => Promise<unknown> | void][] = [
      ['abort executions', () => inFlight.forEach((w) => w.list().filter((e) => !e.outcome).forEach((e) => w.abort(e.name)))],
      ['close the local SSM', () => ssm?.close()],
      ['destroy the cluster', () => cluster?.destroy()],
      ['remove the cloud assembly', () => bundled?.remove()],
    ];
    const errors: string[] = [];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    }
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
    if (errors.length) throw new Error(`cleanup failed: ${errors.join('; ')}`);
  }, 120_000);

  /** Runs a workflow's synthesized definition with its bundled handler; returns its outcome and the steps called. */
  async function runBundled<K extends OperatorKind>(kind: K, input: WorkflowInputs[K]): Promise<{ outcome: LocalExecutionOutcome; steps: string[] }> {
    const steps: string[] = [];
    const workflows = new LocalWorkflows({
      workflows: {
        [kind]: {
          definition: structuredClone(definitions[kind]),
          handler: (event: StepEvent) => {
            steps.push(event.step);
            return handlers[kind](event);
          },
          // ActivateStandby's native EC2 call: recorded and answered as EC2 would, nothing is stopped.
          sdkTasks: {
            StopCoordinatorInstance: async (parameters: unknown) => {
              steps.push('StopCoordinatorInstance');
              stopInstancesRequests.push(parameters);
              const ids = (parameters as { InstanceIds?: string[] }).InstanceIds ?? [];
              return { StoppingInstances: ids.map((InstanceId) => ({ InstanceId, CurrentState: { Code: 64, Name: 'stopping' }, PreviousState: { Code: 16, Name: 'running' } })) };
            },
          },
        },
      },
      retryIntervalMs: 0,
      waitMs: 200,
    });
    inFlight.add(workflows);
    const outcome = await workflows.runExecution(kind, `bundled-${kind}-${Date.now()}`, input);
    inFlight.delete(workflows);
    return { outcome, steps };
  }

  const state = async (dbid: number) => {
    const r = await cluster!.row(dbid);
    return `${r.role}/${r.status}/${r.mode}`;
  };
  const waitState = (dbid: number, want: string, timeoutMs = 60_000) => waitFor(`dbid ${dbid} ${want}`, async () => ((await state(dbid)) === want ? true : undefined), timeoutMs);
  const sql = <T>(row: SegmentRow, text: string, values: unknown[] = []) =>
    withSegmentClient(row, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, async (client) => (await client.query(text, values)).rows as T[]);

  /** Commits a row on the acting primary of content 0 (sync rep: acknowledged once its mirror has it, when it has one in sync). */
  async function commit(what: string): Promise<void> {
    const snapshot = await cluster!.catalog.load(cluster!.clusterId);
    const primary = snapshot.segments.find((r) => r.content === 0 && r.role === 'p')!;
    await sql(primary, 'CREATE TABLE IF NOT EXISTS bundled_ops (what text PRIMARY KEY)');
    await sql(primary, 'INSERT INTO bundled_ops VALUES ($1)', [what]);
    commits.push(what);
  }
  /** Every commit so far is on `row` (a standby once it has replayed it). */
  const allCommitsOn = (row: SegmentRow) =>
    waitFor(`every commit on dbid ${row.dbid}`, async () => {
      const have = new Set((await sql<{ what: string }>(row, 'SELECT what FROM bundled_ops')).map((r) => r.what));
      return commits.every((c) => have.has(c)) ? true : undefined;
    });

  /** The SSM commands sent for a dbid: `<comment> @ <instance> <status>`. */
  const commandsFor = (dbid: number, since: Date): string[] =>
    ssm!
      .invocations()
      .filter((i) => i.requestedAt >= since && new RegExp(`dbid ${dbid}( |$)`).test(i.comment))
      .map((i) => `${i.comment} @ ${i.instanceId} ${i.status}`);
  const failedCommands = (): LocalSsmInvocation[] => ssm!.invocations().filter((i) => i.status === 'Failed' || i.status === 'TimedOut');

  test('the bundles keep, as class names, every error name the operator state machines match on', () => {
    for (const kind of ['RecoverSegments', 'Rebalance', 'ActivateStandby', 'InitStandby'] as const) {
      const names = new Set<string>();
      const walk = (states: Record<string, Record<string, unknown>>) => {
        for (const s of Object.values(states)) {
          for (const r of [...((s.Retry as { ErrorEquals: string[] }[] | undefined) ?? []), ...((s.Catch as { ErrorEquals: string[] }[] | undefined) ?? [])]) r.ErrorEquals.forEach((n) => names.add(n));
          const inner = (s.ItemProcessor ?? s.Iterator) as { States: Record<string, Record<string, unknown>> } | undefined;
          if (inner) walk(inner.States);
        }
      };
      walk(definitions[kind].States);
      const domain = [...names].filter((n) => !n.startsWith('States.') && !n.startsWith('Lambda.')).sort();
      expect(domain).toEqual(expect.arrayContaining(['CatalogConflictError', 'ContentBusyError', 'ValidationError']));
      expect({ kind, missing: domain.filter((n) => !bundleTexts[kind].includes(`"${n}"`)) }).toEqual({ kind, missing: [] });
    }
  });

  test('a killed primary: the bundled PromoteMirror promotes its mirror and fences the old primary on its host through SSM', async () => {
    const c = cluster!;
    const since = new Date();
    await commit('before the failover');
    const mirror = await c.row(M0);
    expect(await killInstance((await c.row(P0)).datadir)).toBe(true);
    await waitFor(`mirror dbid ${M0} to stop streaming from the killed primary`, async () => ((await c.control.walReceiver(mirror)).state !== 'streaming' ? true : undefined), 30_000);
    const snapshot: ClusterSnapshot = await c.catalog.load(c.clusterId);
    const { outcome, steps } = await runBundled('PromoteMirror', {
      clusterId: c.clusterId,
      content: 0,
      failedPrimaryDbid: P0,
      mirrorDbid: M0,
      catalogVersion: snapshot.version,
      reason: `primary dbid ${P0} of content 0 failed (connection refused after 2 attempt(s)); its mirror dbid ${M0} is in sync: promoting it`,
    });
    expect({ status: outcome.status, error: outcome.error, cause: outcome.cause }).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    expect(steps).toEqual(expect.arrayContaining(['fence-old-primary', 'flip-catalog', 'promote', 'verify-writable']));
    expect((outcome.output as { fenceOldPrimary?: unknown }).fenceOldPrimary).toMatchObject({ fenced: true });
    expect(commandsFor(P0, since)).toEqual([`fts fence dbid ${P0} content 0 @ ${instanceIdOf('sdw1')} Success`]);
    const after = await c.catalog.load(c.clusterId);
    expect(after.segments.find((r) => r.dbid === M0)).toMatchObject({ role: 'p', status: 'u' });
    expect(after.segments.find((r) => r.dbid === P0)).toMatchObject({ role: 'm', status: 'd' });
    expect({ promotions: after.pendingPromotions, fences: after.pendingFences }).toEqual({ promotions: [], fences: [] });
    // From here on the cluster's prober runs beside the workflows, as in AWS.
    c.startProber();
    await commit('after the failover');
  });

  test('the bundled RecoverSegments rebuilds the old primary as a mirror on its host (pg_rewind through SSM); the prober then marks the pair in sync', async () => {
    const c = cluster!;
    const since = new Date();
    const { outcome, steps } = await runBundled('RecoverSegments', { clusterId: c.clusterId, pollSeconds: 1 });
    expect({ status: outcome.status, error: outcome.error, cause: outcome.cause }).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    expect((outcome.output as { summarize?: unknown }).summarize).toMatchObject({ complete: true, done: [{ content: 0, dbid: P0 }], failed: [], skipped: [] });
    expect(steps).toEqual(expect.arrayContaining(['plan', 'start-rebuild', 'poll-rebuild', 'mark-recovered', 'summarize']));
    expect(steps).not.toContain('record-content-failure');
    expect(await state(P0)).toMatch(/^m\/u\/[ns]$/);
    const rebuilds = ssm!.invocations().filter((i) => i.requestedAt >= since && i.comment.startsWith('fts start rebuild'));
    expect(rebuilds.map((i) => `${i.comment} @ ${i.instanceId} ${i.status} ${i.executionTimeoutSeconds}`)).toEqual([
      `fts start rebuild by rewind dbid ${P0} content 0 @ ${instanceIdOf('sdw1')} Success 172800`,
    ]);
    expect(failedCommands()).toEqual([]);
    expect((await c.catalog.load(c.clusterId)).pendingOperations).toEqual([]);
    await waitState(P0, 'm/u/s');
    await waitState(M0, 'p/u/s');
    await allCommitsOn(await c.row(P0));
  });

  test('the bundled Rebalance switches the pair back to its preferred roles (planned switchover, rewind through SSM), losing no commit', async () => {
    const c = cluster!;
    const since = new Date();
    await commit('before the rebalance');
    const { outcome, steps } = await runBundled('Rebalance', { clusterId: c.clusterId, pollSeconds: 1 });
    expect({ status: outcome.status, error: outcome.error, cause: outcome.cause }).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    expect((outcome.output as { summarize?: unknown }).summarize).toMatchObject({ complete: true, done: [{ content: 0, dbid: M0 }], failed: [], skipped: [] });
    expect(steps).toEqual(expect.arrayContaining(['plan', 'switch-over', 'start-rebuild', 'poll-rebuild', 'mark-recovered', 'summarize']));
    expect(steps).not.toContain('record-content-failure');
    expect(await state(P0)).toMatch(/^p\/u\/[ns]$/);
    expect(await state(M0)).toMatch(/^m\/u\/[ns]$/);
    const sdw2 = instanceIdOf('sdw2');
    expect(commandsFor(M0, since).filter((line) => !line.startsWith('fts progress'))).toEqual([
      `fts stop -m fast dbid ${M0} content 0 @ ${sdw2} Success`,
      // Fenced before the flip: its standby config written, nothing of it running.
      `fts fence dbid ${M0} content 0 @ ${sdw2} Success`,
      `fts start rebuild by rewind dbid ${M0} content 0 @ ${sdw2} Success`,
    ]);
    expect(failedCommands()).toEqual([]);
    await waitState(M0, 'm/u/s');
    await waitState(P0, 'p/u/s');
    await commit('after the rebalance');
    await allCommitsOn(await c.row(P0));
    await allCommitsOn(await c.row(M0));
  });

  test('the cluster ends as it began: preferred roles, all up and in sync, nothing pending, and every instance is what the catalog says', async () => {
    const c = cluster!;
    const snapshot = await c.catalog.load(c.clusterId);
    expect(snapshot.status).toBe('up');
    expect({ promotions: snapshot.pendingPromotions, fences: snapshot.pendingFences, operations: snapshot.pendingOperations }).toEqual({ promotions: [], fences: [], operations: [] });
    expect(snapshot.segments.map((r) => `${r.dbid} ${r.role}/${r.status}/${r.mode}`).sort()).toEqual(
      snapshot.segments.map((r) => `${r.dbid} ${r.preferredRole}/u/s`).sort(),
    );
    const settings = await c.catalog.loadSettings(c.clusterId);
    for (const row of snapshot.segments) {
      const probe = await c.probe.probe(row, { ...settings, probeRetries: 0 });
      expect({ dbid: row.dbid, ok: probe.ok, inRecovery: probe.ok ? probe.inRecovery : undefined }).toEqual({ dbid: row.dbid, ok: true, inRecovery: row.role === 'm' });
      if (row.role === 'm') expect({ dbid: row.dbid, receiver: (await c.control.walReceiver(row)).state }).toEqual({ dbid: row.dbid, receiver: 'streaming' });
    }
    // Every host operation went to the host of its row, ended, and none failed.
    for (const inv of ssm!.invocations()) {
      const dbid = Number(/dbid (\d+)/.exec(inv.comment)?.[1]);
      const row = snapshot.segments.find((r) => r.dbid === dbid);
      expect({ comment: inv.comment, instanceId: inv.instanceId }).toEqual({ comment: inv.comment, instanceId: row ? instanceIdOf(row.hostname) : 'a row of the cluster' });
    }
    expect(ssm!.running()).toBe(0);
    expect(failedCommands()).toEqual([]);
  });

  const coordinatorRows = async () => {
    const rows = (await cluster!.catalog.load(cluster!.clusterId)).segments.filter((r) => r.content === COORDINATOR_CONTENT);
    return { coordinator: rows.find((r) => r.role === 'p'), standby: rows.find((r) => r.role === 'm'), rows };
  };
  const rowState = (r: SegmentRow | undefined) => (r ? `${r.role}/${r.status}/${r.mode}` : 'none');
  const coordinatorPairIs = (coordinator: string, standby: string) =>
    waitFor(`the coordinator ${coordinator} and its standby ${standby}`, async () => {
      const rows = await coordinatorRows();
      return rowState(rows.coordinator) === coordinator && rowState(rows.standby) === standby ? true : undefined;
    }, 60_000);
  /** Commits a row on the acting coordinator; returns how long the commit took (a synchronous one waits for the standby). */
  async function coordinatorCommit(what: string): Promise<number> {
    const { coordinator } = await coordinatorRows();
    await sql(coordinator!, 'CREATE TABLE IF NOT EXISTS bundled_coordinator (what text PRIMARY KEY)');
    const started = Date.now();
    await sql(coordinator!, 'INSERT INTO bundled_coordinator VALUES ($1)', [what]);
    return Date.now() - started;
  }
  /** The standby InitStandby adds: a new host, its data directory under the cluster's. */
  const SCDW2 = 'scdw2';
  let added: { dbid: number; port: number; datadir: string } | undefined;

  test('a killed coordinator: the bundled ActivateStandby fences it on its host through SSM, stops its instance natively, and makes its standby the coordinator', async () => {
    const c = cluster!;
    const { coordinator: old, standby } = await coordinatorRows();
    expect({ old: old && `${old.dbid} ${rowState(old)}`, standby: rowState(standby) }).toEqual({ old: `${COORDINATOR} p/u/s`, standby: 'm/u/s' });
    expect(await coordinatorCommit('before the activation')).toBeLessThan(5000);
    const since = new Date();
    expect(await killInstance(old!.datadir)).toBe(true);
    // As by the time an operator runs gpactivatestandby: the standby no longer hears from the coordinator.
    await waitFor(`standby dbid ${standby!.dbid} to stop streaming from the killed coordinator`, async () => ((await c.control.walReceiver(standby!)).state !== 'streaming' ? true : undefined), 30_000);
    const { outcome, steps } = await runBundled('ActivateStandby', { clusterId: c.clusterId, stopInstance: true });
    expect({ status: outcome.status, error: outcome.error, cause: outcome.cause }).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    // In order, each once (a retried step would repeat its name).
    expect([...new Set(steps)]).toEqual(['validate', 'confirm-down', 'fence-coordinator', 'StopCoordinatorInstance', 'activate', 'move-endpoint', 'verify-write', 'finish']);
    const output = outcome.output as Record<string, Record<string, unknown>>;
    expect(output.fenceCoordinator).toMatchObject({ fenced: true, stopInstance: true, instanceIds: [instanceIdOf('cdw')] });
    expect(stopInstancesRequests).toEqual([{ InstanceIds: [instanceIdOf('cdw')], Force: true }]);
    // No client endpoint in the template: nothing is moved, the write is checked at the new coordinator itself.
    expect(output.moveEndpoint).toMatchObject({ moved: false });
    expect(output.verifyWrite).toMatchObject({ through: `${standby!.address}:${standby!.port}` });
    expect(commandsFor(COORDINATOR, since)).toEqual([`fts fence dbid ${COORDINATOR} content -1 @ ${instanceIdOf('cdw')} Success`]);
    expect(failedCommands()).toEqual([]);

    const after = await coordinatorRows();
    expect(after.rows).toEqual([expect.objectContaining({ dbid: standby!.dbid, role: 'p', preferredRole: 'p', status: 'u', mode: 'n', instanceId: instanceIdOf('scdw') })]);
    expect((await c.catalog.load(c.clusterId)).pendingOperations).toEqual([]);
    expect((await c.catalog.history(c.clusterId)).map((h) => h.description).join('\n')).toMatch(
      new RegExp(`gpactivatestandby: coordinator dbid ${COORDINATOR} .* removed[\\s\\S]*activation of dbid ${standby!.dbid} complete`),
    );
    expect(await coordinatorCommit('after the activation')).toBeLessThan(5000);

    // The fence left it a standby of the new coordinator: restarted by hand (systemd, a person) it is read-only.
    const asBuilt = c.state.rows.find((r) => r.dbid === COORDINATOR)!;
    await c.host.start(asBuilt);
    const zombieWrite = sql(asBuilt, "SET synchronous_commit = local; CREATE TABLE IF NOT EXISTS zombie_writes (id int); INSERT INTO zombie_writes VALUES (1)");
    await expect(zombieWrite).rejects.toThrow(/read-only|recovery/);
    await c.host.stop(asBuilt, 'fast');
  });

  test('the bundled InitStandby adds a standby on a new host (pg_basebackup through SSM); it streams, and the prober marks the pair in sync', async () => {
    const c = cluster!;
    const { coordinator } = await coordinatorRows();
    const port = await freePort();
    const datadir = join(c.state.dir, SCDW2, 'coordinator', 'gpseg-1');
    const since = new Date();
    const { outcome, steps } = await runBundled('InitStandby', { clusterId: c.clusterId, hostname: SCDW2, address: LOCAL_ADDRESS, port, datadir, instanceId: instanceIdOf(SCDW2), pollSeconds: 1 });
    expect({ status: outcome.status, error: outcome.error, cause: outcome.cause }).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    expect(steps).toEqual(expect.arrayContaining(['plan', 'start-copy', 'poll-copy', 'verify-streaming', 'finish']));
    expect(steps).not.toContain('record-failure');
    const output = outcome.output as { plan: { dbid: number }; finish: { message: string } };
    const dbid = output.plan.dbid;
    added = { dbid, port, datadir };
    expect(output.finish.message).toMatch(/sync rep is on/);
    const rebuilds = ssm!.invocations().filter((i) => i.requestedAt >= since && i.comment.startsWith('fts start rebuild'));
    expect(rebuilds.map((i) => `${i.comment} @ ${i.instanceId} ${i.status} ${i.executionTimeoutSeconds}`)).toEqual([
      `fts start rebuild by basebackup dbid ${dbid} content -1 @ ${instanceIdOf(SCDW2)} Success 172800`,
    ]);
    expect(commandsFor(dbid, since).filter((line) => !line.startsWith('fts progress') && !line.startsWith('fts start rebuild'))).toEqual([]);
    expect(failedCommands()).toEqual([]);

    const { standby } = await coordinatorRows();
    expect(standby).toMatchObject({ dbid, hostname: SCDW2, address: LOCAL_ADDRESS, port, datadir, instanceId: instanceIdOf(SCDW2), role: 'm', preferredRole: 'm', status: 'u' });
    expect(standby!.systemIdentifier).toBe(coordinator!.systemIdentifier);
    expect(await c.control.walReceiver(standby!)).toMatchObject({ inRecovery: true, state: 'streaming', senderPort: coordinator!.port });
    await coordinatorPairIs('p/u/s', 'm/u/s'); // the prober's doing, once the standby has caught up
    const probe = await c.probe.probe(coordinator!, { ...(await c.catalog.loadSettings(c.clusterId)), probeRetries: 0 }, standby);
    expect(probe.ok && { syncRepOn: probe.syncRepOn, mirror: probe.mirror.state }).toEqual({ syncRepOn: true, mirror: 'streaming' });
    // A synchronous commit: the standby acknowledges it at once.
    expect(await coordinatorCommit('with the new standby')).toBeLessThan(5000);
    expect((await c.catalog.load(c.clusterId)).pendingOperations).toEqual([]);
  });

  test('the bundled InitStandby -r removes it (stopped through SSM, its slot dropped, its row gone); the coordinator commits alone, at once', async () => {
    const c = cluster!;
    const { dbid, datadir } = added!;
    const since = new Date();
    const { outcome, steps } = await runBundled('InitStandby', { clusterId: c.clusterId, remove: true });
    expect({ status: outcome.status, error: outcome.error, cause: outcome.cause }).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    expect([...new Set(steps)]).toEqual(['plan', 'disable-sync-rep', 'stop-standby', 'remove-standby']);
    expect(commandsFor(dbid, since)).toEqual([`fts stop -m fast dbid ${dbid} content -1 @ ${instanceIdOf(SCDW2)} Success`]);
    const rows = await coordinatorRows();
    expect({ standby: rows.standby, coordinator: rowState(rows.coordinator) }).toEqual({ standby: undefined, coordinator: 'p/u/n' });
    expect(isRunning(datadir)).toBe(false);
    const slots = await sql<{ slot_name: string }>(rows.coordinator!, 'SELECT slot_name FROM pg_replication_slots');
    expect(slots.map((s) => s.slot_name)).not.toContain(mirrorSlotName(dbid));
    expect(await coordinatorCommit('alone again')).toBeLessThan(2000);
    expect((await c.catalog.load(c.clusterId)).pendingOperations).toEqual([]);

    // Every host operation of the run went to the instance of its row's host (rows since removed included), and none failed.
    const hostOf = new Map<number, string>([...c.state.rows.map((r): [number, string] => [r.dbid, r.hostname]), [dbid, SCDW2]]);
    for (const inv of ssm!.invocations()) {
      const of = Number(/dbid (\d+)/.exec(inv.comment)?.[1]);
      expect({ comment: inv.comment, instanceId: inv.instanceId }).toEqual({ comment: inv.comment, instanceId: hostOf.has(of) ? instanceIdOf(hostOf.get(of)!) : 'a row of the cluster' });
    }
    expect(ssm!.running()).toBe(0);
    expect(failedCommands()).toEqual([]);
  });
});

/** Creates a superuser role named after the OS user on every primary and the coordinator (mirrors and the standby get it by replication). */
async function createReplicationRole(c: TestCluster, name: string): Promise<void> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`cannot create a role for the OS user ${JSON.stringify(name)} (${userInfo().username})`);
  const snapshot = await c.catalog.load(c.clusterId);
  for (const row of snapshot.segments.filter((r) => r.role === 'p')) {
    await withSegmentClient(row, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, (client) =>
      client.query(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${name}') THEN CREATE ROLE "${name}" LOGIN SUPERUSER REPLICATION; END IF; END $$`),
    );
  }
}
