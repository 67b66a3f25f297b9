/**
 * `npm run faults [-- --json] [-- --trials N] [-- --only a,b]`: the fault matrix. Every
 * scenario of cli/faults/scenarios.ts runs N times (default 3) on local clusters (real
 * PostgreSQL, one DynamoDB Local for the run, the prober in-process or as a background
 * process) under a write workload on every content; the report is a Markdown table (or
 * one JSON object) on stdout, progress goes to stderr. Exit code 1 when a trial failed.
 * Everything it starts is stopped at the end, also on failure or Ctrl-C.
 */
import { Command, InvalidArgumentError } from 'commander';
import { startDynamoDbLocal, type DynamoDbLocal } from '../lambdas/adapters/local/dynamodb-local';
import { ClusterPool } from '../cli/faults/harness';
import { formatMatrix, runMatrix } from '../cli/faults/matrix';
import { selectScenarios, SCENARIOS } from '../cli/faults/scenarios';

async function main(): Promise<void> {
  const o = new Command('faults')
    .description('run the fault matrix on local clusters and print what each fault did')
    .option('--json', 'one JSON object instead of a Markdown table')
    .option('--trials <n>', 'trials of every scenario', (v) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < 1) throw new InvalidArgumentError(`--trials must be a positive integer, got "${v}"`);
      return n;
    }, 3)
    .option('--only <scenarios>', `comma-separated scenarios (of ${SCENARIOS.map((s) => s.name).join(', ')})`, (v) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .showHelpAfterError()
    .parse(process.argv)
    .opts<{ json?: boolean; trials: number; only?: string[] }>();
  const scenarios = selectScenarios(o.only);
  const log = (line: string): void => void process.stderr.write(`[faults] ${line}\n`);

  let dynamo: DynamoDbLocal | undefined;
  let pool: ClusterPool | undefined;
  let interrupted = false;
  const cleanup = async (): Promise<void> => {
    await pool?.destroyAll();
    await dynamo?.stop();
  };
  const onSignal = (): void => {
    if (interrupted) return;
    interrupted = true;
    log('interrupted: stopping everything');
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    dynamo = await startDynamoDbLocal();
    pool = new ClusterPool({ dynamoEndpoint: dynamo.endpoint, log });
    const report = await runMatrix({ scenarios, trials: o.trials, pool, log, stopped: () => interrupted });
    if (interrupted) return;
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatMatrix(report));
    if (report.passed + report.scenarios.reduce((n, s) => n + s.notProvoked, 0) < report.trials) process.exitCode = 1;
  } finally {
    if (!interrupted) await cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`faults: ${(e as Error).message}\n`);
  process.exit(2);
});
