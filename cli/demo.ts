/**
 * `npm run demo`: a local cluster with its background prober, a write workload, a
 * primary killed with kill -9, the failover's timeline as it happens, gpstate before and
 * after, and what was acknowledged and found. Leaves nothing running.
 *
 * `npm run demo -- --coordinator [--auto]`: the same for the coordinator. A workload
 * writes through the client endpoint, the coordinator is killed with kill -9, the prober
 * raises CoordinatorUnreachable and the standby is activated as `ftsctl activatestandby`
 * does it (Greenplum never activates by itself), or, with `--auto`, by the prober
 * (`autoActivateStandby`); the endpoint moves and the writes resume through it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError } from 'commander';
import { COORDINATOR_CONTENT } from '../lambdas/core/model';
import { formatActivation, type WorkflowRunResult } from '../bin/ftsctl';
import { formatHistory, formatState } from './format';
import { killAndMeasure, Timeline, Workload } from './failover-drill';
import { killCoordinatorAndMeasure, startCoordinatorProber, startEndpointWorkload, waitStandbyInSync } from './coordinator-drill';
import { downLocalCluster, localClusterDir, upLocalCluster, type LocalCluster } from './local-cluster';
import type { LocalProber } from './local-prober';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  hosts: number;
  /** Lose the coordinator instead of a primary. */
  coordinator?: boolean;
  /** With `coordinator`: the prober activates the standby (autoActivateStandby) instead of the operator's command. */
  auto?: boolean;
  print: (line: string) => void;
}

const DEMO_CLUSTER_ID = 'demo';

/** What a demo runs in this process, for the caller to stop whatever happens. */
interface Running {
  prober?: LocalProber;
  workload?: Workload;
}

/** Refuses option combinations that mean nothing (`--auto` is about the coordinator). */
export function checkDemoOptions(o: Pick<DemoOptions, 'coordinator' | 'auto'>): void {
  if (o.auto && !o.coordinator) throw new InvalidArgumentError('--auto goes with --coordinator: a failed primary is always failed over by the prober');
}

/** Runs the demo; always tears the cluster down. */
export async function runDemo(options: DemoOptions): Promise<void> {
  checkDemoOptions(options);
  const { print } = options;
  const dir = localClusterDir(DEMO_CLUSTER_ID);
  await downLocalCluster(dir); // a demo cut off earlier
  const teardown = (): void => {
    void downLocalCluster(dir).finally(() => process.exit(130));
  };
  process.once('SIGINT', teardown);
  process.once('SIGTERM', teardown);
  const running: Running = {};
  try {
    if (options.coordinator) await coordinatorDemo(dir, options, running);
    else await segmentDemo(dir, options, running);
  } finally {
    await running.workload?.stop().catch(() => undefined);
    await running.prober?.stop().catch(() => undefined);
    const { stopped } = await downLocalCluster(dir);
    print(`\nCluster removed (${stopped} instances stopped, prober, client endpoint and DynamoDB Local stopped).`);
    process.removeListener('SIGINT', teardown);
    process.removeListener('SIGTERM', teardown);
  }
}

async function segmentDemo(dir: string, { hosts, print }: DemoOptions, running: Running): Promise<void> {
  print(`Building a local cluster: coordinator, standby, ${hosts} segment hosts, group mirroring, sync rep`);
  const cluster = await upLocalCluster({ clusterId: DEMO_CLUSTER_ID, hosts, mirroring: 'group' }, { dir, backgroundProber: true, onProgress: (l) => print(`  ${l}`) });
  const { catalog } = cluster;
  print(`\n== Before (ftsctl state) ==\n${formatState(await catalog.load(DEMO_CLUSTER_ID))}\n`);

  const workload = (running.workload = new Workload(catalog, DEMO_CLUSTER_ID, 0));
  await workload.prepare();
  workload.start();
  await sleep(2000);
  print(`Write workload on content 0: ${workload.acks.length} commits acknowledged so far\n`);

  const timeline = new Timeline(cluster.proberLog);
  timeline.poll(); // only what happens from now on
  let killedAt = 0;
  print('== Failover timeline ==');
  const m = await killAndMeasure(catalog, DEMO_CLUSTER_ID, workload, timeline, (name, at, detail) => {
    if (name === 'killed') killedAt = at;
    print(`  +${String(at - killedAt).padStart(5)} ms  ${name.padEnd(16)} ${detail}`);
  });
  await sleep(1000);
  await workload.stop();
  const count = await workload.lostCommits();

  print(`\n== After (ftsctl state) ==\n${formatState(await catalog.load(DEMO_CLUSTER_ID))}\n`);
  print(`== History (ftsctl history) ==\n${formatHistory(await catalog.history(DEMO_CLUSTER_ID, 6))}\n`);
  print('== Summary ==');
  print(`  detection:                      ${m.detectionMs} ms after the kill`);
  print(`  catalog flip -> promoted:       ${m.promotedAt - m.flippedAt} ms`);
  print(`  first write on the new primary: ${m.rtoMs} ms after the kill (RTO)`);
  print(`  commits acknowledged:           ${count.acknowledged}`);
  print(`  found on the new primary:       ${count.found}${count.lost.length ? `   LOST: ${count.lost.join(', ')}` : '   (none lost)'}`);
  if (count.lost.length) throw new Error(`${count.lost.length} acknowledged commits are missing`);
}

