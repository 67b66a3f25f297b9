/**
 * The fault matrix once: every scenario of cli/faults/scenarios.ts as one test, through
 * the same code `npm run faults` runs (clusters shared between scenarios, restored after
 * each). Each test asserts the targets: no acknowledged commit lost, no split-brain
 * commit, no false failover, no stuck content, and the scenario's expected outcome.
 */
import { ClusterPool, runTrial } from '../../cli/faults/harness';
import { executionOrder } from '../../cli/faults/matrix';
import { SCENARIOS } from '../../cli/faults/scenarios';

// Restores after a failover (pg_rewind, then back in sync) come on top of a scenario's own time limit.
const RESTORE_MARGIN_MS = 180_000;
// A trial that has not ended by then is abandoned once (see below); the retry gets the rest of the test's time.
const TRIAL_LIMIT_MS = 240_000;

const pool = new ClusterPool({ dynamoEndpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB });
afterAll(async () => {
  await pool.destroyAll();
}, 120_000);

describe.each(executionOrder(SCENARIOS).map((s) => [s.name, s] as const))('%s', (_name, scenario) => {
  test(`${scenario.title}: ${scenario.expected}`, async () => {
    const r = await trialOnce(scenario);
    expect({
      lostCommits: r.lostCommits,
      splitBrainCommits: r.splitBrainCommits,
      falseFailovers: r.falseFailovers,
      stuckContents: r.stuckContents,
    }).toEqual({ lostCommits: 0, splitBrainCommits: 0, falseFailovers: 0, stuckContents: [] });
    // Every failed check, expected outcome included, with its reason.
    expect(r.failures).toEqual([]);
    expect(r.status).not.toBe('fail');
  }, (scenario.timeoutMs ?? 180_000) + RESTORE_MARGIN_MS + TRIAL_LIMIT_MS);
});

/**
 * Runs one trial; a trial that hangs past TRIAL_LIMIT_MS (seen rarely on a loaded
 * machine, cause not found yet: see the closing note of the failover-safety work) has its
 * clusters torn down, which ends whatever it waits on, and runs once more on a fresh
 * cluster. A second hang, like any failed check, fails the test.
 */
async function trialOnce(scenario: (typeof SCENARIOS)[number]): Promise<Awaited<ReturnType<typeof runTrial>>> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), TRIAL_LIMIT_MS)));
  const first = runTrial(scenario, pool, 1);
  const outcome = await Promise.race([first, hung]);
  clearTimeout(timer);
  if (outcome !== 'hung') return outcome;
  // Not awaited: it may wait on something that never ends; the torn-down clusters make its calls fail.
  void first.catch(() => undefined);
  await pool.destroyAll();
  return runTrial(scenario, pool, 2);
}
