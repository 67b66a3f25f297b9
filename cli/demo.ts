/**
 * `npm run demo`: a local cluster with its background prober, a write workload, a
 * primary killed with kill -9, the failover's timeline as it happens, gpstate before and
 * after, and what was acknowledged and found. Leaves nothing running.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { formatHistory, formatState } from './format';
import { killAndMeasure, Timeline, Workload } from './failover-drill';
import { downLocalCluster, localClusterDir, upLocalCluster } from './local-cluster';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  hosts: number;
  print: (line: string) => void;
}

const DEMO_CLUSTER_ID = 'demo';

/** Runs the demo; always tears the cluster down. */
export async function runDemo({ hosts, print }: DemoOptions): Promise<void> {
  const dir = localClusterDir(DEMO_CLUSTER_ID);
  await downLocalCluster(dir); // a demo cut off earlier
  const teardown = (): void => {
    void downLocalCluster(dir).finally(() => process.exit(130));
  };
  process.once('SIGINT', teardown);
  process.once('SIGTERM', teardown);
  try {
    print(`Building a local cluster: coordinator, standby, ${hosts} segment hosts, group mirroring, sync rep`);
    const cluster = await upLocalCluster({ clusterId: DEMO_CLUSTER_ID, hosts, mirroring: 'group' }, { dir, backgroundProber: true, onProgress: (l) => print(`  ${l}`) });
    const { catalog } = cluster;
    print(`\n== Before (ftsctl state) ==\n${formatState(await catalog.load(DEMO_CLUSTER_ID))}\n`);

    const workload = new Workload(catalog, DEMO_CLUSTER_ID, 0);
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
  } finally {
    const { stopped } = await downLocalCluster(dir);
    print(`\nCluster removed (${stopped} instances stopped, prober and DynamoDB Local stopped).`);
    process.removeListener('SIGINT', teardown);
    process.removeListener('SIGTERM', teardown);
  }
}
