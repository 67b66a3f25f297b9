/**
 * LocalSegmentHost against real PostgreSQL: it runs the same bash scripts SsmSegmentHost
 * sends to EC2 hosts, so these tests exercise the AWS scripts too. Identity settings,
 * fencing (a running primary, a frozen one, twice, a missing directory), stale
 * postmaster.pid files whose PID is a zombie or another program, and the systemd service
 * manager against a fake systemctl that runs pg_ctl the way a unit would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { isRunning, LocalSegmentHost, postmasterPid } from '../../lambdas/adapters/local/host';
import { freePort } from '../../lambdas/adapters/local/net';
import { fenceScript, parseFenceReport, parseProgress, rebuildAsMirrorScript, startScript, stopScript, type ShellOptions } from '../../lambdas/adapters/aws/shell';
import { findPgBin, initdbInstance, localShellOptions, pgOsUser, runHostScript, runPgBinary, writeInstanceConfig } from '../../lambdas/adapters/local/postgres-binaries';
import { createPair, waitFor, type PgPair } from '../support/pg-pair';

jest.setTimeout(180_000);

let pair: PgPair;
/** PIDs this file SIGSTOPped: continued in afterAll, whatever happened. */
const frozen = new Set<number>();
/** Helper processes (a sleeping program, a zombie's parent): killed in afterAll. */
const helpers: ChildProcess[] = [];

beforeAll(async () => {
  pair = await createPair();
});

afterAll(async () => {
  for (const pid of frozen) signal(pid, 'SIGCONT');
  for (const child of helpers) child.kill('SIGKILL');
  await pair?.destroy();
});

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** /proc/<pid>/stat fields after the command name: state, ppid. */
function procStat(pid: number | string): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** Live (not zombie) processes working in the data directory: every process of its instance. */
function instanceProcesses(datadir: string): number[] {
  const dir = realpathSync(datadir);
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      const st = procStat(e);
      if (!st || st.state === 'Z' || st.state === 'X') return false;
      try {
        return readlinkSync(`/proc/${e}/cwd`) === dir;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The postmaster and its children. */
function postmasterAndChildren(datadir: string): number[] {
  const pm = postmasterPid(datadir);
  if (pm === undefined) throw new Error(`no postmaster.pid in ${datadir}`);
  const children = readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e) && procStat(e)?.ppid === pm)
    .map(Number);
  return [pm, ...children];
}

const identity = async (row: SegmentRow): Promise<{ dbid: string | null; content: string | null }> =>
  (await pair.query<{ dbid: string | null; content: string | null }>(row, `SELECT current_setting('fts.dbid', true) AS dbid, current_setting('fts.content', true) AS content`))[0];

const inRecovery = async (row: SegmentRow): Promise<boolean> => (await pair.query<{ r: boolean }>(row, 'SELECT pg_is_in_recovery() AS r'))[0].r;

/** What an operator or systemd would do: a plain pg_ctl start, no script. */
async function startByHand(row: SegmentRow): Promise<void> {
  await runPgBinary('pg_ctl', ['start', '-w', '-t', '60', '-D', row.datadir, '-l', `${row.datadir}.log`, '-o', `-p ${row.port}`], { timeoutMs: 90_000 });
}

