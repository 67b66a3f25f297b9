/**
 * The client endpoint of `ftsctl local up`: `tsx cli/endpoint-daemon.ts <cluster dir>`.
 * Runs one LocalEndpointForwarder for the cluster (it reads <dir>/endpoint.json and
 * acknowledges in <dir>/endpoint.applied.json) until SIGTERM (`ftsctl local down`).
 * Its own process, so the endpoint outlives the CLI that started the cluster.
 */
import { LocalEndpointForwarder } from '../lambdas/adapters/local/endpoint';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: endpoint-daemon <cluster dir>');
  process.exit(2);
}
const log = (line: string): void => console.log(`${new Date().toISOString()} ${line}`);
const forwarder = new LocalEndpointForwarder({
  dir,
  onError: (e) => log(`error: ${e.message}`),
  onApply: (a, closed) => log(`revision ${a.revision}: ${a.target ? `forwarding to ${a.target.address}:${a.target.port}` : 'no target: refusing connections'}${closed ? `, closed ${closed} connection(s) to the old target` : ''}`),
});
const stop = (): void => {
  void forwarder.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
forwarder.start().then(
  (listen) => log(`listening on ${listen.address}:${listen.port}`),
  (e: unknown) => {
    log(`cannot start: ${(e as Error).message}`);
    process.exit(1);
  },
);
