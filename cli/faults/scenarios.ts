/**
 * The scenarios of the fault matrix. Each injects one fault into a local cluster under a
 * write workload on every content and checks the outcome it expects with what an
 * operator sees: the catalog and its history, the prober's timeline (decisions and the
 * metrics of lambdas/ports/telemetry.ts), the workflow executions and the instances
 * themselves. The harness (./harness.ts) adds the checks every trial gets: no
 * acknowledged commit lost, no split-brain commit, no false failover, no stuck
 * content, no long stall.
 *
 * Layout of every cluster: two segment hosts sdw1 and sdw2, group mirroring; content 0
 * has its primary on one host and its mirror on the other, content 1 the other way
 * round. Scenarios name instances by their role at the start of the trial, never by dbid:
 * a cluster is shared between trials, and after a failover the roles are swapped.
 */
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { Client } from 'pg';
import type { SegmentRow } from '../../lambdas/core/model';
import { worstCaseProbeSeconds } from '../../lambdas/core/settings';
import { killInstance, postmasterPid } from '../../lambdas/adapters/local/host';
import { parseExecutionInput } from '../../lambdas/adapters/local/local-workflows';
import { startupProcess } from '../../lambdas/adapters/local/startup-progress';
import { trustCredentials, withSegmentClient } from '../../lambdas/adapters/postgres/connection';
import { runWorkflowLocally } from '../../bin/ftsctl';
import { crashBackend, throttleProcess, writeWalSinceCheckpoint } from './slow-recovery';
import { startTcpProxy } from './tcp-proxy';
import { longestStallMs, MILESTONES, WORKLOAD_TABLE } from '../failover-drill';
import { LOCAL_SUPERUSER } from '../local-cluster';
import { ACTING_DECISIONS, childrenOf, signalGroup, sql, type Scenario, type Trial } from './harness';

/** The end of a PromoteMirror execution, as the prober logs it. */
const EXECUTION_ENDED = /^PromoteMirror (succeeded|failed|aborted)$/;

/** Waits until the primary reports sync rep `on` (or off). */
async function waitSyncRep(t: Trial, primary: SegmentRow, on: boolean, timeoutMs = 30_000): Promise<void> {
  await t.waitFor(`sync rep ${on ? 'on' : 'off'} at primary dbid ${primary.dbid}`, async () => {
    const p = await t.cluster.probe.probe(primary, { ...t.settings, probeRetries: 0 });
    return p.ok && p.syncRepOn === on ? true : undefined;
  }, timeoutMs);
}

/** Waits until the catalog marks the mirror down. */
async function waitMarkedDown(t: Trial, mirror: SegmentRow, timeoutMs = 30_000): Promise<void> {
  await t.waitFor(`mirror dbid ${mirror.dbid} marked down`, async () => ((await t.row(mirror.dbid)).status === 'd' ? true : undefined), timeoutMs, 200);
}

/** Whether the primary reports `mirror` connected (streaming or catching up). */
async function mirrorConnected(t: Trial, primary: SegmentRow, mirror: SegmentRow, sync = false): Promise<boolean> {
  const p = await t.cluster.probe.probe(primary, { ...t.settings, probeRetries: 0 }, mirror);
  if (!p.ok || p.inRecovery) return false;
  return sync ? p.mirror.state === 'streaming' && p.mirror.syncState === 'sync' && p.syncRepOn : p.mirror.state === 'streaming' || p.mirror.state === 'catchup';
}

/** Changes one catalog row (its port) with a history row saying why, as a catalog apply by an operator would. */
async function setPort(t: Trial, dbid: number, port: number, why: string): Promise<void> {
  const snapshot = await t.cluster.catalog.load(t.clusterId);
  const row = snapshot.segments.find((r) => r.dbid === dbid)!;
  await t.cluster.catalog.apply(t.clusterId, snapshot.version, {
    rows: [{ ...row, port }],
    history: [{ time: new Date().toISOString(), dbid, description: `fault matrix: ${why}` }],
  });
}

