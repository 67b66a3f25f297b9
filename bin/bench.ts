/**
 * `npm run bench [-- --json] [-- --runs N] [-- --full-mb N] [-- --coordinator-runs N] [-- --coordinator-only]`:
 * repeated failovers on a local
 * cluster under a write workload, with the background prober at default settings. Each
 * run kills the acting primary of one content (alternating), measures detection and RTO
 * (kill to the first commit on the new primary at the address the catalog names), then
 * runs RecoverSegments (incremental: the old primary is rewound into a mirror) and
 * Rebalance (a planned switchover back to the preferred roles) under the same workload,
 * measuring the recovery time and the rebalance's write gap, and counts acknowledged
 * commits missing afterwards. At the end, a full recovery (`-F`) of a mirror whose data
 * directory was removed, with `--full-mb` of table data on its content.
 *
 * Then coordinator activations (cli/coordinator-drill.ts), `--coordinator-runs` of each
 * mode, alternating, each on a fresh small cluster (coordinator, synchronous standby, one
 * primary) with the prober at default settings and a workload writing through the client
 * endpoint: the coordinator is killed with kill -9; by hand, ActivateStandby is run as
 * `ftsctl activatestandby` runs it once the prober raised CoordinatorUnreachable, and the
 * RTO is the command to the first commit through the endpoint; automatically
 * (`autoActivateStandby`), the RTO is the kill to that commit. Lost commits are counted
 * after each run.
 */
import { rm } from 'node:fs/promises';
import { cpus, totalmem, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError } from 'commander';
import { killInstance } from '../lambdas/adapters/local/host';
import { runPgBinary } from '../lambdas/adapters/local/postgres-binaries';
import { trustCredentials, withSegmentClient } from '../lambdas/adapters/postgres/connection';
import { killAndMeasure, longestStallMs, Timeline, Workload, type FailoverMeasurement } from '../cli/failover-drill';
import { killCoordinatorAndMeasure, startCoordinatorProber, startEndpointWorkload, waitStandbyInSync, type ActivationMeasurement, type ActivationMode } from '../cli/coordinator-drill';
import type { LocalProber } from '../cli/local-prober';
import { DEFAULT_SETTINGS } from '../lambdas/core/settings';
import { downLocalCluster, LOCAL_SUPERUSER, localClusterDir, upLocalCluster, type LocalCluster } from '../cli/local-cluster';
import { runWorkflowLocally, type WorkflowRunResult } from './ftsctl';

const BENCH_CLUSTER_ID = 'bench';
const COORDINATOR_BENCH_CLUSTER_ID = 'bench-coordinator';
/** The issue's targets: p95 of the RTO by mode, and no acknowledged commit lost (synchronous standby). */
export const ACTIVATION_TARGETS = { automatic_rto_p95_ms: 10_000, manual_rto_p95_ms: 3000, lost_commits: 0 } as const;

/** Directories of the clusters the bench runs now: a signal tears them down. */
const running = new Set<string>();

/** p50, p95 and max by nearest rank. */
export function summarize(values: number[]): { p50: number; p95: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
  return { p50: rank(50), p95: rank(95), max: sorted[sorted.length - 1] ?? NaN };
}

