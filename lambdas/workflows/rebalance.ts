/**
 * Rebalance (Greenplum's `gprecoverseg -r`): every pair out of its preferred roles but
 * up and in sync is switched back by a planned switchover that loses no commit.
 *
 *   Plan -> SwitchEach [ SwitchOver -> StartRewind -> WaitForRewind -> PollRewind
 *          -> RewindDone? -> MarkRewound ] -> Summarize -> Complete? -> Rebalanced | RebalanceIncomplete
 *
 * SwitchOver is one step, so the write-unavailable window is one Lambda invocation:
 * checkpoint, stop the acting primary fast, check its mirror received everything up to
 * the shutdown checkpoint, flip the catalog, promote, check it writes. The old primary
 * is then rewound into a mirror of the new one in a wait-and-poll loop.
 */
import { z } from 'zod';
import { ContentBusyError, ValidationError } from '../core/errors';
import { clusterIdSchema } from './promote-mirror';
import { DEFAULT_POLL_SECONDS, DEFAULT_RECOVERY_PARALLEL, DEFAULT_STALL_SECONDS, requestDigest } from './recover-segments';
import { rebuildLoop } from './rebuild-loop';
import { CONFLICT_RETRY, executionNameOf, type WorkflowSpec, INVALID_INPUT_STATE, invalidInputCatch } from './spec';

/** Seconds a mirror gets, by default, to show it received the stopped primary's shutdown checkpoint. */
export const DEFAULT_RECEIVE_SECONDS = 10;

/** Greenplum's default `--replay-lag`, in MB (10 GB). */
export const DEFAULT_REPLAY_LAG_MB = 10 * 1024;

/** Rebalance input, as the console or `ftsctl recoverseg -r` sends it. */
export const rebalanceInputSchema = z
  .object({
    clusterId: clusterIdSchema,
    /**
     * Largest replay lag (WAL the mirror received but has not replayed), in MB, of a pair
     * that is switched (`--replay-lag`); `null` switches whatever the lag
     * (`--disable-replay-lag`).
     */
    replayLagMB: z.number().min(0).max(1024 * 1024).nullable().default(DEFAULT_REPLAY_LAG_MB),
    /** Only these contents (default every pair out of its preferred roles). */
    contents: z.array(z.number().int().min(0)).min(1).optional(),
    /** Pairs switched at once. */
    parallel: z.number().int().min(1).max(64).default(DEFAULT_RECOVERY_PARALLEL),
    /** Seconds between two looks at a running rewind. */
    pollSeconds: z.number().int().min(1).max(300).default(DEFAULT_POLL_SECONDS),
    /** Seconds a running rewind may go without progress before it is cancelled and the content reported failed. */
    stallSeconds: z.number().int().min(10).max(86_400).default(DEFAULT_STALL_SECONDS),
    /** Seconds the mirror may take, after the primary's clean stop, to show it received everything; past them the switch is undone. */
    receiveSeconds: z.number().min(0.1).max(60).default(DEFAULT_RECEIVE_SECONDS),
    /** Catalog version the request was made on (names the execution; newer than the catalog is refused). */
    catalogVersion: z.number().int().min(1).optional(),
  })
  .strict()
  .refine((i) => i.stallSeconds > 2 * i.pollSeconds, 'stallSeconds must be more than twice pollSeconds: a poll or two without news is not a stall');

/** Rebalance input, defaults filled in. */
export type RebalanceInput = z.output<typeof rebalanceInputSchema>;

/** The Rebalance workflow. */
export const REBALANCE_SPEC: WorkflowSpec<RebalanceInput> = {
  kind: 'Rebalance',
  description: 'switch pairs back to their preferred roles by planned switchovers (gprecoverseg -r)',
  handler: 'rebalance',
  serviceName: 'fts-rebalance',
  input: rebalanceInputSchema,
  executionName: (i) => executionNameOf('rebalance', i.clusterId, `v${i.catalogVersion ?? 0}-${requestDigest(i)}`),
  executionTimeoutSeconds: 24 * 3600,
  // SwitchOver at worst: probe, checkpoint (60), stop (60), receive (up to 60), fence (60), flip, promote (30), verify (10);
  // undone instead: the restart (60) after at most stop + receive + fence. Both fit in 300 s.
  stepTimeoutSeconds: 300,
  hostOperationSeconds: 60,
  start: 'Plan',
  states: {
    Plan: { type: 'task', step: 'plan', next: 'SwitchEach', retry: [CONFLICT_RETRY], catch: [invalidInputCatch([ValidationError, ContentBusyError]), { errors: ['States.ALL'], next: 'Summarize' }] },
    SwitchEach: {
      type: 'map',
      itemsPath: '$.plan.switches',
      maxConcurrencyPath: '$.plan.parallel',
      itemSelector: { clusterId: '$.clusterId', pollSeconds: '$.plan.pollSeconds', stallSeconds: '$.plan.stallSeconds', receiveSeconds: '$.plan.receiveSeconds', item: '$$.Map.Item.Value' },
      resultPath: '$.results',
      next: 'Summarize',
      catch: [{ errors: ['States.ALL'], next: 'Summarize' }],
      start: 'SwitchOver',
      states: {
        // No retry: a switchover that failed half-way is undone or recorded by its catch, never replayed blind.
        SwitchOver: { type: 'task', step: 'switch-over', next: 'StartRewind', catch: [{ errors: ['States.ALL'], next: 'RecordContentFailure' }] },
        ...rebuildLoop({ start: 'StartRewind', wait: 'WaitForRewind', poll: 'PollRewind', done: 'RewindDone', mark: 'MarkRewound' }),
      },
    },
    Summarize: { type: 'task', step: 'summarize', next: 'Complete', retry: [CONFLICT_RETRY] },
    Complete: { type: 'choice', when: [{ path: '$.summarize.complete', equals: true, next: 'Rebalanced' }], otherwise: 'RebalanceIncomplete' },
    Rebalanced: { type: 'succeed' },
    RebalanceIncomplete: { type: 'fail', error: 'RebalanceIncomplete', causePath: '$.summarize.message' },
    InvalidInput: INVALID_INPUT_STATE,
  },
};
