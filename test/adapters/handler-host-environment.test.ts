/**
 * The Lambda environment of host operations: `FTS_PG_SERVICE_MANAGER` and `FTS_PG_RUN_AS`
 * are validated once per container with a clear message, and the SSM host the handlers
 * build runs its scripts through the service manager, and as the OS user by the means
 * (sudo or runuser), they name.
 */
import { mockClient } from 'aws-sdk-client-mock';
import { GetCommandInvocationCommand, SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { handlerEnvironment } from '../../lambdas/handlers/environment';
import { segmentDeps } from '../../lambdas/handlers/deps';

const ssm = mockClient(SSMClient);
beforeEach(() => ssm.reset());
afterAll(() => ssm.restore());

const base = { FTS_CLUSTER_ID: 'c1' };

describe('FTS_PG_SERVICE_MANAGER', () => {
  it('unset or empty: pg_ctl (the scripts default); pg_ctl; systemd with a unit template and an optional instance naming', () => {
    expect(handlerEnvironment(base).FTS_PG_SERVICE_MANAGER).toBeUndefined();
    expect(handlerEnvironment({ ...base, FTS_PG_SERVICE_MANAGER: '' }).FTS_PG_SERVICE_MANAGER).toBeUndefined();
    expect(handlerEnvironment({ ...base, FTS_PG_SERVICE_MANAGER: 'pg_ctl' }).FTS_PG_SERVICE_MANAGER).toEqual({ kind: 'pg_ctl' });
    expect(handlerEnvironment({ ...base, FTS_PG_SERVICE_MANAGER: 'systemd:postgresql@15-%i.service' }).FTS_PG_SERVICE_MANAGER).toEqual({
      kind: 'systemd',
      unit: 'postgresql@15-%i.service',
    });
    expect(handlerEnvironment({ ...base, FTS_PG_SERVICE_MANAGER: 'systemd:fts-segment@%i,instance=path' }).FTS_PG_SERVICE_MANAGER).toEqual({
      kind: 'systemd',
      unit: 'fts-segment@%i',
      instance: 'path',
    });
  });

  it('anything else fails the container start with the variable, the value and what is accepted', () => {
    for (const value of ['systemctl', 'systemd:postgresql', 'systemd:pg@%i,instance=dbid']) {
      let error: unknown;
      try {
        handlerEnvironment({ ...base, FTS_PG_SERVICE_MANAGER: value });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toMatch(/^Lambda environment is incomplete: FTS_PG_SERVICE_MANAGER: service manager /);
      expect((error as Error).message).toContain(JSON.stringify(value));
      expect((error as Error).message).toContain('pg_ctl, or systemd:<unit template>[,instance=gpseg|basename|path]');
    }
  });

  it('the handlers’ SSM host starts and stops instances through the configured systemd unit', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'STOP wasRunning=1\n' });
    const deps = segmentDeps(handlerEnvironment({ ...base, AWS_REGION: 'us-east-1', FTS_PG_SERVICE_MANAGER: 'systemd:postgresql@15-%i.service' }));
    const row: SegmentRow = {
      dbid: 2, content: 3, role: 'p', preferredRole: 'p', mode: 's', status: 'u', port: 6000,
      hostname: 'sdw1', address: '10.0.1.11', datadir: '/data/primary/gpseg3', instanceId: 'i-0000000000000001',
    };
    expect(await deps.host.stop(row, 'fast')).toEqual({ wasRunning: true });
    const script = ssm.commandCalls(SendCommandCommand)[0].args[0].input.Parameters?.commands?.[0] ?? '';
    expect(script).toContain("systemctl stop -- 'postgresql@15-gpseg3.service'");
  });
});

describe('FTS_PG_RUN_AS', () => {
  const row: SegmentRow = {
    dbid: 2, content: 3, role: 'p', preferredRole: 'p', mode: 's', status: 'u', port: 6000,
    hostname: 'sdw1', address: '10.0.1.11', datadir: '/data/primary/gpseg3', instanceId: 'i-0000000000000001',
  };
  /** The script the handlers' SSM host sends to stop `row`. */
  async function stopScriptSent(env: Record<string, string>): Promise<string> {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'STOP wasRunning=1\n' });
    const deps = segmentDeps(handlerEnvironment({ ...base, AWS_REGION: 'us-east-1', ...env }));
    await deps.host.stop(row, 'fast');
    return ssm.commandCalls(SendCommandCommand)[0].args[0].input.Parameters?.commands?.[0] ?? '';
  }

  it('unset or empty: the scripts switch to the OS user with sudo; sudo and runuser as given', async () => {
    expect(handlerEnvironment(base).FTS_PG_RUN_AS).toBeUndefined();
    expect(handlerEnvironment({ ...base, FTS_PG_RUN_AS: '' }).FTS_PG_RUN_AS).toBeUndefined();
    expect(handlerEnvironment({ ...base, FTS_PG_RUN_AS: 'sudo' }).FTS_PG_RUN_AS).toBe('sudo');
    expect(handlerEnvironment({ ...base, FTS_PG_RUN_AS: ' runuser ' }).FTS_PG_RUN_AS).toBe('runuser');
    const byDefault = await stopScriptSent({ FTS_PG_OS_USER: 'postgres' });
    expect(byDefault).toContain("sudo -n -u 'postgres' --");
    expect(byDefault).not.toContain('runuser');
  });

  it('runuser: the handlers’ SSM host switches users with runuser, never sudo (hosts without sudo)', async () => {
    const script = await stopScriptSent({ FTS_PG_OS_USER: 'postgres', FTS_PG_RUN_AS: 'runuser' });
    expect(script).toContain("runuser -u 'postgres' --");
    expect(script).not.toMatch(/\bsudo\b/);
  });

  it('anything else (none included: SSM runs scripts as root) fails the container start with the variable, the value and what is accepted', () => {
    for (const value of ['none', 'su', 'sudo -u', 'RUNUSER']) {
      let error: unknown;
      try {
        handlerEnvironment({ ...base, FTS_PG_RUN_AS: value });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toBe(`Lambda environment is incomplete: FTS_PG_RUN_AS: ${JSON.stringify(value)} must be sudo or runuser (how the host scripts switch to FTS_PG_OS_USER)`);
    }
  });
});
