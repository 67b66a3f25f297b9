/**
 * What ships is what is tested, for the operator workflows: the FtsStack is synthesized
 * WITH bundling, and the bundled index.js of the PromoteMirror, RecoverSegments and
 * Rebalance functions run their synthesized definitions (LocalWorkflows) against a real
 * local cluster, end to end: a primary is killed, the bundled PromoteMirror fails over
 * to its mirror and fences it, the bundled RecoverSegments brings it back as a mirror,
 * and the bundled Rebalance switches the pair back to its preferred roles. Their host
 * operations go through the shipped SsmSegmentHost to a local SSM Run Command endpoint
 * (../support/local-ssm.ts) that runs each script on this machine, as the SSM agent runs
 * it on a segment host; every row of the cluster names its host's instance id. The
 * cluster's prober runs in-process meanwhile, as it runs beside the workflows in AWS.
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
import { LOCAL_SUPERUSER } from '../../cli/local-cluster';
import { killInstance } from '../../lambdas/adapters/local/host';
import { LocalWorkflows, type LocalExecutionOutcome, type StepEvent } from '../../lambdas/adapters/local/local-workflows';
import { localShellOptions } from '../../lambdas/adapters/local/postgres-binaries';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import type { ClusterSnapshot, SegmentRow } from '../../lambdas/core/model';
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

// dbids of the default test layout: primary 2 (sdw1) and mirror 4 (sdw2) hold content 0.
const P0 = 2;
const M0 = 4;

type OperatorKind = Extract<WorkflowKind, 'PromoteMirror' | 'RecoverSegments' | 'Rebalance'>;
type StepHandler = (event: StepEvent) => Promise<Record<string, unknown>>;
type Definition = ReturnType<BundledStack['definition']>;

const FUNCTION_OF: Record<OperatorKind, Exclude<FtsFunctionName, 'prober'>> = { PromoteMirror: 'promoteMirror', RecoverSegments: 'recoverSegments', Rebalance: 'rebalance' };

/** The EC2 instance id of a segment host: one per host name, as on EC2. */
const instanceIdOf = (hostname: string): string => `i-${Buffer.from(hostname).toString('hex').padStart(17, '0').slice(-17)}`;

describe('the bundled RecoverSegments and Rebalance, end to end on a local cluster, host operations through SSM', () => {
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

  beforeAll(async () => {
    bundled = synthesizeBundledStack();
    cluster = await testCluster('bundled-ops');
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
    // SsmSegmentHost connects pg_rewind and the mirrors as the OS user: a role of that name must exist.
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
      // Each bundle reads its own function's environment when it is loaded.
      Object.assign(process.env, localFunctionEnvironment(bundled.environment(fn), c.clusterId), hostEnv);
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
    for (const kind of ['RecoverSegments', 'Rebalance'] as const) {
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
});

/** Creates a superuser role named after the OS user on every primary (mirrors get it by replication). */
async function createReplicationRole(c: TestCluster, name: string): Promise<void> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`cannot create a role for the OS user ${JSON.stringify(name)} (${userInfo().username})`);
  const snapshot = await c.catalog.load(c.clusterId);
  for (const row of snapshot.segments.filter((r) => r.role === 'p')) {
    await withSegmentClient(row, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, (client) =>
      client.query(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${name}') THEN CREATE ROLE "${name}" LOGIN SUPERUSER REPLICATION; END IF; END $$`),
    );
  }
}