/** The pid of an instance's child process whose title matches (e.g. its WAL receiver), if it runs. */
function childProcess(datadir: string, title: RegExp): number | undefined {
  const postmaster = postmasterPid(datadir);
  if (postmaster === undefined) return undefined;
  for (const pid of childrenOf(postmaster)) {
    try {
      if (title.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '))) return pid;
    } catch {
      /* ended meanwhile */
    }
  }
  return undefined;
}


/**
 * Paces crash recovery by WAL segment: the startup process runs until it moves to the
 * next WAL file (its title names the file it replays), then is stopped until `segmentMs`
 * have passed since it entered that segment. A recovery of N segments lasts about
 * N x segmentMs whatever the machine, and the LSN a probe reads advances every segmentMs.
 */
function paceRecovery(datadir: string, segmentMs: number): { segments(): number; stop(): Promise<void> } {
  let stopping = false;
  let segments = 0;
  const walFileOf = (pid: number): string | undefined => {
    try {
      return /startup\s+recovering\s+([0-9A-F]{24})/i.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '))?.[1];
    } catch {
      return undefined;
    }
  };
  const loop = (async () => {
    const lookUntil = Date.now() + 10_000;
    let pid: number | undefined;
    while (!stopping && pid === undefined) {
      const startup = startupProcess(datadir);
      if (startup?.walFile) pid = startup.pid;
      else if (Date.now() > lookUntil) return;
      else await delay(2);
    }
    while (!stopping && pid !== undefined) {
      const file = walFileOf(pid);
      if (!file) return; // recovery over
      const enteredAt = Date.now();
      while (!stopping && walFileOf(pid) === file) await delay(2); // runs through this segment
      if (stopping || !walFileOf(pid)) return;
      segments += 1;
      const rest = segmentMs - (Date.now() - enteredAt);
      if (rest > 0) {
        process.kill(pid, 'SIGSTOP');
        try {
          await delay(rest);
        } finally {
          process.kill(pid, 'SIGCONT');
        }
      }
    }
  })().catch(() => undefined);
  return {
    segments: () => segments,
    stop: async () => {
      stopping = true;
      await loop;
    },
  };
}

/** Events of a timeline showing a prober carried out an action (not just probed or decided to wait). */
function actions(events: { decision?: unknown; message: string; execution?: unknown; level: string }[]): string[] {
  return events
    .filter(
      (e) =>
        (typeof e.decision === 'string' && ACTING_DECISIONS.includes(e.decision) && !/lease|not acting/i.test(e.message)) ||
        e.execution !== undefined ||
        /^PromoteMirror |^catalog flipped$|^mirror promoted$/.test(e.message),
    )
    .map((e) => (typeof e.decision === 'string' ? `${e.decision}: ${e.message}` : e.message));
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'primary-kill',
    title: 'primary kill -9',
    expected: 'failover',
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ failover: [0], primaryFault: [0] });
      t.fault();
      await killInstance(primary.datadir);
      await t.waitForFailover(0);
    },
  },
  {
    name: 'mirror-kill',
    title: 'mirror kill -9',
    expected: 'mirror marked down, sync rep off, no failover',
    async run(t) {
      const primary = t.primaryOf(0);
      const mirror = t.mirrorOf(0);
      t.expect({ mirrorFault: [0] });
      t.fault();
      await killInstance(mirror.datadir);
      await waitMarkedDown(t, mirror);
      await waitSyncRep(t, primary, false);
    },
  },
  {
    name: 'host-kill',
    title: 'whole host kill -9 (every instance of the host)',
    expected: 'failover of its primaries, its mirrors marked down',
    async run(t) {
      // A host with a primary and a mirror when there is one (group mirroring before any failover), else content 0's primary's.
      const hosts = [...new Set(t.initial.segments.map((r) => r.hostname))];
      const mixed = hosts.find((h) => new Set(t.initial.segments.filter((r) => r.hostname === h).map((r) => r.role)).size === 2);
      const host = mixed ?? t.primaryOf(0).hostname;
      const victims = t.initial.segments.filter((r) => r.hostname === host);
      const failover = victims.filter((r) => r.role === 'p').map((r) => r.content);
      const mirrorFault = victims.filter((r) => r.role === 'm' && !failover.includes(r.content)).map((r) => r.content);
      t.expect({ failover, primaryFault: failover, mirrorFault });
      t.note(`host ${host}: dbids ${victims.map((v) => v.dbid).join(', ')}`);
      t.fault();
      await Promise.all(victims.map((v) => killInstance(v.datadir)));
      await Promise.all(failover.map((c) => t.waitForFailover(c)));
      for (const c of mirrorFault) {
        await waitMarkedDown(t, t.mirrorOf(c));
        await waitSyncRep(t, t.primaryOf(c), false);
      }
    },
  },
  {
    name: 'primary-sigstop-short',
    title: 'primary SIGSTOP shorter than the failure budget',
    expected: 'no failover',
    params: { freezeMs: 1000, roundsAfter: 3 },
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ primaryFault: [0] });
      t.fault();
      const thaw = t.freezeInstance(primary);
      await t.sleep(t.params.freezeMs);
      thaw();
      await t.waitRounds(t.params.roundsAfter);
      const started = t.decisions('fail-over', t.faultAt, 0);
      if (started.length) t.fail(`a failover was started for a freeze of ${t.params.freezeMs} ms: ${String(started[0].reason ?? started[0].message)}`);
    },
  },
  {
    name: 'primary-sigstop-long',
    title: 'primary SIGSTOP longer than the failure budget, then thawed',
    expected: 'failover; the thawed old primary is fenced',
    params: { maxFreezeMs: 60_000, fenceWindowMs: 15_000 },
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ failover: [0], primaryFault: [0] });
      t.fault();
      const thaw = t.freezeInstance(primary);
      try {
        await t.waitForFailover(0, t.params.maxFreezeMs);
      } finally {
        thaw();
      }
      await t.expectFenced(primary);
    },
  },
  {
    name: 'blackhole-then-kill',
    title: 'prober-to-primary black hole while the mirror streams, then a real kill of that primary',
    expected: 'failover aborted (history row, PromotionAborted); then failover after the kill',
    params: { abortTimeoutMs: 30_000, failoverTimeoutMs: 30_000 },
    async run(t) {
      const primary = t.primaryOf(0);
      // The workload keeps its direct session; the prober (and new sessions) go through the proxy.
      const proxy = await startTcpProxy(primary.port);
      t.defer(() => proxy.close());
      await setPort(t, primary.dbid, proxy.port, `clients reach dbid ${primary.dbid} through a proxy on port ${proxy.port}`);
      t.expect({ failover: [0], primaryFault: [0] });
      const cutAt = t.fault();
      proxy.blackhole = true;
      await t.waitFor('the PromoteMirror execution started for the unreachable primary to end', async () => (t.events(cutAt).some((e) => EXECUTION_ENDED.test(e.message)) ? true : undefined), t.params.abortTimeoutMs);
      if ((await t.actingPrimary(0))?.dbid !== primary.dbid) t.fail('content 0 failed over although its primary was alive behind the black hole');
      if (!t.metric('PromotionAborted', cutAt).length) t.fail('no PromotionAborted metric for the aborted failover');
      if (!(await t.history(cutAt)).some((h) => /abort/i.test(h.description))) t.fail('no history row for the aborted failover');

      t.fault();
      await killInstance(primary.datadir);
      try {
        await t.waitForFailover(0, t.params.failoverTimeoutMs);
      } catch (e) {
        throw new Error(`no failover within ${t.params.failoverTimeoutMs / 1000} s of the real kill: the aborted promotion still blocks content 0`, { cause: e });
      }
    },
  },
  {
    name: 'old-primary-restarted',
    title: 'old primary restarted by hand (pg_ctl start) after a failover',
    expected: 'failover; the old primary comes up read-only or is stopped',
    params: { fenceWindowMs: 15_000 },
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ failover: [0], primaryFault: [0] });
      t.fault();
      await killInstance(primary.datadir);
      await t.waitForFailover(0);
      const restartAt = Date.now();
      try {
        await t.cluster.host.start(primary); // pg_ctl start, as an operator or systemd would
        t.note(`pg_ctl start of dbid ${primary.dbid} succeeded`);
      } catch (e) {
        t.note(`pg_ctl start of dbid ${primary.dbid} failed: ${(e as Error).message.slice(0, 200)}`);
      }
      await t.expectFenced(primary);
      const fenceVisible = existsSync(join(primary.datadir, 'standby.signal'));
      const zombieFenced = t.metric('ZombieFenced', restartAt).length > 0;
      t.note(`ZombieFenced metric ${zombieFenced ? 'seen' : 'not seen'}; standby.signal ${fenceVisible ? 'present' : 'absent'}`);
      if (!zombieFenced && !fenceVisible) t.fail('neither a ZombieFenced metric nor a visible fence (standby.signal) on the old primary');
    },
  },
  {
    name: 'wrong-instance',
    title: "catalog addresses pointing at another instance: content 0's primary row, then its mirror row, at content 1's mirror (then content 0's primary killed)",
    expected: 'no action on the wrong instance; WrongInstance metric',
    params: { actTimeoutMs: 30_000 },
    async run(t) {
      const primary0 = t.primaryOf(0);
      const mirror0 = t.mirrorOf(0);
      const mirror1 = t.mirrorOf(1);
      const primary1 = t.primaryOf(1);
      // Content 0 cannot fail over while its mirror's address is wrong: it waits for an operator.
      t.expect({ primaryFault: [0], unavailable: [0] });
      const untouched = async (phase: string): Promise<void> => {
        const [r] = await sql<{ in_recovery: boolean }>(t.direct(mirror1.dbid), 'SELECT pg_is_in_recovery() AS in_recovery');
        if (!r.in_recovery) t.fail(`${phase}: dbid ${mirror1.dbid}, the instance at the wrong address, was promoted`);
        if (!(await mirrorConnected(t, t.direct(primary1.dbid), mirror1, true))) t.fail(`${phase}: content 1 was disturbed: its primary dbid ${primary1.dbid} no longer has its mirror in sync with sync rep on`);
        const now = (await t.cluster.catalog.load(t.clusterId)).segments.filter((r) => r.content === 1);
        if (!isDeepStrictEqual(now, t.initial.segments.filter((r) => r.content === 1))) t.fail(`${phase}: content 1's catalog rows changed`);
        if ((await t.actingPrimary(0))?.dbid !== primary0.dbid) t.fail(`${phase}: content 0 failed over`);
      };

      // 1. The prober's probe of content 0's primary reaches a mirror: "the acting primary reports itself a mirror" must not promote it.
      const at1 = t.fault();
      await setPort(t, primary0.dbid, mirror1.port, `the address of dbid ${primary0.dbid} (content 0's primary) now points at port ${mirror1.port} (dbid ${mirror1.dbid})`);
      await t
        .waitFor('a WrongInstance metric for the primary row at the wrong address', async () => (t.metric('WrongInstance', at1).length ? true : undefined), t.params.actTimeoutMs)
        .catch(() => t.fail(`no WrongInstance metric within ${t.params.actTimeoutMs / 1000} s of content 0's primary row pointing at dbid ${mirror1.dbid}`));
      await t.waitRounds(2);
      await untouched('primary row at the wrong address');
      await setPort(t, primary0.dbid, t.direct(primary0.dbid).port, `the address of dbid ${primary0.dbid} restored`);

      // 2. The mirror row at the wrong address, and the primary dies: the promotion must not touch what answers there.
      await setPort(t, mirror0.dbid, mirror1.port, `the address of dbid ${mirror0.dbid} (content 0's mirror) now points at port ${mirror1.port} (dbid ${mirror1.dbid})`);
      const at2 = t.fault();
      await killInstance(primary0.datadir);
      const named = (): string | undefined =>
        t.metric('WrongInstance', at2).length
          ? 'WrongInstance metric'
          : t.events(at2).find((e) => /WrongInstanceError/.test(String(e.cause ?? '')) && /failed|aborted/.test(e.message))
            ? 'the promotion failed with WrongInstanceError'
            : undefined;
      const how = await t
        .waitFor('FTS to name the wrong instance (WrongInstance, or a promotion failing with WrongInstanceError)', async () => named(), t.params.actTimeoutMs)
        .catch((e: Error) => {
          t.fail(e.message);
          return undefined;
        });
      if (how) t.note(`mirror row at the wrong address: ${how}`);
      await t.waitRounds(2);
      await untouched('mirror row at the wrong address');
    },
  },
  {
    name: 'console-swapped-dbids',
    title: 'PromoteMirror started by hand with the two dbids swapped (ftsctl workflow run)',
    expected: 'rejected (InvalidInput), nothing changed',
    async run(t) {
      const primary = t.primaryOf(0);
      const mirror = t.mirrorOf(0);
      const before = await t.cluster.catalog.load(t.clusterId);
      const input = JSON.stringify({ clusterId: t.clusterId, content: 0, failedPrimaryDbid: mirror.dbid, mirrorDbid: primary.dbid, catalogVersion: before.version, reason: 'fault matrix: console run with the dbids swapped' });
      t.fault();
      // What `ftsctl workflow run PromoteMirror --input '<json>'` runs.
      const result = await runWorkflowLocally(t.cluster, 'PromoteMirror', parseExecutionInput(input), { retryIntervalMs: 0 });
      if (result.status !== 'FAILED' || result.error !== 'InvalidInput') t.fail(`the execution ended ${result.status}${result.error ? ` (${result.error})` : ''}, not FAILED with InvalidInput`);
      const after = await t.cluster.catalog.load(t.clusterId);
      if (after.version !== before.version || !isDeepStrictEqual(after.segments, before.segments)) t.fail('the catalog changed');
      const p = await t.cluster.probe.probe(primary, { ...t.settings, probeRetries: 0 }, mirror);
      if (!p.ok || p.inRecovery || !p.syncRepOn) t.fail(`primary dbid ${primary.dbid} was touched: ${p.ok ? `in recovery ${p.inRecovery}, sync rep ${p.syncRepOn ? 'on' : 'off'}` : p.kind}`);
      const m = await t.cluster.probe.probe(mirror, { ...t.settings, probeRetries: 0 });
      if (!m.ok || !m.inRecovery) t.fail(`mirror dbid ${mirror.dbid} is no longer a mirror`);
    },
  },
  {
    name: 'mirror-crash-loop',
    title: 'mirror crash loop (gpdb #10327): killed and restarted repeatedly',
    expected: 'mirror marked down; commits not blocked beyond the bound',
    // Three drops within 3 x the grace period mark it down (the loop is faster than the grace period).
    cluster: { settings: { mirrorDownGracePeriodSeconds: 3, replicationAttempts: 2 } },
    params: { cycles: 4, downMs: 1500, upMs: 1500 },
    async run(t) {
      const primary = t.primaryOf(0);
      const mirror = t.mirrorOf(0);
      t.expect({ mirrorFault: [0] });
      const at = t.fault();
      for (let i = 0; i < t.params.cycles; i++) {
        await killInstance(mirror.datadir);
        await t.sleep(t.params.downMs);
        await t.cluster.host.start(mirror);
        await t.waitFor(`mirror dbid ${mirror.dbid} streaming again`, async () => ((await mirrorConnected(t, primary, mirror)) ? true : undefined), 30_000);
        await t.sleep(t.params.upMs);
      }
      const marked = (await t.history(at)).filter((h) => h.dbid === mirror.dbid && /to m, d, and n/.test(h.description));
      if (!marked.length) t.fail(`mirror dbid ${mirror.dbid} was never marked down in ${t.params.cycles} crashes`);
      else t.note(`marked down: ${marked[0].description.replace(/^.*?: /, '')}`);
    },
  },
  {
    name: 'mirror-catchup',
    title: 'mirror stopped, a lot written, mirror started and slow to catch up (its WAL receiver throttled) under writes',
    expected: 'no long stall (sync rep off while it catches up), back in sync',
    params: { walMb: 128, runMs: 5, stopMs: 300, catchUpTimeoutMs: 120_000 },
    async run(t) {
      const primary = t.primaryOf(0);
      const mirror = t.mirrorOf(0);
      t.expect({ mirrorFault: [0] });
      t.fault();
      await t.cluster.host.stop(mirror, 'fast');
      await waitMarkedDown(t, mirror);
      await waitSyncRep(t, primary, false);
      const table = `fts_catchup_${Date.now()}`;
      t.defer(() => sql(primary, `DROP TABLE IF EXISTS ${table}`));
      // ~560 bytes of WAL per row; the workload keeps committing meanwhile.
      await withSegmentClient(primary, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 5000, statementTimeoutMs: false, deadlineMs: 300_000 }, (c) =>
        c.query(`CREATE TABLE ${table} AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, $1::int) g`, [Math.ceil((t.params.walMb * 1024 * 1024) / 560)]),
      );
      const startedAt = Date.now();
      await t.cluster.host.start(mirror);
      // Slow to catch up: its WAL receiver runs runMs out of every runMs + stopMs until the primary reports it caught up.
      const throttle = throttleProcess(() => childProcess(mirror.datadir, /walreceiver/), t.params.runMs, t.params.stopMs);
      t.defer(() => throttle.stop());
      await t.waitFor(`mirror dbid ${mirror.dbid} caught up`, async () => {
        const p = await t.cluster.probe.probe(primary, { ...t.settings, probeRetries: 0 }, mirror);
        if (p.ok && p.mirror.state === 'catchup' && t.notes.every((n) => !n.startsWith('catching up'))) t.note(`catching up seen ${Date.now() - startedAt} ms after the start`);
        return p.ok && p.mirror.state === 'streaming' ? true : undefined;
      }, t.params.catchUpTimeoutMs, 100);
      const caughtUpAt = Date.now();
      await throttle.stop();
      await t.waitFor(`mirror dbid ${mirror.dbid} back in sync`, async () => ((await mirrorConnected(t, primary, mirror, true)) ? true : undefined), t.params.catchUpTimeoutMs, 200);
      const inSyncAt = Date.now();
      t.note(
        `${t.params.walMb} MB caught up ${caughtUpAt - startedAt} ms after the start (WAL receiver paused ${throttle.cycles()} times), in sync ${inSyncAt - startedAt} ms after; ` +
          `longest commit stall meanwhile ${longestStallMs(t.workloads.get(0)?.acks ?? [], startedAt, inSyncAt)} ms`,
      );
    },
  },
  {
    name: 'primary-reset-loop',
    title: 'postmaster reset loop (gpdb #4470): backends of the primary SIGKILLed repeatedly',
    expected: 'PrimaryReset / PrimaryResetLoop; failover past the threshold (mirror in sync)',
    params: { maxResets: 8, failoverTimeoutMs: 30_000 },
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ failover: [0], primaryFault: [0] });
      const at = t.fault();
      let resets = 0;
      while (resets < t.params.maxResets) {
        const state = await t
          .waitFor(`primary dbid ${primary.dbid} accepting connections`, async () => {
            if ((await t.actingPrimary(0))?.dbid !== primary.dbid) return 'failed over';
            await sql(primary, 'SELECT 1', [], 2000);
            return 'up';
          }, 20_000, 50)
          .catch(() => 'down');
        if (state !== 'up') break;
        // A probe round sees it up again between two crashes: each reset is told from a failure.
        await t.waitRounds(1);
        await crashBackend(primary).catch(() => undefined);
        resets += 1;
      }
      t.note(`${resets} backend crash(es)`);
      try {
        await t.waitForFailover(0);
      } catch (e) {
        const mirrorDown = (await t.history(at)).some((h) => h.dbid === t.mirrorOf(0).dbid && /to m, d, and n/.test(h.description));
        throw new Error(`${(e as Error).message} after ${resets} resets${mirrorDown ? ' (the mirror was marked down meanwhile: its drops counted as a crash loop)' : ''}`, { cause: e });
      } finally {
        if (!t.metric('PrimaryReset', at).length) t.fail('no PrimaryReset metric');
        if (!t.metric('PrimaryResetLoop', at).length) t.fail('no PrimaryResetLoop alarm');
      }
    },
  },
  {
    name: 'slow-crash-recovery',
    title: 'crash recovery with slow replay (gpdb #11770)',
    expected: 'no failover while recovery makes progress',
    params: { walMb: 96, segmentMs: 1000, progressRounds: 3 },
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ primaryFault: [0] });
      await sql(primary, 'DROP TABLE IF EXISTS recovery_load');
      t.defer(async () => {
        await sql(primary, 'DROP TABLE IF EXISTS recovery_load');
        await sql(primary, 'ALTER SYSTEM RESET checkpoint_timeout');
        await sql(primary, 'ALTER SYSTEM RESET max_wal_size');
        await sql(primary, 'SELECT pg_reload_conf()');
      });
      await writeWalSinceCheckpoint(primary, t.params.walMb);
      const at = t.fault();
      await crashBackend(primary);
      const throttle = paceRecovery(primary.datadir, t.params.segmentMs);
      t.defer(() => throttle.stop());
      // Paced to the end: the recovery lasts about (WAL segments) x segmentMs.
      await t.waitFor(`primary dbid ${primary.dbid} answering again`, async () => {
        const p = await t.cluster.probe.probe(primary, { ...t.settings, probeRetries: 0 });
        return p.ok && !p.inRecovery ? true : undefined;
      }, 120_000, 200);
      const answeredAt = Date.now();
      await throttle.stop();
      await t.waitRounds(2);
      const progress = t.decisions('recovery-in-progress', at, 0).length;
      t.note(`recovery took ${answeredAt - at} ms (${throttle.segments()} WAL segment(s) paced at ${t.params.segmentMs} ms); ${progress} round(s) saw it progress`);
      if (progress < t.params.progressRounds) t.fail(`only ${progress} round(s) saw the recovery progress (${t.params.progressRounds} expected)`);
      const started = t.decisions('fail-over', at, 0);
      if (started.length) t.fail(`a failover was started during a crash recovery that made progress: ${String(started[0].reason ?? started[0].message)}`);
      // A recovery shorter than a failed probe's detection tests nothing.
      const budgetMs = (t.settings.probeIntervalSeconds + worstCaseProbeSeconds(t.settings)) * 1000;
      if (answeredAt - at < budgetMs) t.notProvokedBecause(`the crash recovery lasted ${answeredAt - at} ms, less than the ${budgetMs} ms a failed primary takes to be declared failed`);
    },
  },
  {
    name: 'too-many-clients',
    title: '"too many clients": max_connections filled with non-superuser sessions',
    expected: 'alive, no failover',
    params: { holdRounds: 4 },
    async run(t) {
      const primary = t.primaryOf(0);
      await sql(primary, `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fts_filler') THEN CREATE ROLE fts_filler LOGIN; END IF; END $$`);
      const sessions: Client[] = [];
      t.defer(() => Promise.all(sessions.map((c) => c.end().catch(() => undefined))));
      const at = t.fault();
      for (let i = 0; i < 500; i++) {
        const c = new Client({ host: primary.address, port: primary.port, user: 'fts_filler', database: 'postgres', connectionTimeoutMillis: 5000 });
        c.on('error', () => undefined);
        try {
          await c.connect();
          sessions.push(c);
        } catch (e) {
          if ((e as { code?: string }).code !== '53300') throw e;
          t.note(`${sessions.length} sessions of a non-superuser fill max_connections: "${(e as Error).message}"`);
          break;
        }
      }
      await t.waitRounds(t.params.holdRounds);
      const started = t.decisions('fail-over', at, 0);
      if (started.length) t.fail(`a failover was started for a primary that only ran out of connection slots: ${String(started[0].reason ?? started[0].message)}`);
      t.note(`TooManyConnections metric ${t.metric('TooManyConnections', at).length ? 'seen' : 'not seen (the prober got a superuser slot)'}`);
    },
  },
  {
    name: 'pg-wal-read-only',
    title: 'pg_wal read-only for the PostgreSQL OS user, then a WAL segment switch',
    expected: 'failover (mirror in sync)',
    // Recycled segments ahead of the current one are reused without creating a file: switch until one must be created.
    params: { maxSwitches: 300 },
    async run(t) {
      const primary = t.primaryOf(0);
      t.expect({ failover: [0], primaryFault: [0] });
      const wal = join(primary.datadir, 'pg_wal');
      const mode = statSync(wal).mode & 0o7777;
      t.defer(() => existsSync(wal) && chmodSync(wal, mode));
      t.fault();
      chmodSync(wal, 0o500);
      let failure: string | undefined;
      for (let i = 0; i < t.params.maxSwitches && !failure; i++) {
        try {
          // A new WAL segment has to be created: PostgreSQL cannot, and PANICs.
          await sql(primary, `INSERT INTO ${WORKLOAD_TABLE} (id) VALUES ($1)`, [-Date.now() * 1000 - 500]);
          await sql(primary, 'SELECT pg_switch_wal()');
        } catch (e) {
          failure = (e as Error).message;
        }
      }
      if (!failure) {
        t.notProvokedBecause(`${t.params.maxSwitches} WAL segment switches with a read-only pg_wal did not make the primary fail`);
        return;
      }
      t.note(`the primary failed: ${failure.slice(0, 120)}`);
      await t.waitForFailover(0);
      t.note(`DiskFailure metric ${t.metric('DiskFailure').length ? 'seen' : 'not seen'}`);
    },
  },
  {
    name: 'lease-holder-frozen',
    title: 'lease holder (background prober) frozen past its lease, a second prober takes over, the first thawed as a primary dies',
    expected: 'the second fails over; the thawed one acts on nothing',
    prober: false,
    params: { leaseLostTimeoutMs: 30_000 },
    async run(t) {
      const first = await t.startDaemon();
      await t.waitRounds(2, first.timeline);
      const thaw = t.freeze(first.pid);
      const frozenAt = Date.now();
      t.startProber({ owner: 'second' });
      await t.waitForLease('second');
      t.note(`the second prober took the lease ${Date.now() - frozenAt} ms after the freeze`);
      t.expect({ failover: [1], primaryFault: [1] });
      const at = t.fault();
      await killInstance(t.primaryOf(1).datadir);
      thaw();
      await t.waitForFailover(1);
      await t
        .waitFor('the thawed prober to notice it lost the lease', async () => (first.timeline.poll(), first.timeline.events.some((e) => e.at >= at && /lease (lost|lapsed)|not (the )?lease holder/i.test(e.message)) ? true : undefined), t.params.leaseLostTimeoutMs)
        .catch((e: Error) => t.fail(e.message));
      const acted = actions(first.timeline.events.filter((e) => e.at >= at));
      if (acted.length) t.fail(`the thawed prober acted: ${acted.slice(0, 3).join('; ')}`);
    },
  },
  {
    name: 'two-probers',
    title: 'two probers at once, then a primary killed',
    expected: 'one holds the lease and acts: exactly one failover',
    prober: false,
    async run(t) {
      const a = t.startProber({ owner: 'prober-a' });
      const b = t.startProber({ owner: 'prober-b' });
      await t.waitForLease();
      await t.waitRounds(2);
      t.expect({ failover: [0], primaryFault: [0] });
      t.fault();
      await killInstance(t.primaryOf(0).datadir);
      await t.waitForFailover(0);
      const executions = () => [...a.workflows.list(), ...b.workflows.list()];
      await t.waitFor('PromoteMirror executions to end', async () => (executions().every((e) => e.outcome) ? true : undefined), 60_000);
      if (executions().length !== 1) t.fail(`${executions().length} PromoteMirror executions, not 1`);
      const busy = [a.rounds(), b.rounds()].filter((n) => n > 0).length;
      if (busy !== 1) t.fail(`${busy} probers ran rounds, not 1`);
    },
  },
  {
    name: 'prober-killed-mid-failover',
    title: 'prober (background) killed mid-failover',
    expected: 'the next prober finishes it: exactly one promotion',
    prober: false,
    params: { finishTimeoutMs: 150_000 },
    timeoutMs: 240_000,
    async run(t) {
      const first = await t.startDaemon();
      t.expect({ failover: [0], primaryFault: [0] });
      const at = t.fault();
      await killInstance(t.primaryOf(0).datadir);
      await first.timeline.waitFor('the prober to start PromoteMirror', (e) => e.decision === 'fail-over', at, 30_000);
      signalGroup(first.pid, 'SIGKILL'); // the prober and its in-process workflow die mid-failover
      const next = t.startProber({ owner: 'next' });
      await t.waitForFailover(0, t.params.finishTimeoutMs);
      await t.waitFor('the promotion to finish (pending marker cleared)', async () => ((await t.cluster.catalog.load(t.clusterId)).pendingPromotions.length === 0 ? true : undefined), t.params.finishTimeoutMs, 250);
      await t.waitFor('PromoteMirror executions to end', async () => (next.workflows.list().every((e) => e.outcome) ? true : undefined), 60_000);
      const flips = (await t.history(at)).filter((h) => /to p, u, and n: mirror promoted/.test(h.description));
      if (flips.length !== 1) t.fail(`${flips.length} promotions in the history, not 1`);
      if (!t.events(at).some((e) => MILESTONES.writable(e))) t.note('no write check seen in the timelines');
    },
  },
  {
    name: 'dynamodb-paused',
    title: 'DynamoDB Local stopped (SIGSTOP) mid-run, then resumed',
    expected: 'no wrong action; probing resumes',
    cluster: { ownDynamo: true },
    params: { pauseMs: 10_000, roundsAfter: 3 },
    async run(t) {
      const pid = t.cluster.state.dynamo.pid;
      if (!pid) throw new Error('the cluster has no DynamoDB Local process of its own');
      const at = t.fault();
      const thaw = t.freeze(pid);
      await t.sleep(t.params.pauseMs);
      thaw();
      await t.waitRounds(t.params.roundsAfter, t.timeline, 90_000).catch(() => t.fail(`probing did not resume: fewer than ${t.params.roundsAfter} rounds within 90 s of the resume`));
      const acted = actions(t.events(at));
      if (acted.length) t.fail(`the prober acted on a healthy cluster: ${acted.slice(0, 3).join('; ')}`);
    },
  },
];

/** Scenarios by name; `only` (names) in the matrix's order. Throws naming the unknown ones. */
export function selectScenarios(only?: string[]): Scenario[] {
  if (!only?.length) return SCENARIOS;
  const unknown = only.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  return SCENARIOS.filter((s) => only.includes(s.name));
}
