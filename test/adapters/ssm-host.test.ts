import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  SendCommandCommand,
  SSMClient,
  type SendCommandCommandInput,
} from '@aws-sdk/client-ssm';
import { HostCommandError, ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { SsmSegmentHost } from '../../lambdas/adapters/aws/ssm-host';
import {
  fenceScript,
  rebuildAsMirrorScript,
  shellQuote,
  startScript,
  stopScript,
  writeIdentityScript,
  writeMirrorConfigScript,
} from '../../lambdas/adapters/aws/shell';

const ssm = mockClient(SSMClient);

beforeEach(() => ssm.reset());

const client = (): SSMClient => new SSMClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const host = (extra: Partial<ConstructorParameters<typeof SsmSegmentHost>[0]> = {}): SsmSegmentHost =>
  new SsmSegmentHost({ client: client(), pollIntervalMs: 1, ...extra });

const primary: SegmentRow = {
  dbid: 2, content: 0, role: 'p', preferredRole: 'p', mode: 's', status: 'u', port: 6000,
  hostname: 'sdw1', address: '10.0.1.11', datadir: '/data/primary/gpseg0', instanceId: 'i-0000000000000001',
};
const mirror: SegmentRow = {
  dbid: 5, content: 0, role: 'm', preferredRole: 'm', mode: 's', status: 'u', port: 7000,
  hostname: 'sdw2', address: '10.0.2.12', datadir: '/data/mirror/gpseg0', instanceId: 'i-0000000000000002',
};

/** SendCommand answers with a command id; GetCommandInvocation with the given statuses in turn (a success prints a stop report). */
function mockRun(...statuses: Array<'Pending' | 'InProgress' | 'Success'>): void {
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
  const get = ssm.on(GetCommandInvocationCommand);
  for (const Status of statuses) {
    get.resolvesOnce({ Status, ResponseCode: Status === 'Success' ? 0 : -1, ...(Status === 'Success' ? { StandardOutputContent: 'STOP wasRunning=0\n' } : {}) });
  }
}

function sent(): SendCommandCommandInput {
  const calls = ssm.commandCalls(SendCommandCommand);
  expect(calls).toHaveLength(1);
  return calls[0].args[0].input;
}

function sentScript(): string {
  const commands = sent().Parameters?.commands;
  expect(commands).toHaveLength(1);
  return commands![0];
}

describe('SsmSegmentHost: what it sends', () => {
  it('start: AWS-RunShellScript on the segment instance with pg_ctl start -w', async () => {
    mockRun('Success');
    await host({ timeoutSeconds: 900 }).start(primary);

    const input = sent();
    expect(input.DocumentName).toBe('AWS-RunShellScript');
    expect(input.InstanceIds).toEqual(['i-0000000000000001']);
    expect(input.Parameters?.executionTimeout).toEqual(['900']);
    expect(input.TimeoutSeconds).toBe(60);
    expect(input.Comment).toBe('fts start dbid 2 content 0');
    const script = sentScript();
    expect(script).toMatch(/^#!\/bin\/bash\nset -euo pipefail\n/);
    expect(script).toContain(
      "sudo -n -u 'gpadmin' -- '/usr/lib/postgresql/15/bin/pg_ctl' start -w -t '900' -D '/data/primary/gpseg0' -l '/data/primary/gpseg0/log/startup.log' -o '-p 6000'",
    );
    expect(ssm.commandCalls(GetCommandInvocationCommand)[0].args[0].input).toEqual({ CommandId: 'cmd-1', InstanceId: 'i-0000000000000001' });
  });

  it('stop: pg_ctl stop with the mode, tolerating an instance that is not running', async () => {
    mockRun('Success');
    expect(await host({ osUser: 'postgres', pgBin: '/opt/pg/bin', runAs: 'runuser' }).stop(mirror, 'immediate')).toEqual({ wasRunning: false });

    const input = sent();
    expect(input.InstanceIds).toEqual(['i-0000000000000002']);
    expect(input.Comment).toBe('fts stop -m immediate dbid 5 content 0');
    const script = sentScript();
    expect(script).toContain("runuser -u 'postgres' -- '/opt/pg/bin/pg_ctl' stop -w -t '600' -m 'immediate' -D '/data/mirror/gpseg0'");
    // Running means: the PID in postmaster.pid is a live process working in the data directory.
    expect(script).toContain("pm=$(fts_postmaster '/data/mirror/gpseg0')");
    expect(script).toContain("fts_clear_stale '/data/mirror/gpseg0'");
    expect(script).not.toContain('sudo');
  });

  it('rebuildAsMirror creates the mirror slot on the primary first, when given a control', async () => {
    mockRun('Success');
    const calls: string[] = [];
    const control = { ensureSlot: async (p: SegmentRow, mirrorDbid: number) => void calls.push(`slot for ${mirrorDbid} on ${p.dbid}`) };
    await host({ control }).rebuildAsMirror(mirror, primary, 'rewind');
    expect(calls).toEqual([`slot for ${mirror.dbid} on ${primary.dbid}`]);
    expect(sent().Comment).toBe('fts rebuild by rewind dbid 5 content 0');
  });

  it('rebuildAsMirror by pg_rewind: runs on the mirror host, sources from the primary address and port', async () => {
    mockRun('Success');
    await host().rebuildAsMirror(mirror, primary, 'rewind');

    const input = sent();
    expect(input.InstanceIds).toEqual(['i-0000000000000002']);
    expect(input.Comment).toBe('fts rebuild by rewind dbid 5 content 0');
    const script = sentScript();
    expect(script).toContain(
      "sudo -n -u 'gpadmin' -- '/usr/lib/postgresql/15/bin/pg_rewind' --target-pgdata='/data/mirror/gpseg0' " +
        "--source-server='host='\\''10.0.1.11'\\'' port='\\''6000'\\'' user='\\''gpadmin'\\'' application_name='\\''fts_mirror_dbid_5'\\'' dbname='\\''postgres'\\''' --progress",
    );
    // A standby cannot run the single-user crash recovery pg_rewind may need.
    const rmSignal = "sudo -n -u 'gpadmin' -- rm -f -- '/data/mirror/gpseg0/standby.signal'";
    // The just-promoted primary is checkpointed first, or pg_rewind may see no timeline change;
    // psql connects exactly as pg_rewind does, never prompting for a password.
    const checkpoint =
      "sudo -n -u 'gpadmin' -- '/usr/lib/postgresql/15/bin/psql' -X -q -w -v ON_ERROR_STOP=1 -d " +
      "'host='\\''10.0.1.11'\\'' port='\\''6000'\\'' user='\\''gpadmin'\\'' application_name='\\''fts_mirror_dbid_5'\\'' dbname='\\''postgres'\\''' -c CHECKPOINT";
    const rewind = "'/usr/lib/postgresql/15/bin/pg_rewind' --target-pgdata=";
    // Slots the instance kept from its time as a primary would pin WAL on the mirror.
    const dropSlots =
      "if sudo -n -u 'gpadmin' -- test -d '/data/mirror/gpseg0/pg_replslot'; then " +
      "sudo -n -u 'gpadmin' -- find '/data/mirror/gpseg0/pg_replslot' -mindepth 1 -delete; fi";
    for (const line of [rmSignal, checkpoint, dropSlots]) expect(script.split('\n')).toContain(line);
    // Order: stop, rm standby.signal, CHECKPOINT, pg_rewind, empty pg_replslot, config (standby.signal again), start.
    const steps = [
      "pg_ctl' stop",
      rmSignal,
      checkpoint,
      rewind,
      dropSlots,
      'primary_conninfo',
      "touch -- '/data/mirror/gpseg0/standby.signal'",
      "pg_ctl' start",
    ].map((step) => script.indexOf(step));
    expect(steps.every((i) => i > -1)).toBe(true);
    expect(steps).toEqual([...steps].sort((x, y) => x - y));
    expect(script).not.toContain('pg_basebackup');
    expect(script).not.toMatch(/password=|PGPASSWORD/i);
  });

  it('rebuildAsMirror by pg_rewind: the extra steps keep odd data directories and users quoted', () => {
    const row = { ...mirror, datadir: "/data/it's here/gpseg0" };
    const script = rebuildAsMirrorScript(row, { ...primary, address: "db host's" }, 'rewind', { runAs: 'runuser', osUser: 'postgres', replicationUser: "rep'user" });
    expect(script).toContain("runuser -u 'postgres' -- rm -f -- '/data/it'\\''s here/gpseg0/standby.signal'");
    expect(script).toContain("find '/data/it'\\''s here/gpseg0/pg_replslot' -mindepth 1 -delete");
    // psql and pg_rewind get the same single shell word as their source.
    const source = /psql' -X -q -w -v ON_ERROR_STOP=1 -d ('(?:[^']|'\\'')*') -c CHECKPOINT/.exec(script)?.[1];
    expect(source).toBeDefined();
    expect(script).toContain(`--source-server=${source} --progress`);
    expect(execFileSync('bash', ['-c', `printf '%s' ${source!}`]).toString()).toBe(
      "host='db host\\'s' port='6000' user='rep\\'user' application_name='fts_mirror_dbid_5' dbname='postgres'",
    );
    expect(spawnSync('bash', ['-n', '-c', script]).status).toBe(0);
  });

  it('rebuildAsMirror by pg_basebackup: no rewind-only steps', () => {
    const script = rebuildAsMirrorScript(mirror, primary, 'basebackup');
    expect(script).not.toContain('CHECKPOINT');
    expect(script).not.toContain('pg_replslot');
    expect(script).not.toContain("rm -f -- '/data/mirror/gpseg0/standby.signal'");
  });

  it('rebuildAsMirror by pg_basebackup: empties the data directory and streams through the mirror slot', async () => {
    mockRun('Success');
    await host().rebuildAsMirror(mirror, primary, 'basebackup');

    const script = sentScript();
    expect(script).toContain("sudo -n -u 'gpadmin' -- find '/data/mirror/gpseg0' -mindepth 1 -delete");
    expect(script).toContain(
      "sudo -n -u 'gpadmin' -- '/usr/lib/postgresql/15/bin/pg_basebackup' -D '/data/mirror/gpseg0' -h '10.0.1.11' -p '6000' -U 'gpadmin' -X stream -S 'fts_mirror_dbid_5' --checkpoint=fast --no-password",
    );
    expect(script.indexOf('-mindepth 1 -delete')).toBeLessThan(script.indexOf("pg_basebackup' -D"));
    // Emptied only as a directory with no PostgreSQL process left in it.
    expect(script.indexOf("fts_instance_pids '/data/mirror/gpseg0' ''")).toBeLessThan(script.indexOf('-mindepth 1 -delete'));
    expect(script).not.toContain('pg_rewind');
  });

  it('writeMirrorConfig: primary_conninfo with the slot as application_name, slot name, standby.signal', async () => {
    mockRun('Success');
    await host().writeMirrorConfig(mirror, primary);

    const input = sent();
    expect(input.InstanceIds).toEqual(['i-0000000000000002']);
    expect(input.Comment).toBe('fts mirror config dbid 5 content 0');
    const script = sentScript();
    expect(script).toContain("'primary_slot_name = '\\''fts_mirror_dbid_5'\\'''");
    expect(script).toContain('application_name=');
    expect(script).toContain("touch -- '/data/mirror/gpseg0/standby.signal'");
    expect(script).toContain("mv -f -- '/data/mirror/gpseg0/postgresql.auto.conf.fts-tmp' '/data/mirror/gpseg0/postgresql.auto.conf'");
    // The mirror's own identity: a pg_basebackup copy carries the primary's.
    expect(script).toContain("'fts.dbid = '\\''5'\\''' 'fts.content = '\\''0'\\'''");
  });

  it('writeIdentity: fts.dbid and fts.content into postgresql.auto.conf', async () => {
    mockRun('Success');
    await host().writeIdentity(primary);
    expect(sent().Comment).toBe('fts identity dbid 2 content 0');
    const script = sentScript();
    expect(script).toContain("sed -E '/^[[:space:]]*(fts\\.dbid|fts\\.content)[[:space:]]*=/d' '/data/primary/gpseg0/postgresql.auto.conf'");
    expect(script).toContain("'fts.dbid = '\\''2'\\''' 'fts.content = '\\''0'\\'''");
    expect(script).not.toContain('standby.signal');
  });

  it('fence: standby config pointing at the new primary first, then an immediate stop with the fence timeout, then the kill', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-f' } });
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Success',
      ResponseCode: 0,
      StandardOutputContent: 'waiting for server to shut down.... failed\nthe immediate stop did not end the instance\nSIGKILL to 4242 4243\nFENCE wasRunning=1 killed=1 missing=0\n',
    });
    const report = await host({ fenceTimeoutSeconds: 7, osUser: 'postgres', runAs: 'runuser' }).fence(primary, mirror);
    expect(report).toEqual({ wasRunning: true, killed: true, missing: false });

    const input = sent();
    expect(input.InstanceIds).toEqual(['i-0000000000000001']);
    expect(input.Comment).toBe('fts fence dbid 2 content 0');
    const script = sentScript();
    const signal = "runuser -u 'postgres' -- touch -- '/data/primary/gpseg0/standby.signal'";
    const stop = "runuser -u 'postgres' -- '/usr/lib/postgresql/15/bin/pg_ctl' stop -w -t '7' -m immediate -D '/data/primary/gpseg0'";
    const kill = "  fts_kill '/data/primary/gpseg0' \"$pm\"";
    const steps = ['postgresql.auto.conf', signal, stop, kill, 'echo "FENCE wasRunning='].map((step) => script.indexOf(step));
    expect(steps.every((i) => i > -1)).toBe(true);
    expect(steps).toEqual([...steps].sort((x, y) => x - y));
    // It follows the new primary under the fenced instance's own slot and name, and keeps its identity.
    expect(script).toContain(
      "'primary_conninfo = '\\''host='\\'''\\''10.0.2.12'\\'''\\'' port='\\'''\\''7000'\\'''\\'' user='\\'''\\''postgres'\\'''\\'' application_name='\\'''\\''fts_mirror_dbid_2'\\'''\\'''\\''' " +
        "'primary_slot_name = '\\''fts_mirror_dbid_2'\\'''",
    );
    expect(script).toContain("'fts.dbid = '\\''2'\\''' 'fts.content = '\\''0'\\'''");
    expect(spawnSync('bash', ['-n', '-c', script]).status).toBe(0);
  });

  it('fence without a new primary writes standby.signal and the identity, no primary_conninfo', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-f' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'FENCE wasRunning=0 killed=0 missing=1\n' });
    expect(await host().fence(primary, undefined)).toEqual({ wasRunning: false, killed: false, missing: true });
    const script = sentScript();
    expect(script).toContain("sudo -n -u 'gpadmin' -- touch -- '/data/primary/gpseg0/standby.signal'");
    expect(script).toContain("'fts.dbid = '\\''2'\\'''");
    expect(script).not.toContain('primary_conninfo');
    expect(script).toContain("stop -w -t '10' -m immediate");
  });

  it('fence: a script that succeeded without a report line is a HostCommandError; a wrong pair is refused before any call', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-f' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'something else\n' });
    await expect(host().fence(primary, mirror)).rejects.toThrow(HostCommandError);
    ssm.reset();
    await expect(host().fence(primary, { ...mirror, content: 1 })).rejects.toThrow(/not a pair/);
    await expect(host().fence({ ...primary, instanceId: undefined }, mirror)).rejects.toThrow(ValidationError);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('rejects a row without instanceId before any call, naming the dbid', async () => {
    const noInstance = { ...mirror, instanceId: undefined };
    const sh = host();
    for (const call of [
      () => sh.start(noInstance),
      () => sh.stop(noInstance, 'fast'),
      () => sh.rebuildAsMirror(noInstance, primary, 'rewind'),
      () => sh.writeMirrorConfig(noInstance, primary),
      () => sh.fence(noInstance, primary),
      () => sh.writeIdentity(noInstance),
    ]) {
      await expect(call()).rejects.toThrow(ValidationError);
      await expect(call()).rejects.toThrow(/dbid 5/);
    }
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('rejects invalid options and rows', async () => {
    expect(() => new SsmSegmentHost({ client: client(), timeoutSeconds: 0 })).toThrow(ValidationError);
    expect(() => new SsmSegmentHost({ client: client(), deliveryTimeoutSeconds: 10 })).toThrow(ValidationError);
    await expect(host({ osUser: 'gp admin; rm -rf /' }).start(primary)).rejects.toThrow(ValidationError);
    await expect(host().start({ ...primary, datadir: '/' })).rejects.toThrow(ValidationError);
    await expect(host().start({ ...primary, datadir: 'relative/dir' })).rejects.toThrow(ValidationError);
    await expect(host().rebuildAsMirror(mirror, { ...primary, content: 1 }, 'rewind')).rejects.toThrow(/not a pair/);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });
});

describe('SsmSegmentHost: polling', () => {
  it('polls through Pending and InProgress to Success', async () => {
    mockRun('Pending', 'InProgress', 'InProgress', 'Success');
    await host().start(primary);
    expect(ssm.commandCalls(GetCommandInvocationCommand)).toHaveLength(4);
  });

  it('keeps polling while the invocation does not exist yet', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
    ssm
      .on(GetCommandInvocationCommand)
      .rejectsOnce(new InvocationDoesNotExist({ message: 'not yet', $metadata: {} }))
      .rejectsOnce(new InvocationDoesNotExist({ message: 'not yet', $metadata: {} }))
      .resolvesOnce({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'STOP wasRunning=0\n' });
    await host().stop(primary, 'fast');
    expect(ssm.commandCalls(GetCommandInvocationCommand)).toHaveLength(3);
  });

  it('maps a failed script to HostCommandError with the exit code and the stderr tail', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-9' } });
    const noise = 'x'.repeat(5000);
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 1,
      StandardErrorContent: `${noise}\npg_rewind: error: could not connect to server: connection refused\n`,
    });
    const err = await host().rebuildAsMirror(mirror, primary, 'rewind').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostCommandError);
    const e = err as HostCommandError;
    expect(e.name).toBe('HostCommandError');
    expect(e.exitCode).toBe(1);
    expect(e.output).toMatch(/pg_rewind: error: could not connect to server: connection refused$/);
    expect(e.output!.length).toBeLessThanOrEqual(2000);
    expect(e.message).toContain('dbid 5');
    expect(e.message).toContain('cmd-9 Failed');
    expect(e.message).toContain('exit code 1');
    expect(e.message).toContain('pg_rewind: error: could not connect');
  });

  it('maps TimedOut and Cancelled to HostCommandError without an exit code', async () => {
    for (const [Status, StatusDetails] of [['TimedOut', 'ExecutionTimedOut'], ['Cancelled', 'Cancelled']] as const) {
      ssm.reset();
      ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-2' } });
      ssm.on(GetCommandInvocationCommand).resolves({ Status, StatusDetails, ResponseCode: -1 });
      const err = (await host().start(primary).catch((e: unknown) => e)) as HostCommandError;
      expect(err).toBeInstanceOf(HostCommandError);
      expect(err.exitCode).toBeUndefined();
      expect(err.message).toContain(Status);
    }
  });

  it('operationBudgetSeconds: a start that hangs is cancelled within the budget, below the calling Lambda\'s timeout', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-b' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'InProgress', ResponseCode: -1 });
    ssm.on(CancelCommandCommand).resolves({});
    let clock = 0;
    const budgeted = new SsmSegmentHost({ client: new SSMClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } }), pollIntervalMs: 0, operationBudgetSeconds: 45, now: () => (clock += 1000) });
    const err = (await budgeted.start(primary).catch((e: unknown) => e)) as HostCommandError;
    expect(err).toBeInstanceOf(HostCommandError);
    expect(err.message).toMatch(/no result from command cmd-b within 45 s/);
    expect(ssm.commandCalls(SendCommandCommand)[0].args[0].input.Parameters?.executionTimeout).toEqual(['45']);
    expect(ssm.commandCalls(CancelCommandCommand)).toHaveLength(1);
    expect(() => new SsmSegmentHost({ operationBudgetSeconds: 10 })).toThrow(/operationBudgetSeconds must be an integer from 30 to 900/);
  });

  it('gives up at the deadline, cancels the command and throws HostCommandError', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-3' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'InProgress', ResponseCode: -1 });
    ssm.on(CancelCommandCommand).resolves({});
    let clock = 0;
    // Each read of the clock moves it on by 20 s: the deadline (60 + 30 + 30 s) passes in a few polls.
    const sh = host({ timeoutSeconds: 30, now: () => (clock += 20_000) });
    const err = (await sh.start(primary).catch((e: unknown) => e)) as HostCommandError;
    expect(err).toBeInstanceOf(HostCommandError);
    expect(err.message).toContain('cmd-3');
    expect(err.message).toContain('InProgress');
    expect(ssm.commandCalls(CancelCommandCommand)[0].args[0].input).toEqual({ CommandId: 'cmd-3', InstanceIds: ['i-0000000000000001'] });
  });

  it('a fence gives up within its own budget (a hung host keeps the command Pending), cancels it and fails, so the workflow goes on', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-4' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Pending', ResponseCode: -1 });
    ssm.on(CancelCommandCommand).resolves({});
    let clock = 0;
    const sh = host({ fenceBudgetSeconds: 20, now: () => (clock += 5_000) });
    const err = (await sh.fence(primary, mirror).catch((e: unknown) => e)) as HostCommandError;
    expect(err).toBeInstanceOf(HostCommandError);
    expect(err.message).toMatch(/no result from command cmd-4 within 20 s \(last status Pending\); cancelled it/);
    expect(sent().Parameters?.executionTimeout).toEqual(['20']);
    expect(ssm.commandCalls(CancelCommandCommand)).toHaveLength(1);
    expect(() => host({ fenceBudgetSeconds: 12 })).toThrow(/fenceBudgetSeconds must be an integer from fenceTimeoutSeconds \+ 5 \(15\) to 600/);
  });

  it('maps a SendCommand error (host not managed by SSM) to HostCommandError', async () => {
    ssm.on(SendCommandCommand).rejects(Object.assign(new Error('Instances not in a valid state'), { name: 'InvalidInstanceId' }));
    const err = (await host().start(primary).catch((e: unknown) => e)) as HostCommandError;
    expect(err).toBeInstanceOf(HostCommandError);
    expect(err.message).toContain('InvalidInstanceId');
    expect(ssm.commandCalls(GetCommandInvocationCommand)).toHaveLength(0);
  });
});

