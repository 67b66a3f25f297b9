/**
 * The background prober of `ftsctl local up`: `tsx cli/prober-daemon.ts <cluster dir>`.
 * Runs until SIGTERM (`ftsctl local down`), writing its timeline to <dir>/prober.log.
 */
import { fileSink, startLocalProber, timelineTelemetry } from './local-prober';
import { openLocalCluster } from './local-cluster';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: prober-daemon <cluster dir>');
  process.exit(2);
}
const cluster = openLocalCluster(dir);
const prober = startLocalProber({
  clusterId: cluster.state.clusterId,
  catalog: cluster.catalog,
  probe: cluster.probe,
  control: cluster.control,
  host: cluster.host,
  // An automatic ActivateStandby moves the cluster's client endpoint.
  ...(cluster.endpoint ? { endpoint: cluster.endpoint } : {}),
  telemetry: timelineTelemetry(fileSink(cluster.proberLog)),
});
const stop = (): void => {
  void prober.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
