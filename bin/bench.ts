/**
 * `npm run bench [-- --json] [-- --runs N]`: repeated failovers on a local cluster under a
 * write workload, with the background prober at default settings. Each run kills the
 * acting primary of one content (alternating), measures detection and RTO (kill to the
 * first commit on the new primary at the address the catalog names), counts acknowledged
 * commits missing afterwards, then rewinds the old primary into a mirror and waits until
 * the prober reports the pair in sync again.
 */
import { cpus, totalmem, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError } from 'commander';
import { runPgBinary } from '../lambdas/adapters/local/postgres-binaries';
import { killAndMeasure, Timeline, Workload, type FailoverMeasurement } from '../cli/failover-drill';
import { downLocalCluster, localClusterDir, upLocalCluster, type LocalCluster } from '../cli/local-cluster';

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

/** Rewinds the failed primary of `content` into a mirror of the new primary (what gprecoverseg does). */
async function recover(cluster: LocalCluster, content: number): Promise<void> {
  const rows = (await cluster.catalog.load(BENCH_CLUSTER_ID)).segments.filter((r) => r.content === content);
  const primary = rows.find((r) => r.role === 'p')!;
  const failed = rows.find((r) => r.role === 'm')!;
  await cluster.host.rebuildAsMirror(failed, primary, 'rewind');
  await waitInSync(cluster);
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
    .parse(process.argv)
    .opts<{ json?: boolean; runs: number; quietSeconds: number }>();
  const log = (line: string): void => void process.stderr.write(`${line}\n`);

  const dir = localClusterDir(BENCH_CLUSTER_ID);
  await downLocalCluster(dir);
  const spec = { clusterId: BENCH_CLUSTER_ID, hosts: 2, primariesPerHost: 1, mirroring: 'group' as const };
  const runs: FailoverMeasurement[] = [];
  let acknowledged = 0;
  let lost = 0;
  const roundMs: number[] = [];
  const failingRoundMs: number[] = [];
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
      await sleep(500);
      await workload.stop();
      const count = await workload.lostCommits();
      acknowledged += count.acknowledged;
      lost += count.lost.length;
      runs.push(m);
      log(`run ${i + 1}/${o.runs}: content ${content}, detection ${m.detectionMs} ms, RTO ${m.rtoMs} ms, ${count.acknowledged} commits, ${count.lost.length} lost`);
      await recover(cluster, content);
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
          `${f.runs} failovers, ${result.cluster.instances} instances (${result.cluster.probed_per_round} acting primaries probed per round), default settings; ${f.acknowledged_commits} commits acknowledged, **${f.lost_commits} lost**.`,
          `Machine: ${result.machine.cpus} × ${result.machine.cpu}, ${result.machine.memory_gib} GiB, Linux ${result.machine.kernel}, Node ${result.machine.node}, ${result.machine.postgres}.`,
          '',
          '| measure (ms) | p50 | p95 | max |',
          '|---|---:|---:|---:|',
          row('detection (kill → failover decided)', f.detection_ms),
          row('catalog flip → mirror promoted', f.flip_to_promoted_ms),
          row('RTO (kill → first commit on the new primary)', f.rto_ms),
          row(`probe of one content, primary answers, nothing to do (${result.probe_round_ms.probes} probes)`, result.probe_round_ms),
          row(`probe of a dead primary, retries included (${result.probe_round_with_failed_probe_ms.probes} probes)`, result.probe_round_with_failed_probe_ms),
          '',
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