/** Waits (at most `timeoutMs`) until the prober recorded the standby's replication, so `state -f` has something to show. */
async function waitStandbyObserved(cluster: LocalCluster, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cluster.catalog.load(DEMO_CLUSTER_ID)).memory.replication?.[String(COORDINATOR_CONTENT)]?.sender) {
    if (Date.now() > deadline) return;
    await sleep(200);
  }
}

async function coordinatorDemo(dir: string, { hosts, auto, print }: DemoOptions, running: Running): Promise<void> {
  print(`Building a local cluster: coordinator, standby (synchronous), client endpoint, ${hosts} segment hosts, group mirroring, sync rep${auto ? ', autoActivateStandby on' : ''}`);
  const cluster = await upLocalCluster(
    { clusterId: DEMO_CLUSTER_ID, hosts, mirroring: 'group', ...(auto ? { settings: { autoActivateStandby: true } } : {}) },
    { dir, onProgress: (l) => print(`  ${l}`) },
  );
  const { catalog } = cluster;
  const timeline = new Timeline();
  // In this process: the prober binds the client endpoint, so an automatic activation moves it.
  print('  starting the prober (default settings)');
  running.prober = startCoordinatorProber(cluster, timeline);
  await waitStandbyInSync(catalog, DEMO_CLUSTER_ID);
  await waitStandbyObserved(cluster);
  const endpoint = cluster.state.endpoint!;
  print(`\n== Before (ftsctl state -f) ==\n${formatState(await catalog.load(DEMO_CLUSTER_ID), { standby: true })}\n`);
  print(`Clients connect to the client endpoint ${endpoint.address}:${endpoint.port}, which leads to the acting coordinator.`);

  const workload = (running.workload = await startEndpointWorkload(cluster));
  await sleep(2000);
  print(`Write workload through the endpoint: ${workload.acks.length} commits acknowledged so far\n`);

  let killedAt = 0;
  let result: WorkflowRunResult | undefined;
  print(`== Coordinator loss timeline (${auto ? 'automatic activation by the prober' : 'activation by the operator, as ftsctl activatestandby'}) ==`);
  const m = await killCoordinatorAndMeasure(cluster, workload, timeline, {
    mode: auto ? 'automatic' : 'manual',
    onResult: (r) => (result = r),
    onMilestone: (name, at, detail) => {
      if (name === 'killed') killedAt = at;
      print(`  +${String(at - killedAt).padStart(5)} ms  ${name.padEnd(16)} ${detail}`);
    },
  });
  if (result) print(`\nftsctl activatestandby printed:\n${formatActivation(result).replace(/^/gm, '  ')}`);
  await sleep(1000);
  await workload.stop();
  const count = await workload.lostCommits();

  print(`\n== After (ftsctl state -f) ==\n${formatState(await catalog.load(DEMO_CLUSTER_ID), { standby: true })}\n`);
  print(`== History (ftsctl history) ==\n${formatHistory(await catalog.history(DEMO_CLUSTER_ID, 6))}\n`);
  print('== Summary ==');
  print(`  detection (CoordinatorUnreachable):   ${m.detectionMs} ms after the kill`);
  if (m.commandAt !== undefined) {
    print(`  command -> write verified:            ${m.activationMs} ms (confirm down, fence, activate, move the endpoint, write through it)`);
    print(`  first commit through the endpoint:    ${m.rtoMs} ms after the command (RTO of the activation); ${m.killToCommitMs} ms after the kill, the wait for the alarm included`);
  } else {
    print(`  decision -> write verified:           ${m.activationMs} ms (confirm down, fence, activate, move the endpoint, write through it)`);
    print(`  first commit through the endpoint:    ${m.rtoMs} ms after the kill (RTO)`);
  }
  print(`  commits acknowledged:                 ${count.acknowledged}`);
  print(`  found on the new coordinator:         ${count.found}${count.lost.length ? `   LOST: ${count.lost.join(', ')}` : '   (none lost)'}`);
  if (count.lost.length) throw new Error(`${count.lost.length} acknowledged commits are missing`);
}