async function waitInSync(cluster: LocalCluster, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await cluster.catalog.load(BENCH_CLUSTER_ID)).status !== 'up') {
    if (Date.now() > deadline) throw new Error(`cluster not back in sync within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Runs a workflow on the bench cluster as `ftsctl recoverseg` does; throws unless it succeeded. */
async function runWorkflow(cluster: LocalCluster, kind: 'RecoverSegments' | 'Rebalance', input: Record<string, unknown>): Promise<WorkflowRunResult & { ms: number }> {
  const started = Date.now();
  const result = await runWorkflowLocally(cluster, kind, { clusterId: BENCH_CLUSTER_ID, pollSeconds: 1, ...input });
  if (result.status !== 'SUCCEEDED') throw new Error(`${kind} ended ${result.status}: ${result.error}: ${result.cause}`);
  return { ...result, ms: Date.now() - started };
}

/** Writes about `mb` MB of table data on the acting primary of `content` (it reaches the mirror too). */
async function fill(cluster: LocalCluster, content: number, mb: number): Promise<void> {
  const primary = (await cluster.catalog.load(BENCH_CLUSTER_ID)).segments.find((r) => r.content === content && r.role === 'p')!;
  await withSegmentClient(primary, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 5000, statementTimeoutMs: 3_600_000 }, async (c) => {
    await c.query('CREATE TABLE IF NOT EXISTS bench_fill (id bigint, pad text)');
    // About 1 KB per row.
    await c.query(`INSERT INTO bench_fill SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, $1::bigint) AS g`, [mb * 1000]);
    await c.query('CHECKPOINT');
  });
}

/** Size of the data directory of the acting primary of `content`, in bytes (what a full copy moves). */
async function databaseBytes(cluster: LocalCluster, content: number): Promise<number> {
  const primary = (await cluster.catalog.load(BENCH_CLUSTER_ID)).segments.find((r) => r.content === content && r.role === 'p')!;
  return withSegmentClient(primary, trustCredentials(LOCAL_SUPERUSER), { connectTimeoutMs: 5000, statementTimeoutMs: 60_000 }, async (c) =>
    Number((await c.query<{ n: string }>('SELECT sum(pg_database_size(oid))::text AS n FROM pg_database')).rows[0].n),
  );
}

interface BenchOptions {
  json?: boolean;
  runs: number;
  quietSeconds: number;
  fullMb: number;
  coordinatorRuns: number;
  coordinatorOnly?: boolean;
}

type Summary = ReturnType<typeof summarize>;

/** The machine the figures were measured on. */
async function machine(): Promise<{ cpus: number; cpu: string; memory_gib: number; kernel: string; node: string; postgres: string }> {
  const pg = (await runPgBinary('postgres', ['--version'])).stdout.trim();
  return { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memory_gib: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, postgres: pg };
}

/** The segment failovers, recoveries and rebalances (and the full recovery) on one cluster. */
async function segmentBench(o: BenchOptions, log: (line: string) => void) {
  const dir = localClusterDir(BENCH_CLUSTER_ID);
  await downLocalCluster(dir);
  running.add(dir);
  const spec = { clusterId: BENCH_CLUSTER_ID, hosts: 2, primariesPerHost: 1, mirroring: 'group' as const };
  const runs: FailoverMeasurement[] = [];
  let acknowledged = 0;
  let lost = 0;
  const roundMs: number[] = [];
  const failingRoundMs: number[] = [];
  const recoveryMs: number[] = [];
  const rebalanceMs: number[] = [];
  const rebalanceGapMs: number[] = [];
  const switchoverStepGapMs: number[] = [];
  let full: { data_bytes: number; recovery_ms: number; in_sync_ms: number } | undefined;
  const workloads: Workload[] = [];
  let cluster: LocalCluster | undefined;
  try {
    cluster = await upLocalCluster(spec, { dir, backgroundProber: true, onProgress: log });
    const timeline = new Timeline(cluster.proberLog);
    const settings = await cluster.catalog.loadSettings(BENCH_CLUSTER_ID);
    // A quiet window under write load first: the cost of probe rounds when nothing fails.
    const quiet = new Workload(cluster.catalog, BENCH_CLUSTER_ID, 0);
    await quiet.prepare();
    quiet.start();
    await sleep(o.quietSeconds * 1000);
    await quiet.stop();
    workloads.push(quiet);
    for (let i = 0; i < o.runs; i++) {
      const content = i % 2;
      const workload = new Workload(cluster.catalog, BENCH_CLUSTER_ID, content);
      workloads.push(workload);
      await workload.prepare();
      workload.start();
      await sleep(1000);
      // Steady-state rounds: the ones since the previous run's recovery.
      timeline.poll();
      const m = await killAndMeasure(cluster.catalog, BENCH_CLUSTER_ID, workload, timeline);
      runs.push(m);
      // gprecoverseg, then gprecoverseg -r, both under the same writes.
      const recovered = await runWorkflow(cluster, 'RecoverSegments', { contents: [content] });
      recoveryMs.push(recovered.ms);
      await waitInSync(cluster);
      const before = Date.now();
      const rebalanced = await runWorkflow(cluster, 'Rebalance', { contents: [content] });
      const after = Date.now();
      rebalanceMs.push(rebalanced.ms);
      rebalanceGapMs.push(longestStallMs(workload.acks, before, after));
      const gap = (rebalanced.output as { results?: { switchOver?: { writeGapMs?: number } }[] }).results?.[0]?.switchOver?.writeGapMs;
      if (gap !== undefined) switchoverStepGapMs.push(gap);
      await waitInSync(cluster);
      await sleep(500);
      await workload.stop();
      const count = await workload.lostCommits();
      acknowledged += count.acknowledged;
      lost += count.lost.length;
      log(
        `run ${i + 1}/${o.runs}: content ${content}, detection ${m.detectionMs} ms, RTO ${m.rtoMs} ms, recovery ${recovered.ms} ms, ` +
          `rebalance write gap ${rebalanceGapMs.at(-1)} ms, ${count.acknowledged} commits, ${count.lost.length} lost`,
      );
    }
    if (o.fullMb > 0) {
      // gprecoverseg -F: the mirror of content 0 loses its data directory.
      log(`full recovery: writing ${o.fullMb} MB on content 0`);
      await fill(cluster, 0, o.fullMb);
      await waitInSync(cluster);
      const mirror = (await cluster.catalog.load(BENCH_CLUSTER_ID)).segments.find((r) => r.content === 0 && r.role === 'm')!;
      await killInstance(mirror.datadir);
      while ((await cluster.catalog.load(BENCH_CLUSTER_ID)).segments.find((r) => r.dbid === mirror.dbid)?.status !== 'd') await sleep(200);
      await rm(mirror.datadir, { recursive: true, force: true });
      const dataBytes = await databaseBytes(cluster, 0);
      const started = Date.now();
      const recovered = await runWorkflow(cluster, 'RecoverSegments', { mode: 'full', contents: [0] });
      await waitInSync(cluster);
      full = { data_bytes: dataBytes, recovery_ms: recovered.ms, in_sync_ms: Date.now() - started };
      log(`full recovery of ${(dataBytes / 2 ** 20).toFixed(0)} MB: ${recovered.ms} ms, in sync after ${full.in_sync_ms} ms`);
    }
    // Every acknowledged commit of every run must still be there after all later failovers.
    let lostAtEnd = 0;
    for (const w of workloads) lostAtEnd += (await w.lostCommits()).lost.length;
    lost = Math.max(lost, lostAtEnd);
    timeline.poll();
    // Each content's probe logs ContentRoundMs, ProbesFailed, Decisions. Quiet ones (the
    // primary answers, nothing to do) show the cost of probing; failed ones include the retries.
    const metrics = timeline.events.filter((e) => e.level === 'metric');
    metrics.forEach((e, i) => {
      if (e.message !== 'ContentRoundMs') return;
      const failed = Number(metrics[i + 1]?.value ?? 0);
      const decisions = Number(metrics[i + 2]?.value ?? 0);
      if (failed > 0) failingRoundMs.push(Number(e.value));
      else if (decisions === 0) roundMs.push(Number(e.value));
    });

    return {
      cluster: { instances: cluster.state.rows.length, contents: 2, probed_per_round: cluster.state.rows.filter((r) => r.role === 'p').length },
      settings,
      failover: {
        runs: runs.length,
        detection_ms: summarize(runs.map((r) => r.detectionMs)),
        rto_ms: summarize(runs.map((r) => r.rtoMs)),
        flip_to_promoted_ms: summarize(runs.map((r) => r.promotedAt - r.flippedAt)),
        acknowledged_commits: acknowledged,
        lost_commits: lost,
      },
      recovery: {
        incremental_runs: recoveryMs.length,
        incremental_ms: summarize(recoveryMs),
        ...(full ? { full } : {}),
      },
      rebalance: {
        switchovers: rebalanceGapMs.length,
        write_gap_ms: summarize(rebalanceGapMs),
        switchover_step_stop_to_writable_ms: summarize(switchoverStepGapMs),
        workflow_ms: summarize(rebalanceMs),
      },
      probe_round_ms: { ...summarize(roundMs), probes: roundMs.length },
      probe_round_with_failed_probe_ms: { ...summarize(failingRoundMs), probes: failingRoundMs.length },
    };
  } finally {
    for (const w of workloads) await w.stop().catch(() => undefined);
    await downLocalCluster(dir);
    running.delete(dir);
  }
}

type SegmentBench = Awaited<ReturnType<typeof segmentBench>>;

/** One coordinator activation on a fresh cluster, which is removed afterwards. */
async function activationRun(mode: ActivationMode, log: (line: string) => void): Promise<{ m: ActivationMeasurement; acknowledged: number; lost: number; instances: number }> {
  const dir = localClusterDir(COORDINATOR_BENCH_CLUSTER_ID);
  await downLocalCluster(dir);
  running.add(dir);
  let prober: LocalProber | undefined;
  let workload: Workload | undefined;
  try {
    const cluster = await upLocalCluster(
      { clusterId: COORDINATOR_BENCH_CLUSTER_ID, hosts: 1, mirroring: 'none', coordinator: true, standby: true, ...(mode === 'automatic' ? { settings: { autoActivateStandby: true } } : {}) },
      { dir, onProgress: (l) => log(`  ${l}`) },
    );
    const timeline = new Timeline();
    prober = startCoordinatorProber(cluster, timeline);
    await waitStandbyInSync(cluster.catalog, COORDINATOR_BENCH_CLUSTER_ID);
    workload = await startEndpointWorkload(cluster);
    // Steady state: a few probe rounds under the writes; then the kill at a random point of
    // the probe interval (right after a round starts would always be the slowest detection).
    const rounds = prober.rounds();
    while (prober.rounds() < rounds + 2) await sleep(50);
    const { probeIntervalSeconds } = await cluster.catalog.loadSettings(COORDINATOR_BENCH_CLUSTER_ID);
    await sleep(Math.random() * probeIntervalSeconds * 1000);
    const m = await killCoordinatorAndMeasure(cluster, workload, timeline, { mode });
    await sleep(500);
    await workload.stop();
    const count = await workload.lostCommits();
    return { m, acknowledged: count.acknowledged, lost: count.lost.length, instances: cluster.state.rows.length };
  } finally {
    await workload?.stop().catch(() => undefined);
    await prober?.stop().catch(() => undefined);
    await downLocalCluster(dir);
    running.delete(dir);
  }
}

/** `runs` manual and `runs` automatic activations, alternating. */
async function coordinatorBench(runs: number, log: (line: string) => void) {
  const done: Record<ActivationMode, ActivationMeasurement[]> = { manual: [], automatic: [] };
  const commits: Record<ActivationMode, { acknowledged: number; lost: number }> = { manual: { acknowledged: 0, lost: 0 }, automatic: { acknowledged: 0, lost: 0 } };
  let instances = 0;
  for (let i = 0; i < 2 * runs; i++) {
    const mode: ActivationMode = i % 2 === 0 ? 'manual' : 'automatic';
    log(`activation ${i + 1}/${2 * runs} (${mode}): building a cluster`);
    const r = await activationRun(mode, log);
    done[mode].push(r.m);
    commits[mode].acknowledged += r.acknowledged;
    commits[mode].lost += r.lost;
    instances = r.instances;
    log(
      `activation ${i + 1}/${2 * runs} (${mode}): detection ${r.m.detectionMs} ms, ${mode === 'manual' ? 'command' : 'decision'} -> write verified ${r.m.activationMs} ms, ` +
        `RTO ${r.m.rtoMs} ms (${mode === 'manual' ? 'command' : 'kill'} -> first commit through the endpoint), ${r.acknowledged} commits, ${r.lost} lost`,
    );
  }
  const all = [...done.manual, ...done.automatic];
  const stat = (ms: ActivationMeasurement[], f: (m: ActivationMeasurement) => number): Summary => summarize(ms.map(f));
  const manual = done.manual;
  const automatic = done.automatic;
  const result = {
    cluster: { instances, layout: 'coordinator + synchronous standby + one primary (no mirror); a fresh cluster per activation' },
    settings: { ...DEFAULT_SETTINGS, autoActivateStandby: { manual: false, automatic: true } },
    manual: {
      runs: manual.length,
      detection_ms: stat(manual, (m) => m.detectionMs),
      command_to_first_commit_ms: stat(manual, (m) => m.rtoMs),
      command_to_write_verified_ms: stat(manual, (m) => m.activationMs),
      kill_to_first_commit_ms: stat(manual, (m) => m.killToCommitMs),
      acknowledged_commits: commits.manual.acknowledged,
      lost_commits: commits.manual.lost,
    },
    automatic: {
      runs: automatic.length,
      detection_ms: stat(automatic, (m) => m.detectionMs),
      kill_to_first_commit_ms: stat(automatic, (m) => m.rtoMs),
      decision_to_write_verified_ms: stat(automatic, (m) => m.activationMs),
      acknowledged_commits: commits.automatic.acknowledged,
      lost_commits: commits.automatic.lost,
    },
    // Each ActivateStandby step, both modes: from the end of the step before to its own log line.
    steps_ms: {
      validate: stat(all, (m) => m.plannedAt - (m.commandAt ?? m.detectedAt)),
      confirm_down: stat(all, (m) => m.confirmedDownAt - m.plannedAt),
      fence: stat(all, (m) => m.fencedAt - m.confirmedDownAt),
      flip_and_promote: stat(all, (m) => m.promotedAt - m.fencedAt),
      move_endpoint: stat(all, (m) => m.endpointMovedAt - m.promotedAt),
      verify_write: stat(all, (m) => m.writeVerifiedAt - m.endpointMovedAt),
      promoted_to_first_commit: stat(all, (m) => m.firstCommitAt - m.promotedAt),
    },
    targets: ACTIVATION_TARGETS,
    met: {} as Record<string, boolean>,
  };
  result.met = {
    automatic_rto_p95: result.automatic.kill_to_first_commit_ms.p95 <= ACTIVATION_TARGETS.automatic_rto_p95_ms,
    manual_rto_p95: result.manual.command_to_first_commit_ms.p95 <= ACTIVATION_TARGETS.manual_rto_p95_ms,
    no_lost_commits: result.manual.lost_commits + result.automatic.lost_commits === ACTIVATION_TARGETS.lost_commits,
  };
  return result;
}

type CoordinatorBench = Awaited<ReturnType<typeof coordinatorBench>>;

const row = (name: string, s: Summary, extra?: string): string => `| ${name} | ${s.p50} | ${s.p95} | ${s.max} |${extra === undefined ? '' : ` ${extra} |`}`;

function segmentMarkdown(result: SegmentBench, m: Awaited<ReturnType<typeof machine>>): string[] {
  const f = result.failover;
  return [
    `${f.runs} failovers, each followed by an incremental recovery and a rebalance under the same writes; ${result.cluster.instances} instances (${result.cluster.probed_per_round} acting primaries probed per round), default settings; ${f.acknowledged_commits} commits acknowledged, **${f.lost_commits} lost**.`,
    `Machine: ${m.cpus} × ${m.cpu}, ${m.memory_gib} GiB, Linux ${m.kernel}, Node ${m.node}, ${m.postgres}.`,
    '',
    '| measure (ms) | p50 | p95 | max |',
    '|---|---:|---:|---:|',
    row('detection (kill → failover decided)', f.detection_ms),
    row('catalog flip → mirror promoted', f.flip_to_promoted_ms),
    row('RTO (kill → first commit on the new primary)', f.rto_ms),
    row('incremental recovery (RecoverSegments start → end, pg_rewind)', result.recovery.incremental_ms),
    row(`rebalance write gap (longest pause between acknowledged commits, ${result.rebalance.switchovers} switchovers)`, result.rebalance.write_gap_ms),
    row('rebalance: primary stopped → new primary writable (SwitchOver step)', result.rebalance.switchover_step_stop_to_writable_ms),
    row('rebalance (Rebalance start → end, rewind included)', result.rebalance.workflow_ms),
    row(`probe of one content, primary answers, nothing to do (${result.probe_round_ms.probes} probes)`, result.probe_round_ms),
    row(`probe of a dead primary, retries included (${result.probe_round_with_failed_probe_ms.probes} probes)`, result.probe_round_with_failed_probe_ms),
    '',
    ...(result.recovery.full
      ? [
          `Full recovery (RecoverSegments, mode full: pg_basebackup into the emptied directory) of a ${(result.recovery.full.data_bytes / 2 ** 20).toFixed(0)} MB segment: ${result.recovery.full.recovery_ms} ms to the end of the workflow, ${result.recovery.full.in_sync_ms} ms until the pair was in sync.`,
          '',
        ]
      : []),
  ];
}

function coordinatorMarkdown(c: CoordinatorBench, m: Awaited<ReturnType<typeof machine>>, withMachine: boolean): string[] {
  const mark = (ok: boolean): string => (ok ? 'met' : '**missed**');
  const t = c.targets;
  return [
    `${c.manual.runs} activation${c.manual.runs === 1 ? '' : 's'} by hand and ${c.automatic.runs} automatic (autoActivateStandby), alternating, each on a fresh cluster of ${c.cluster.instances} instances (coordinator, synchronous standby, one primary) with the prober at default settings and a workload committing through the client endpoint; the coordinator killed with kill -9; ${c.manual.acknowledged_commits + c.automatic.acknowledged_commits} commits acknowledged, **${c.manual.lost_commits + c.automatic.lost_commits} lost**.`,
    ...(withMachine ? [`Machine: ${m.cpus} × ${m.cpu}, ${m.memory_gib} GiB, Linux ${m.kernel}, Node ${m.node}, ${m.postgres}.`] : []),
    '',
    '| measure (ms) | p50 | p95 | max | target |',
    '|---|---:|---:|---:|---|',
    row('by hand: command → first commit through the endpoint (RTO)', c.manual.command_to_first_commit_ms, `p95 ≤ ${t.manual_rto_p95_ms}: ${mark(c.met.manual_rto_p95)}`),
    row('by hand: command → the workflow\'s write through the endpoint', c.manual.command_to_write_verified_ms, ''),
    row('by hand: detection (kill → CoordinatorUnreachable)', c.manual.detection_ms, ''),
    row('automatic: kill → first commit through the endpoint (RTO)', c.automatic.kill_to_first_commit_ms, `p95 ≤ ${t.automatic_rto_p95_ms}: ${mark(c.met.automatic_rto_p95)}`),
    row('automatic: detection (kill → ActivateStandby started)', c.automatic.detection_ms, ''),
    row('automatic: decision → the workflow\'s write through the endpoint', c.automatic.decision_to_write_verified_ms, ''),
    row('step Validate (start → content -1 held)', c.steps_ms.validate, ''),
    row('step ConfirmDown (probe + the standby\'s WAL receiver)', c.steps_ms.confirm_down, ''),
    row('step FenceCoordinator', c.steps_ms.fence, ''),
    row('step Activate (catalog flip, pg_promote)', c.steps_ms.flip_and_promote, ''),
    row('step MoveEndpoint (forwarder acknowledged)', c.steps_ms.move_endpoint, ''),
    row('step VerifyWrite (a commit through the endpoint)', c.steps_ms.verify_write, ''),
    row('standby promoted → first commit of the workload through the endpoint', c.steps_ms.promoted_to_first_commit, ''),
    '',
    `Lost commits: ${c.manual.lost_commits} by hand, ${c.automatic.lost_commits} automatic (target 0: ${mark(c.met.no_lost_commits)}).`,
    '',
  ];
}

async function main(): Promise<void> {
  const count = (name: string, min: number) => (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const o = new Command('bench')
    .option('--json', 'one JSON object instead of a Markdown table')
    .option('--runs <n>', 'failovers to run (at least 10 for the quoted figures)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--runs must be a positive integer, got "${v}"`);
      return n;
    }, 10)
    .option('--quiet-seconds <s>', 'seconds of probe rounds under write load before the first failover', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`--quiet-seconds must be a number >= 0, got "${v}"`);
      return n;
    }, 20)
    .option('--full-mb <mb>', 'MB of table data on the content whose mirror is then recovered in full (0: no full recovery)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`--full-mb must be an integer >= 0, got "${v}"`);
      return n;
    }, 1024)
    .option('--coordinator-runs <n>', 'coordinator activations of each mode, by hand and automatic (at least 5 for the quoted figures; 0: none)', count('--coordinator-runs', 0), 5)
    .option('--coordinator-only', 'only the coordinator activations')
    .parse(process.argv)
    .opts<BenchOptions>();
  if (o.coordinatorOnly && o.coordinatorRuns === 0) throw new InvalidArgumentError('--coordinator-only with --coordinator-runs 0 measures nothing');
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const stop = (): void => {
    void Promise.all([...running].map((dir) => downLocalCluster(dir).catch(() => undefined))).finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const segments = o.coordinatorOnly ? undefined : await segmentBench(o, log);
  const coordinator = o.coordinatorRuns > 0 ? await coordinatorBench(o.coordinatorRuns, log) : undefined;
  const m = await machine();
  const result = { machine: m, ...(segments ?? {}), ...(coordinator ? { coordinator } : {}) };
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write([...(segments ? segmentMarkdown(segments, m) : []), ...(coordinator ? coordinatorMarkdown(coordinator, m, !segments) : [])].join('\n'));
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
