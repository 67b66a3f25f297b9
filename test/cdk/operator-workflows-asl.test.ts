/**
 * RecoverSegments and Rebalance as CDK synthesizes them from their specs, run by
 * LocalWorkflows with scripted steps: the Map over contents with its concurrency from
 * the plan, the wait-and-poll loop, a lost rebuild started again, one content's failure
 * recorded while the others go on, and the summary deciding the end state.
 */
import { localWorkflows, synthesizeDefinition } from '../../lib/local-definition';
import type { StepEvent } from '../../lambdas/adapters/local/local-workflows';
import { WORKFLOW_SPECS } from '../../lambdas/workflows';
import { stateNames, WORKFLOW_KINDS } from '../../lambdas/workflows/spec';

const named = (name: string, message = name) => Object.assign(new Error(message), { name });

interface State {
  Type: string;
  MaxConcurrencyPath?: string;
  ItemSelector?: Record<string, string>;
  ItemProcessor?: { StartAt: string; States: Record<string, State> };
  SecondsPath?: string;
}

describe.each(['RecoverSegments', 'Rebalance'] as const)('%s definition', (kind) => {
  const { definition } = synthesizeDefinition(kind);
  const states = (definition as { States: Record<string, State> }).States;

  test('has the spec states, Map items from the plan with its concurrency, a Wait on pollSeconds', () => {
    const map = Object.values(states).find((s) => s.Type === 'Map') as State;
    const all = [...Object.keys(states), ...Object.keys(map.ItemProcessor?.States ?? {})];
    expect(all.sort()).toEqual(stateNames(WORKFLOW_SPECS[kind]).sort());
    expect(map.MaxConcurrencyPath).toBe('$.plan.parallel');
    expect(map.ItemSelector).toEqual({
      'clusterId.$': '$.clusterId',
      'pollSeconds.$': '$.plan.pollSeconds',
      'stallSeconds.$': '$.plan.stallSeconds',
      'item.$': '$$.Map.Item.Value',
      // The switchover's wait for the mirror to receive everything is the run's setting.
      ...(kind === 'Rebalance' ? { 'receiveSeconds.$': '$.plan.receiveSeconds' } : {}),
    });
    const wait = Object.values(map.ItemProcessor?.States ?? {}).find((s) => s.Type === 'Wait');
    expect(wait?.SecondsPath).toBe('$.pollSeconds');
  });
});

describe('RecoverSegments runs per content, polls, restarts a lost rebuild, records failures', () => {
  function scripted(polls: Record<number, string[]>, failAt?: { content: number; step: string }) {
    const calls: string[] = [];
    const running = new Set<number>();
    let maxRunning = 0;
    const handler = async (event: StepEvent): Promise<unknown> => {
      const doc = event.input as { item?: { content: number }; results?: unknown[]; plan?: unknown };
      const content = doc.item?.content;
      calls.push(content === undefined ? event.step : `${event.step}:${content}`);
      expect(event.execution).toBe('recover-test');
      if (content !== undefined && failAt?.content === content && failAt.step === event.step) throw named('RebuildFailedError', `content ${content} broke`);
      switch (event.step) {
        case 'plan':
          return { recoveries: [0, 1, 2].map((c) => ({ content: c, dbid: 10 + c, sourceDbid: 20 + c, method: 'rewind' })), skipped: [], warnings: [], parallel: 2, pollSeconds: 1, stallSeconds: 900 };
        case 'start-rebuild':
          running.add(content as number);
          maxRunning = Math.max(maxRunning, running.size);
          return { job: { id: `job-${content}`, dbid: 10, startedAt: 'now' }, starts: 1 };
        case 'poll-rebuild': {
          const state = polls[content as number]?.shift() ?? 'succeeded';
          return { state };
        }
        case 'mark-recovered':
          running.delete(content as number);
          return { content, dbid: 10 + (content as number), recovered: true };
        case 'record-content-failure':
          running.delete(content as number);
          return { content, dbid: 10 + (content as number), failed: true, cause: 'broke' };
        case 'summarize': {
          const results = (doc.results ?? []) as { recordContentFailure?: unknown }[];
          const failed = results.filter((r) => r.recordContentFailure).length;
          return { complete: failed === 0, message: `${failed} failed` };
        }
      }
      throw new Error(`unexpected step ${event.step}`);
    };
    return { handler, calls, maxRunning: () => maxRunning };
  }

  test('every content rebuilt, at most `parallel` at once, running polls wait again, a lost one starts again', async () => {
    const s = scripted({ 0: ['running', 'running'], 1: ['restart', 'running'] });
    const wf = localWorkflows({ RecoverSegments: s.handler }, { retryIntervalMs: 0, waitMs: 0 });
    const run = await wf.runExecution('RecoverSegments', 'recover-test', { clusterId: 'c1' });
    expect(run.status).toBe('SUCCEEDED');
    expect(s.calls.filter((c) => c === 'poll-rebuild:0')).toHaveLength(3);
    expect(s.calls.filter((c) => c === 'start-rebuild:1')).toHaveLength(2);
    expect(s.calls.filter((c) => c.startsWith('mark-recovered'))).toHaveLength(3);
    expect(s.maxRunning()).toBeLessThanOrEqual(2);
    expect(s.calls.at(-1)).toBe('summarize');
  });

  test("one content's failure is recorded, the others complete, the run ends RecoveryIncomplete", async () => {
    const s = scripted({}, { content: 1, step: 'poll-rebuild' });
    const wf = localWorkflows({ RecoverSegments: s.handler }, { retryIntervalMs: 0, waitMs: 0 });
    const run = await wf.runExecution('RecoverSegments', 'recover-test', { clusterId: 'c1' });
    expect(run).toMatchObject({ status: 'FAILED', error: 'RecoveryIncomplete', cause: '1 failed' });
    expect(s.calls).toContain('record-content-failure:1');
    expect(s.calls).toContain('mark-recovered:0');
    expect(s.calls).toContain('mark-recovered:2');
  });

  test('bad input ends in InvalidInput', async () => {
    const wf = localWorkflows({ RecoverSegments: async () => Promise.reject(named('ValidationError', 'invalid RecoverSegments input: mode: bad')) }, { retryIntervalMs: 0 });
    expect(await wf.runExecution('RecoverSegments', 'recover-test', { clusterId: 'c1', mode: 'bad' })).toMatchObject({ status: 'FAILED', error: 'InvalidInput' });
  });
});

test('every workflow kind has a spec and a synthesized definition', () => {
  for (const kind of WORKFLOW_KINDS) expect(synthesizeDefinition(kind).taskStates.length).toBeGreaterThan(0);
});