describe('identity settings', () => {
  test('a mirror rebuilt by pg_basebackup names its own dbid, not its primary copied one', async () => {
    const { primary } = pair;
    const mirror = pair.mirror!;
    await pair.host.writeIdentity(primary);
    await pair.query(primary, 'SELECT pg_reload_conf()');
    await waitFor('the primary to read its identity', async () => ((await identity(primary)).dbid === '2' ? true : undefined));
    expect(await identity(primary)).toEqual({ dbid: '2', content: '0' });

    // The copy carries the primary's postgresql.auto.conf, fts.dbid = 2 included.
    await pair.host.rebuildAsMirror(mirror, primary, 'basebackup');
    await pair.waitForStreaming(primary, mirror, true);
    expect(await identity(mirror)).toEqual({ dbid: '3', content: '0' });
    expect(await inRecovery(mirror)).toBe(true);

    // ALTER SYSTEM (sync rep) rewrites postgresql.auto.conf and keeps the identity.
    await pair.control.setSyncRep(primary, mirror, true);
    expect(readFileSync(join(primary.datadir, 'postgresql.auto.conf'), 'utf8')).toMatch(/^fts\.dbid = '2'$/m);
  });

  test('writeInstanceConfig writes the identity of a fresh instance, once', async () => {
    const datadir = join(pair.root, 'fresh');
    pair.track(datadir);
    await initdbInstance(datadir, { noSync: true });
    const port = await freePort();
    await writeInstanceConfig(datadir, { port, dbid: 9, content: 4 });
    await writeInstanceConfig(datadir, { port, dbid: 9, content: 4 });
    const conf = readFileSync(join(datadir, 'postgresql.auto.conf'), 'utf8');
    expect(conf.match(/^fts\.dbid = '9'$/gm)).toHaveLength(1);
    expect(conf.match(/^fts\.content = '4'$/gm)).toHaveLength(1);
    // PostgreSQL reads them back (postgres -C works on a stopped instance).
    expect((await runPgBinary('postgres', ['-D', datadir, '-C', 'fts.dbid'])).stdout.trim()).toBe('9');
    await expect(writeInstanceConfig(datadir, { port, dbid: 9 })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('fence', () => {
  test('a running primary is stopped; restarted by hand it is a read-only standby; fencing again succeeds', async () => {
    const { primary } = pair;
    const mirror = pair.mirror!;
    await pair.query(primary, 'CREATE TABLE fence_marks (x int PRIMARY KEY)');
    await pair.query(primary, 'INSERT INTO fence_marks VALUES (1)');

    expect(await pair.host.fence(primary, mirror)).toEqual({ wasRunning: true, killed: false, missing: false });
    expect(isRunning(primary.datadir)).toBe(false);
    expect(instanceProcesses(primary.datadir)).toEqual([]);
    expect(existsSync(join(primary.datadir, 'standby.signal'))).toBe(true);
    const conf = readFileSync(join(primary.datadir, 'postgresql.auto.conf'), 'utf8');
    expect(conf).toContain(`port=''${mirror.port}''`);
    expect(conf).toMatch(/^primary_slot_name = 'fts_mirror_dbid_2'$/m);

    // Stopped and fenced: a second fence finds nothing running and succeeds.
    expect(await pair.host.fence(primary, mirror)).toEqual({ wasRunning: false, killed: false, missing: false });

    await startByHand(primary);
    expect(await inRecovery(primary)).toBe(true);
    expect(await identity(primary)).toEqual({ dbid: '2', content: '0' });
    await expect(pair.query(primary, 'SET synchronous_commit = local; INSERT INTO fence_marks VALUES (2)')).rejects.toThrow(/read-only transaction/);

    // Running again (as a standby): fenced again, stopped again.
    expect(await pair.host.fence(primary, mirror)).toEqual({ wasRunning: true, killed: false, missing: false });
    expect(instanceProcesses(primary.datadir)).toEqual([]);
  });

  test('a frozen (SIGSTOPped) primary and its backends are killed; after SIGCONT nothing commits', async () => {
    const oldPrimary = pair.primary;
    const mirror = pair.mirror!;
    // The failover: the mirror becomes the primary the catalog names.
    await runPgBinary('pg_ctl', ['promote', '-w', '-t', '60', '-D', mirror.datadir]);
    const primary: SegmentRow = { ...mirror, role: 'p', mode: 'n' };
    await waitFor('the promoted mirror to leave recovery', async () => ((await inRecovery(primary)) ? undefined : true));

    const client = new Client({ host: primary.address, port: primary.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      // Local commit: no synchronous standby to wait for, a write that ran would be durable.
      await client.query('SET synchronous_commit = local');
      const pids = postmasterAndChildren(primary.datadir);
      for (const pid of pids) {
        frozen.add(pid);
        process.kill(pid, 'SIGSTOP');
      }
      // Sent to a frozen backend: it cannot run before the fence.
      const write = client.query('INSERT INTO fence_marks VALUES (3)').then(
        () => 'committed',
        (e: Error) => e.message,
      );

      // A short stop timeout: the frozen postmaster never answers it.
      const host = new LocalSegmentHost({ replicationCredentials: pair.credentials, control: pair.control, fenceTimeoutSeconds: 2 });
      expect(await host.fence(primary, oldPrimary)).toEqual({ wasRunning: true, killed: true, missing: false });
      expect(instanceProcesses(primary.datadir)).toEqual([]);
      expect(isRunning(primary.datadir)).toBe(false);
      for (const pid of pids) signal(pid, 'SIGCONT');
      expect(await write).not.toBe('committed');
    } finally {
      await client.end().catch(() => undefined);
    }

    // Whoever restarts it gets a standby, and the write sent while frozen is not there.
    await startByHand(primary);
    expect(await inRecovery(primary)).toBe(true);
    expect((await pair.query<{ n: string }>(primary, 'SELECT count(*)::text AS n FROM fence_marks WHERE x = 3'))[0].n).toBe('0');
    await expect(pair.query(primary, 'SET synchronous_commit = local; INSERT INTO fence_marks VALUES (4)')).rejects.toThrow(/read-only transaction/);
    expect(await pair.host.fence(primary, oldPrimary)).toEqual({ wasRunning: true, killed: false, missing: false });
  });

  test('a missing data directory is reported, not an error', async () => {
    const gone: SegmentRow = { ...pair.primary, dbid: 9, datadir: join(pair.root, 'replaced-host', 'gpseg0') };
    expect(await pair.host.fence(gone, undefined)).toEqual({ wasRunning: false, killed: false, missing: true });
    expect(existsSync(gone.datadir)).toBe(false);
  });
});

describe('stale postmaster.pid', () => {
  const writePidFile = (datadir: string, pid: number): void =>
    writeFileSync(join(datadir, 'postmaster.pid'), `${pid}\n${datadir}\n1700000000\n1\n\n127.0.0.1\n  5432001         0\nready   \n`);

  test('a PID reused by another program is neither signalled nor waited for', async () => {
    const row = pair.primary;
    expect(isRunning(row.datadir)).toBe(false);
    const other = spawn('sleep', ['300'], { stdio: 'ignore' });
    helpers.push(other);
    writePidFile(row.datadir, other.pid!);
    expect(isRunning(row.datadir)).toBe(false);

    expect(await pair.host.fence(row, pair.mirror)).toEqual({ wasRunning: false, killed: false, missing: false });
    expect(existsSync(join(row.datadir, 'postmaster.pid'))).toBe(false);
    // pg_ctl stop would send SIGINT to it: the stop script does not.
    writePidFile(row.datadir, other.pid!);
    await pair.host.stop(row, 'fast');
    expect(existsSync(join(row.datadir, 'postmaster.pid'))).toBe(false);
    expect(procStat(other.pid!)?.state).toMatch(/^[SR]$/);
  });

  test('a zombie PID does not keep the instance from starting', async () => {
    const row = pair.primary;
    // `sleep 0` exits and its parent, exec'd into a sleep that never waits, leaves it a zombie.
    const parent = spawn('bash', ['-c', 'sleep 0 & echo $!; exec sleep 300'], { stdio: ['ignore', 'pipe', 'ignore'] });
    helpers.push(parent);
    let out = '';
    parent.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const zombie = await waitFor('a zombie', async () => {
      const pid = Number(out.trim());
      return pid > 0 && procStat(pid)?.state === 'Z' ? pid : undefined;
    });
    writePidFile(row.datadir, zombie);
    expect(isRunning(row.datadir)).toBe(false);

    await pair.host.start(row);
    expect(isRunning(row.datadir)).toBe(true);
    expect(await inRecovery(row)).toBe(true); // still fenced: a standby
    await pair.host.stop(row, 'fast');
    expect(instanceProcesses(row.datadir)).toEqual([]);
  });
});

/*
 * The systemd service manager against real instances: a fake `systemctl` first on PATH
 * maps each unit to a data directory and does what a unit with `KillSignal=SIGINT` would
 * (start: pg_ctl start without waiting and without -p; stop: a fast shutdown; kill: the
 * signal to the postmaster), recording every call.
 */
describe('systemd service manager (fake systemctl, real PostgreSQL)', () => {
  let fake: string;
  let a: SegmentRow;
  let b: SegmentRow;
  let options: ShellOptions;
  let env: Record<string, string>;

  /** The calls to systemctl, without the polls of the wait for a start (is-failed). */
  const calls = (): string[] => readFileSync(join(fake, 'calls'), 'utf8').trim().split('\n').filter((c) => !c.startsWith('is-failed'));
  const serverLog = (row: SegmentRow): string => readFileSync(`${row.datadir}.log`, 'utf8');
  const run = async (what: string, script: string): Promise<{ stdout: string; stderr: string }> => runHostScript(script, { what, env, timeoutMs: 120_000 });

  beforeAll(async () => {
    fake = join(pair.root, 'fake-systemd');
    mkdirSync(join(fake, 'bin'), { recursive: true });
    mkdirSync(join(fake, 'units'));
    writeFileSync(
      join(fake, 'bin', 'systemctl'),
      [
        '#!/bin/bash',
        'state=$FAKE_SYSTEMD',
        'echo "$*" >> "$state/calls"',
        'unit=${!#}',
        'dir=$(cat "$state/units/$unit" 2>/dev/null) || { echo "Unit $unit.service not loaded." >&2; exit 5; }',
        'as=(); if [ "$(id -u)" = 0 ]; then as=(runuser -u "$FAKE_PG_USER" --); fi',
        'active() { [ -f "$state/active-$unit" ]; }',
        'case "$1" in',
        '  enable) touch "$state/enabled-$unit" ;;',
        '  start) if ! active; then "${as[@]}" "$FAKE_PG_BIN/pg_ctl" start -W -D "$dir" -l "$dir.log" >/dev/null && touch "$state/active-$unit"; fi ;;',
        '  stop) if active; then "${as[@]}" "$FAKE_PG_BIN/pg_ctl" stop -w -m fast -D "$dir" >/dev/null 2>&1; rm -f "$state/active-$unit"; fi ;;',
        '  kill) active && kill -s QUIT "$(head -n 1 "$dir/postmaster.pid")" ;;',
        '  show) if active; then head -n 1 "$dir/postmaster.pid"; else echo 0; fi ;;',
        '  is-failed) exit 1 ;;',
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(join(fake, 'bin', 'systemctl'), 0o755);
    a = { ...pair.primary, dbid: 20, content: 7, role: 'p', preferredRole: 'p', mode: 'n', port: await freePort(), datadir: join(pair.root, 'sdA') };
    b = { ...a, dbid: 21, role: 'm', preferredRole: 'm', port: await freePort(), datadir: join(pair.root, 'sdB') };
    for (const row of [a, b]) {
      pair.track(row.datadir);
      writeFileSync(join(fake, 'units', `fts-test@${row.datadir.split('/').pop()}`), row.datadir);
    }
    options = { ...localShellOptions(), serviceManager: { kind: 'systemd', unit: 'fts-test@%i', instance: 'basename' }, pgCtlTimeoutSeconds: 60, progress: true };
    env = { PATH: `${join(fake, 'bin')}:${process.env.PATH ?? ''}`, FAKE_SYSTEMD: fake, FAKE_PG_BIN: findPgBin(), FAKE_PG_USER: pgOsUser()?.name ?? '' };
    await initdbInstance(a.datadir, { noSync: true });
    // Another port in its own config: the unit starts postgres without -p, the catalog's port must win.
    await writeInstanceConfig(a.datadir, { port: await freePort(), dbid: a.dbid, content: a.content });
  });

  test('start waits until it accepts connections on the catalog port; stop fast, stop immediate go through the unit', async () => {
    await run('start', startScript(a, options));
    expect(calls()).toEqual(['enable --quiet -- fts-test@sdA', 'start -- fts-test@sdA']);
    expect(existsSync(join(fake, 'enabled-fts-test@sdA'))).toBe(true);
    // pg_ctl start -W returned at once: the script waited for postmaster.pid to say ready.
    expect((await pair.query<{ port: string }>(a, 'SHOW port'))[0].port).toBe(String(a.port));
    expect((await run('start again', startScript(a, options))).stdout).toContain('dbid 20 is already running');

    await run('stop fast', stopScript(a, 'fast', options));
    expect(isRunning(a.datadir)).toBe(false);
    expect(calls().slice(-1)).toEqual(['stop -- fts-test@sdA']);
    expect(serverLog(a)).toContain('received fast shutdown request');

    await run('start', startScript(a, options));
    await run('stop immediate', stopScript(a, 'immediate', options));
    expect(isRunning(a.datadir)).toBe(false);
    expect(instanceProcesses(a.datadir)).toEqual([]);
    expect(calls().slice(-3)).toEqual(['show -p MainPID --value -- fts-test@sdA', 'kill --kill-who=main --signal=SIGQUIT -- fts-test@sdA', 'stop -- fts-test@sdA']);
    expect(serverLog(a)).toContain('received immediate shutdown request');
  });

  test('rebuild by pg_basebackup with progress: PROGRESS lines, then the mirror runs through its own unit on its own port', async () => {
    await run('start', startScript(a, options));
    await pair.query(a, "SELECT pg_create_physical_replication_slot('fts_mirror_dbid_21')");
    const built = await run('rebuild', rebuildAsMirrorScript(b, a, 'basebackup', options));
    const progress = parseProgress(built.stdout);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((p) => p.tool === 'pg_basebackup' && p.bytes <= p.total && p.bytes % 1024 === 0)).toBe(true);
    const last = progress[progress.length - 1];
    expect(last.bytes).toBe(last.total);
    expect(last.total).toBeGreaterThan(1024 * 1024);
    // pg_basebackup's own lines went to stderr.
    expect(built.stderr).toMatch(/^ *\d+\/\d+ kB \(100%\), 1\/1 tablespace/m);

    expect(calls().slice(-3)).toEqual(['stop -- fts-test@sdB', 'enable --quiet -- fts-test@sdB', 'start -- fts-test@sdB']);
    // The copy carried a's port in postgresql.auto.conf; the mirror config and the start wrote b's.
    expect((await pair.query<{ port: string }>(b, 'SHOW port'))[0].port).toBe(String(b.port));
    expect(await inRecovery(b)).toBe(true);
    expect(readFileSync(join(b.datadir, 'backup_label.old'), 'utf8')).toContain('LABEL: fts rebuild of content 7');
    await waitFor('the mirror to stream', async () =>
      (await pair.query<{ n: string }>(a, "SELECT count(*)::text AS n FROM pg_stat_replication WHERE application_name = 'fts_mirror_dbid_21' AND state = 'streaming'"))[0].n === '1'
        ? true
        : undefined,
    );
  });

  test('fence through the unit; what the unit starts afterwards is a read-only standby', async () => {
    const fenced = await run('fence', fenceScript(a, b, { ...options, fenceTimeoutSeconds: 5 }));
    expect(parseFenceReport(fenced.stdout)).toEqual({ wasRunning: true, killed: false, missing: false });
    expect(calls().slice(-3)).toEqual(['show -p MainPID --value -- fts-test@sdA', 'kill --kill-who=main --signal=SIGQUIT -- fts-test@sdA', 'stop --no-block -- fts-test@sdA']);
    expect(instanceProcesses(a.datadir)).toEqual([]);
    // Not disabled: a reboot would start it, and it would come up as a standby.
    expect(calls().some((c) => c.startsWith('disable'))).toBe(false);
    await run('start', startScript(a, options));
    expect(await inRecovery(a)).toBe(true);
    await expect(pair.query(a, 'CREATE TABLE after_fence (x int)')).rejects.toThrow(/read-only transaction/);
    for (const row of [b, a]) await run('stop', stopScript(row, 'fast', options));
    expect(isRunning(a.datadir) || isRunning(b.datadir)).toBe(false);
  });
});