describe('shell quoting', () => {
  const evil = "/data/it's here/gpseg0";
  // The datadir as one bash word; file paths under it continue the same word.
  const quoted = "'/data/it'\\''s here/gpseg0'";

  it('single-quotes a value and escapes embedded quotes', () => {
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    // bash reads the quoted word back as the original string.
    for (const value of [evil, '$(touch /tmp/pwned)', '`id`', 'a "b" \\c', '', "''"]) {
      expect(execFileSync('bash', ['-c', `printf '%s' ${shellQuote(value)}`]).toString()).toBe(value);
    }
  });

  it('quotes a datadir containing a single quote in every script it appears in', async () => {
    mockRun('Success');
    const row = { ...mirror, datadir: evil };
    await host().start(row);
    const script = sentScript();
    expect(script).toContain(`-D ${quoted} -l '/data/it'\\''s here/gpseg0/log/startup.log'`);
    expect(script).not.toContain(`-D ${evil}`);

    for (const s of [
      startScript(row),
      stopScript(row, 'fast'),
      writeMirrorConfigScript(row, primary),
      rebuildAsMirrorScript(row, primary, 'rewind'),
      rebuildAsMirrorScript(row, primary, 'basebackup'),
      fenceScript(row, primary),
      fenceScript(row, undefined),
      writeIdentityScript(row),
    ]) {
      expect(s).toContain(quoted.slice(0, -1));
      expect(s).not.toContain(evil);
      // Valid bash.
      expect(spawnSync('bash', ['-n', '-c', s]).status).toBe(0);
    }
  });
});

