/**
 * `npm run bench [-- --json] [-- --runs N] [-- --full-mb N]`: repeated failovers on a local
 * cluster under a write workload, with the background prober at default settings. Each
 * run kills the acting primary of one content (alternating), measures detection and RTO
 * (kill to the first commit on the new primary at the address the catalog names), then
 * runs RecoverSegments (incremental: the old primary is rewound into a mirror) and
 * Rebalance (a planned switchover back to the preferred roles) under the same workload,
 * measuring the recovery time and the rebalance's write gap, and counts acknowledged
 * commits missing afterwards. At the end, a full recovery (`-F`) of a mirror whose data
 * directory was removed, with `--full-mb` of table data on its content.
 */
import { rm } from 'node:fs/promises';
import { cpus, totalmem, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError } from 'commander';
import { killInstance } from '../lambdas/adapters/local/host';
import { runPgBinary } from '../lambdas/adapters/local/postgres-binaries';
import { trustCredentials, withSegmentClient } from '../lambdas/adapters/postgres/connection';
import { killAndMeasure, longestStallMs, Timeline, Workload, type FailoverMeasurement } from '../cli/failover-drill';
import { downLocalCluster, LOCAL_SUPERUSER, localClusterDir, upLocalCluster, type LocalCluster } from '../cli/local-cluster';
import { runWorkflowLocally, type WorkflowRunResult } from './ftsctl';

const BENCH_CLUSTER_ID = 'bench';

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

async function main(): Promise<void> {
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
    .parse(process.argv)
    .opts<{ json?: boolean; runs: number; quietSeconds: number; fullMb: number }>();
  const log = (line: string): void => void process.stderr.write(`${line}\n`);

  const dir = localClusterDir(BENCH_CLUSTER_ID);
  await downLocalCluster(dir);
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

    const pg = (await runPgBinary('postgres', ['--version'])).stdout.trim();
    const result = {
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memory_gib: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, postgres: pg },
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
    if (o.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      const f = result.failover;
      const row = (name: string, s: { p50: number; p95: number; max: number }): string => `| ${name} | ${s.p50} | ${s.p95} | ${s.max} |`;
      process.stdout.write(
        [
          `${f.runs} failovers, each followed by an incremental recovery and a rebalance under the same writes; ${result.cluster.instances} instances (${result.cluster.probed_per_round} acting primaries probed per round), default settings; ${f.acknowledged_commits} commits acknowledged, **${f.lost_commits} lost**.`,
          `Machine: ${result.machine.cpus} × ${result.machine.cpu}, ${result.machine.memory_gib} GiB, Linux ${result.machine.kernel}, Node ${result.machine.node}, ${result.machine.postgres}.`,
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
        ].join('\n'),
      );
    }
  } finally {
    await downLocalCluster(dir);
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