/*
 * The scripts for real, as root with runuser, against a PostgreSQL 15 instance whose data
 * directory has a single quote and a space in its path. Skipped where that is not possible.
 */
const PG_BIN = '/usr/lib/postgresql/15/bin';
const canRunPg =
  process.getuid?.() === 0 && existsSync(`${PG_BIN}/initdb`) && spawnSync('id', ['-u', 'postgres']).status === 0;

(canRunPg ? describe : describe.skip)('scripts run by bash against PostgreSQL', () => {
  let root: string;
  let datadir: string;
  const opts = { osUser: 'postgres', runAs: 'runuser' as const, pgBin: PG_BIN, pgCtlTimeoutSeconds: 60 };
  const run = (script: string): { status: number | null; out: string } => {
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const uid = (): number => Number(execFileSync('id', ['-u', 'postgres']).toString().trim());

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'fts-ssm-'));
    chmodSync(root, 0o755);
    const parent = join(root, "it's here");
    mkdirSync(parent);
    chownSync(parent, uid(), -1);
    datadir = join(parent, 'gpseg0');
    execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/initdb`, '-D', datadir, '-A', 'trust', '-U', 'postgres'], { stdio: 'ignore' });
  });

  afterAll(() => {
    spawnSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, 'stop', '-m', 'immediate', '-D', datadir], { stdio: 'ignore' });
    rmSync(root, { recursive: true, force: true });
  });

  it('start, start again, stop, stop again', async () => {
    const { freePort } = await import('../../lambdas/adapters/local/net');
    const row: SegmentRow = { ...primary, datadir, port: await freePort(), address: '127.0.0.1' };
    const started = run(startScript(row, opts));
    expect(started).toEqual({ status: 0, out: expect.any(String) });
    expect(run(`runuser -u postgres -- ${PG_BIN}/pg_isready -h 127.0.0.1 -p ${row.port}`).status).toBe(0);
    expect(run(startScript(row, opts)).out).toContain('already running');
    expect(run(stopScript(row, 'fast', opts)).status).toBe(0);
    const again = run(stopScript(row, 'immediate', opts));
    expect(again.status).toBe(0);
    expect(again.out).toContain('not running');
  });

  it('writes the mirror config, keeping other lines, and replacing earlier values', () => {
    const conf = join(datadir, 'postgresql.auto.conf');
    writeFileSync(conf, "# Do not edit this file manually!\nwork_mem = '8MB'\nprimary_conninfo = 'host=old'\n");
    const weird = { ...primary, address: "primary host's name" };
    for (let i = 0; i < 2; i++) expect(run(writeMirrorConfigScript({ ...mirror, datadir }, weird, opts)).status).toBe(0);
    const text = readFileSync(conf, 'utf8');
    expect(text).toBe(
      "# Do not edit this file manually!\nwork_mem = '8MB'\n" +
        "primary_conninfo = 'host=''primary host\\\\''s name'' port=''6000'' user=''postgres'' application_name=''fts_mirror_dbid_5'''\n" +
        "primary_slot_name = 'fts_mirror_dbid_5'\n" +
        "wal_retrieve_retry_interval = '100ms'\n" +
        "fts.dbid = '5'\n" +
        "fts.content = '0'\n",
    );
    expect(existsSync(join(datadir, 'standby.signal'))).toBe(true);
    // PostgreSQL itself reads the conninfo back as intended.
    const shown = run(`runuser -u postgres -- ${PG_BIN}/postgres -D ${shellQuote(datadir)} -C primary_conninfo`);
    expect(shown.out.trim()).toBe("host='primary host\\'s name' port='6000' user='postgres' application_name='fts_mirror_dbid_5'");
    expect(run(`runuser -u postgres -- ${PG_BIN}/postgres -D ${shellQuote(datadir)} -C fts.dbid`).out.trim()).toBe('5');
    rmSync(join(datadir, 'standby.signal'));
  });
});

/*
 * A whole failover cycle with the rebuild script, against two PostgreSQL 15 instances on
 * loopback in directories whose names need quoting: pg_basebackup builds the mirror, the
 * primary dies, the mirror is promoted, pg_rewind turns the old primary into its mirror.
 */
(canRunPg ? describe : describe.skip)('rebuildAsMirror script against PostgreSQL', () => {
  let root: string;
  let a: SegmentRow;
  let b: SegmentRow;
  const opts = { osUser: 'postgres', runAs: 'runuser' as const, pgBin: PG_BIN, pgCtlTimeoutSeconds: 60 };
  const run = (script: string): { status: number | null; out: string } => {
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const psql = (row: SegmentRow, sql: string): string =>
    execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/psql`, '-h', '127.0.0.1', '-p', String(row.port), '-U', 'postgres', '-d', 'postgres', '-AtXc', sql])
      .toString()
      .trim();
  const waitFor = async (what: () => boolean, ms = 20_000): Promise<void> => {
    const until = Date.now() + ms;
    while (!what()) {
      if (Date.now() > until) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const streamingTo = (p: SegmentRow, name: string) => (): boolean =>
    psql(p, `select count(*) from pg_stat_replication where application_name = '${name}' and state = 'streaming'`) === '1';

  beforeAll(async () => {
    const { freePort } = await import('../../lambdas/adapters/local/net');
    root = mkdtempSync(join(tmpdir(), 'fts-rebuild-'));
    chmodSync(root, 0o755);
    const parent = join(root, "seg 'dirs'");
    mkdirSync(parent);
    chownSync(parent, Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), -1);
    a = { ...primary, address: '127.0.0.1', port: await freePort(), datadir: join(parent, 'gpseg0 a') };
    b = { ...mirror, address: '127.0.0.1', port: await freePort(), datadir: join(parent, 'gpseg0 b') };
    execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/initdb`, '-D', a.datadir, '-A', 'trust', '-U', 'postgres'], { stdio: 'ignore' });
    // pg_rewind reads the target's WAL back to the last checkpoint before the fork: keep some.
    writeFileSync(join(a.datadir, 'postgresql.conf'), "wal_log_hints = on\nwal_keep_size = '128MB'\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n", { flag: 'a' });
    expect(run(startScript(a, opts)).status).toBe(0);
  }, 60_000);

  afterAll(() => {
    for (const row of [a, b]) {
      if (row) spawnSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, 'stop', '-m', 'immediate', '-D', row.datadir], { stdio: 'ignore' });
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('pg_basebackup builds a streaming mirror; pg_rewind turns the failed primary into one', async () => {
    psql(a, "select pg_create_physical_replication_slot('fts_mirror_dbid_5')");
    psql(a, 'create table t (x int); insert into t values (1)');
    const built = run(rebuildAsMirrorScript(b, a, 'basebackup', opts));
    expect(built.out).not.toMatch(/ERROR|FATAL/);
    expect(built.status).toBe(0);
    await waitFor(streamingTo(a, 'fts_mirror_dbid_5'));
    expect(psql(b, 'select pg_is_in_recovery()')).toBe('t');
    expect(psql(b, 'select count(*) from t')).toBe('1');

    // The primary dies; the mirror is promoted and written to, so the old primary diverged.
    psql(a, 'insert into t values (2)');
    expect(run(stopScript(a, 'immediate', opts)).status).toBe(0);
    execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, 'promote', '-w', '-D', b.datadir], { stdio: 'ignore' });
    psql(b, "select pg_create_physical_replication_slot('fts_mirror_dbid_2')");
    psql(b, 'insert into t values (3)');

    const rewound = run(rebuildAsMirrorScript(a, b, 'rewind', opts));
    expect(rewound.out).toContain('servers diverged');
    expect(rewound.status).toBe(0);
    await waitFor(streamingTo(b, 'fts_mirror_dbid_2'));
    expect(psql(a, 'select pg_is_in_recovery()')).toBe('t');
    // The slot it served as a primary is gone: it would pin WAL on the mirror forever.
    expect(psql(a, 'select count(*) from pg_replication_slots')).toBe('0');
    // Row 2 reached the new primary only if it streamed before the crash (no sync rep
    // here); either way the rewound instance now holds exactly what the new primary has.
    const rows = (row: SegmentRow): string => psql(row, 'select string_agg(x::text, \',\' order by x) from t');
    expect(rows(b)).toMatch(/^1,(2,)?3$/);
    await waitFor(() => rows(a) === rows(b));
  }, 120_000);
});

describe('SsmSegmentHost: stop report', () => {
  it('stop resolves to the STOP line: whether it ran, the checkpoint and state of pg_controldata', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-s' } });
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Success',
      ResponseCode: 0,
      StandardOutputContent: 'waiting for server to shut down.... done\nserver stopped\nSTOP wasRunning=1 latestCheckpointLsn=0/5000028 clusterState=shut down\n',
    });
    expect(await host().stop(primary, 'fast')).toEqual({ wasRunning: true, latestCheckpointLsn: '0/5000028', clusterState: 'shut down' });
    expect(sentScript()).toContain("env LC_ALL=C '/usr/lib/postgresql/15/bin/pg_controldata' -D '/data/primary/gpseg0'");
  });
});

describe('SsmSegmentHost: background rebuild (startRebuild, jobStatus, cancelJob)', () => {
  const progressFile = '/data/mirror/.fts-jobs/gpseg0.progress';
  const jobId = `ssm:i-0000000000000002:cmd-r:${progressFile}`;
  const job = { id: jobId, dbid: 5, startedAt: '2026-01-01T00:00:00.000Z' };
  const t0 = Date.parse(job.startedAt);

  it('startRebuild: slot first, then one AWS-RunShellScript on the mirror host with a 48 h executionTimeout; returns without polling', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-r' } });
    const calls: string[] = [];
    const control = { ensureSlot: async (p: SegmentRow, mirrorDbid: number) => void calls.push(`slot for ${mirrorDbid} on ${p.dbid}`) };
    const started = await host({ control, now: () => t0 }).startRebuild(mirror, primary, 'basebackup');
    expect(started).toEqual(job);
    expect(calls).toEqual(['slot for 5 on 2']);
    const input = sent();
    expect(input.DocumentName).toBe('AWS-RunShellScript');
    expect(input.InstanceIds).toEqual(['i-0000000000000002']);
    expect(input.Parameters?.executionTimeout).toEqual(['172800']);
    expect(input.TimeoutSeconds).toBe(60);
    expect(input.Comment).toBe('fts start rebuild by basebackup dbid 5 content 0');
    expect(ssm.commandCalls(GetCommandInvocationCommand)).toHaveLength(0);
    // The rebuild script, with its progress kept in a file beside the data directory.
    const script = sentScript();
    expect(script).toContain("sudo -n -u 'gpadmin' -- '/usr/lib/postgresql/15/bin/pg_basebackup' -D '/data/mirror/gpseg0'");
    expect(script).toContain(`{ printf '%s\\n' "$last" > '${progressFile}'; } 2>/dev/null || true`);
    expect(script).toContain("exec {fts_lock_fd}>>'/data/mirror/.fts-jobs/gpseg0.lock'");
    expect(spawnSync('bash', ['-n', '-c', script]).status).toBe(0);
    // A job travels in the workflow's state document.
    expect(JSON.parse(JSON.stringify(started))).toEqual(started);
  });

  it('startRebuild: rebuildTimeoutSeconds and the service manager are used; bad options and rows are refused before any call', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-r' } });
    await host({ rebuildTimeoutSeconds: 36000, serviceManager: { kind: 'systemd', unit: 'postgresql@15-%i.service' } }).startRebuild(mirror, primary, 'rewind');
    expect(sent().Parameters?.executionTimeout).toEqual(['36000']);
    expect(sentScript()).toContain("systemctl start -- 'postgresql@15-gpseg0.service'");
    ssm.reset();
    expect(() => host({ rebuildTimeoutSeconds: 172801 })).toThrow(/rebuildTimeoutSeconds must be an integer from 1 to 172800/);
    expect(() => host({ serviceManager: { kind: 'systemd', unit: 'postgresql' } })).toThrow(ValidationError);
    await expect(host().startRebuild({ ...mirror, instanceId: undefined }, primary, 'rewind')).rejects.toThrow(/dbid 5/);
    await expect(host().startRebuild(mirror, { ...primary, content: 1 }, 'basebackup')).rejects.toThrow(/not a pair/);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it.each(['Pending', 'Delayed'] as const)('%s: running, no progress read (the script has not started)', async (Status) => {
    ssm.on(GetCommandInvocationCommand).resolves({ Status, ResponseCode: -1 });
    expect(await host().jobStatus(job)).toEqual({ state: 'running' });
    expect(ssm.commandCalls(GetCommandInvocationCommand)[0].args[0].input).toEqual({ CommandId: 'cmd-r', InstanceId: 'i-0000000000000002' });
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('no invocation right after the send is running; long after it, failed', async () => {
    ssm.on(GetCommandInvocationCommand).rejects(new InvocationDoesNotExist({ message: 'not yet', $metadata: {} }));
    expect(await host({ now: () => t0 + 2000 }).jobStatus(job)).toEqual({ state: 'running' });
    const late = await host({ now: () => t0 + 3600_000 }).jobStatus(job);
    expect(late.state).toBe('failed');
    expect(late.message).toMatch(/SSM has no invocation of the command 3600 s after it was sent; start the rebuild again/);
  });

  /*
   * GetCommandInvocation returns only the first 24,000 characters of stdout: after hours
   * of a copy they would hold old progress. Current progress comes from the progress file,
   * read by a short second command while the rebuild is InProgress.
   */
  it('InProgress: the progress is the progress file, read by a second command, not the first 24,000 characters of stdout', async () => {
    const stale = Array.from({ length: 400 }, (_, i) => `PROGRESS bytes=${i * 1024} total=99999744 tool=pg_basebackup`).join('\n').slice(0, 24000);
    ssm.on(GetCommandInvocationCommand, { CommandId: 'cmd-r' }).resolves({ Status: 'InProgress', ResponseCode: -1, StandardOutputContent: stale });
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-p' } });
    ssm
      .on(GetCommandInvocationCommand, { CommandId: 'cmd-p' })
      .rejectsOnce(new InvocationDoesNotExist({ message: 'not yet', $metadata: {} }))
      .resolvesOnce({ Status: 'InProgress', ResponseCode: -1 })
      .resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'PROGRESS bytes=73400320000 total=99999744000 tool=pg_basebackup\n' });
    expect(await host().jobStatus(job)).toEqual({ state: 'running', progress: { bytes: 73400320000, total: 99999744000, tool: 'pg_basebackup' } });
    const read = sent();
    expect(read.DocumentName).toBe('AWS-RunShellScript');
    expect(read.InstanceIds).toEqual(['i-0000000000000002']);
    expect(read.Parameters?.executionTimeout).toEqual(['30']);
    expect(read.TimeoutSeconds).toBe(30);
    expect(sentScript()).toContain(`cat -- '${progressFile}' 2>/dev/null || true`);
    expect(ssm.commandCalls(CancelCommandCommand)).toHaveLength(0);
  });

  it('InProgress: a progress read without an answer in time is cancelled; the job is running without progress', async () => {
    ssm.on(GetCommandInvocationCommand, { CommandId: 'cmd-r' }).resolves({ Status: 'InProgress', ResponseCode: -1 });
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-p' } });
    ssm.on(GetCommandInvocationCommand, { CommandId: 'cmd-p' }).resolves({ Status: 'Pending', ResponseCode: -1 });
    ssm.on(CancelCommandCommand).resolves({});
    let clock = t0;
    expect(await host({ progressReadSeconds: 5, now: () => (clock += 1000) }).jobStatus(job)).toEqual({ state: 'running' });
    expect(ssm.commandCalls(CancelCommandCommand)[0].args[0].input).toEqual({ CommandId: 'cmd-p', InstanceIds: ['i-0000000000000002'] });
    // An empty file (no progress line yet) or a failing read: running, no progress.
    ssm.reset();
    ssm.on(GetCommandInvocationCommand, { CommandId: 'cmd-r' }).resolves({ Status: 'InProgress', ResponseCode: -1 });
    ssm.on(SendCommandCommand).rejects(Object.assign(new Error('rate exceeded'), { name: 'ThrottlingException' }));
    expect(await host().jobStatus(job)).toEqual({ state: 'running' });
  });

  it('Success: succeeded, with the last PROGRESS line the script printed when the tool ended', async () => {
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Success',
      ResponseCode: 0,
      StandardOutputContent: 'pg_basebackup of 10.0.1.11:6000 into /data/mirror/gpseg0\nPROGRESS bytes=2048 total=2048 tool=pg_basebackup\nwaiting for server to start.... done\n',
    });
    expect(await host().jobStatus(job)).toEqual({ state: 'succeeded', exitCode: 0, progress: { bytes: 2048, total: 2048, tool: 'pg_basebackup' } });
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('Failed with exit code 10: incrementalImpossible with the reason; exit code 11: wipeRefused; both with the tail of stderr', async () => {
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 10,
      StandardOutputContent: 'PROGRESS bytes=0 total=1024 tool=pg_rewind\nRECOVERY incremental-impossible reason=wal-removed\n',
      StandardErrorContent: 'pg_rewind: error: requested WAL segment 000000010000000000000003 has already been removed\nRECOVERY incremental-impossible reason=wal-removed\n',
    });
    expect(await host().jobStatus(job)).toEqual({
      state: 'failed',
      exitCode: 10,
      incrementalImpossible: 'wal-removed',
      progress: { bytes: 0, total: 1024, tool: 'pg_rewind' },
      message:
        'rebuild of dbid 5 (command cmd-r on i-0000000000000002): Failed, exit code 10: pg_rewind: error: requested WAL segment 000000010000000000000003 has already been removed | RECOVERY incremental-impossible reason=wal-removed',
    });
    ssm.reset();
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 11,
      StandardErrorContent: "refusing to wipe /data/mirror/gpseg0: it is not a data directory of content 0 (found a data directory whose postgresql.auto.conf says fts.content = '3')\n",
    });
    const refused = await host().jobStatus(job);
    expect(refused).toMatchObject({ state: 'failed', exitCode: 11, wipeRefused: true });
    expect(refused.message).toMatch(/exit code 11: refusing to wipe \/data\/mirror\/gpseg0: it is not a data directory of content 0/);
    expect(refused.incrementalImpossible).toBeUndefined();
  });

  it.each([
    ['TimedOut', 'ExecutionTimedOut', /TimedOut \(ExecutionTimedOut\) after its executionTimeout/],
    ['TimedOut', 'DeliveryTimedOut', /TimedOut \(DeliveryTimedOut\)$/],
    ['Cancelled', 'Cancelled', /: Cancelled$/],
    ['Cancelling', 'Cancelling', /: Cancelling$/],
    ['Failed', 'Undeliverable', /Failed \(Undeliverable\)$/],
    ['Terminated', 'Terminated', /ended in status Terminated$/],
  ])('%s (%s): failed without an exit code', async (Status, StatusDetails, message) => {
    ssm.on(GetCommandInvocationCommand).resolves({ Status: Status as 'Failed', StatusDetails, ResponseCode: -1 });
    const status = await host().jobStatus(job);
    expect(status.state).toBe('failed');
    expect(status.exitCode).toBeUndefined();
    expect(status.message).toMatch(message);
    // Only a command the agent or the host lost is worth starting again; a timeout or a cancel is final.
    expect(Boolean(status.lost)).toBe(Status === 'Failed');
  });

  it.each(['TimedOut', 'Cancelled', 'Cancelling'])('%s with the agent\'s 137: not reported as the script\'s exit code', async (Status) => {
    ssm.on(GetCommandInvocationCommand).resolves({ Status: Status as 'TimedOut', StatusDetails: Status, ResponseCode: 137 });
    const status = await host().jobStatus(job);
    expect(status).toMatchObject({ state: 'failed' });
    expect(status.exitCode).toBeUndefined();
    expect(status.lost).toBeUndefined();
    expect(status.message).not.toMatch(/exit code 137/);
  });

  it('an SSM error other than a missing invocation is thrown (the workflow retries); a foreign id is refused', async () => {
    ssm.on(GetCommandInvocationCommand).rejects(Object.assign(new Error('rate exceeded'), { name: 'ThrottlingException' }));
    await expect(host().jobStatus(job)).rejects.toThrow(HostCommandError);
    await expect(host().jobStatus({ ...job, id: '/tmp/.fts-jobs/5-x' })).rejects.toThrow(ValidationError);
    await expect(host().cancelJob({ ...job, id: 'ssm:i-1:cmd' })).rejects.toThrow(ValidationError);
  });

  it('cancelJob: CancelCommand of the command on its instance; no error when SSM no longer knows it', async () => {
    ssm.on(CancelCommandCommand).resolves({});
    await host().cancelJob(job);
    expect(ssm.commandCalls(CancelCommandCommand)[0].args[0].input).toEqual({ CommandId: 'cmd-r', InstanceIds: ['i-0000000000000002'] });
    ssm.reset();
    ssm.on(CancelCommandCommand).rejects(Object.assign(new Error('gone'), { name: 'InvalidCommandId' }));
    await expect(host().cancelJob(job)).resolves.toBeUndefined();
    ssm.reset();
    ssm.on(CancelCommandCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    await expect(host().cancelJob(job)).rejects.toThrow(/AccessDeniedException/);
  });
});
