/**
 * RecoverSegments (Greenplum's `gprecoverseg`, started from the console or `ftsctl
 * recoverseg`): rebuilds every down mirror from its acting primary, incrementally
 * (pg_rewind) or in full (`-F`, pg_basebackup), in place or elsewhere (`-i`, `-p`),
 * `parallel` contents at once (`-B`).
 *
 *   Plan -> RecoverEach [ StartRebuild -> WaitForRebuild -> PollRebuild -> RebuildDone?
 *          (running: wait again; process lost: start again) -> MarkRecovered ]
 *        -> Summarize -> Complete? -> Recovered | RecoveryIncomplete
 *
 * Plan holds every content it will rebuild in the catalog (the prober leaves it alone,
 * other workflows refuse it) and moves relocated rows first; each content's result is
 * its own (one that fails is recorded and released, the others go on). A copy that
 * takes hours is a wait-and-poll loop, never a Lambda waiting.
 */
import { z } from 'zod';
import { ContentBusyError, ValidationError } from '../core/errors';
import { clusterIdSchema } from './promote-mirror';
import { rebuildLoop } from './rebuild-loop';
import { CONFLICT_RETRY, executionNameOf, type WorkflowSpec, INVALID_INPUT_STATE, invalidInputCatch } from './spec';
import { createHash } from 'node:crypto';

/** Greenplum's default `-B`: contents rebuilt at once. */
export const DEFAULT_RECOVERY_PARALLEL = 16;
/** Seconds between two looks at a running rebuild. */
export const DEFAULT_POLL_SECONDS = 10;
/** Seconds a running copy may go without progress before it is cancelled as stuck. */
export const DEFAULT_STALL_SECONDS = 900;

/** A host to recover onto (`gprecoverseg -p`). */
export const spareHostInputSchema = z
  .object({
    hostname: z.string().min(1),
    address: z.string().min(1),
    availabilityZone: z.string().min(1).optional(),
    placementGroup: z.string().min(1).optional(),
    partitionNumber: z.number().int().min(1).max(7).optional(),
    instanceId: z.string().min(1).optional(),
  })
  .strict();

/** RecoverSegments input, as the console or `ftsctl recoverseg` sends it. */
export const recoverSegmentsInputSchema = z
  .object({
    clusterId: clusterIdSchema,
    /** `incremental` (pg_rewind, Greenplum's default) or `full` (`-F`: pg_basebackup into the emptied directory). */
    mode: z.enum(['incremental', 'full']).default('incremental'),
    /** Only these contents (default every content with a down mirror). */
    contents: z.array(z.number().int().min(0)).min(1).optional(),
    /** The text of a `gprecoverseg -i` file: `failedAddress|port|datadir[ newAddress|port|datadir]` per line. */
    recoverConfig: z.string().min(1).max(200_000).optional(),
    /** Recover onto this host, same port and directory (`-p`). */
    spareHost: spareHostInputSchema.optional(),
    /** Contents rebuilt at once (`-B`). */
    parallel: z.number().int().min(1).max(64).default(DEFAULT_RECOVERY_PARALLEL),
    /** Seconds between two looks at a running rebuild. */
    pollSeconds: z.number().int().min(1).max(300).default(DEFAULT_POLL_SECONDS),
    /** Seconds a running copy may go without progress (a frozen host or tool) before it is cancelled and the content reported failed. */
    stallSeconds: z.number().int().min(10).max(86_400).default(DEFAULT_STALL_SECONDS),
    /** Catalog version the request was made on (names the execution; newer than the catalog is refused). */
    catalogVersion: z.number().int().min(1).optional(),
  })
  .strict()
  .refine((i) => !(i.recoverConfig && i.spareHost), 'recoverConfig and spareHost exclude each other (gprecoverseg -i or -p, not both)')
  .refine((i) => !(i.recoverConfig && i.contents), 'recoverConfig and contents exclude each other: the config names what to recover')
  .refine((i) => i.stallSeconds > 2 * i.pollSeconds, 'stallSeconds must be more than twice pollSeconds: a poll or two without news is not a stall');

/** RecoverSegments input, defaults filled in. */
export type RecoverSegmentsInput = z.output<typeof recoverSegmentsInputSchema>;

/** A short digest of a request, so two different requests on one catalog version get two executions. */
export const requestDigest = (request: object): string => createHash('sha256').update(JSON.stringify(request)).digest('hex').slice(0, 8);

/** The RecoverSegments workflow. */
export const RECOVER_SEGMENTS_SPEC: WorkflowSpec<RecoverSegmentsInput> = {
  kind: 'RecoverSegments',
  description: 'rebuild down mirrors from their acting primaries (gprecoverseg)',
  handler: 'recover-segments',
  serviceName: 'fts-recover-segments',
  input: recoverSegmentsInputSchema,
  executionName: (i) => executionNameOf('recoverseg', i.clusterId, `v${i.catalogVersion ?? 0}-${requestDigest(i)}`),
  // A full copy of a large segment takes hours; Step Functions allows a year.
  executionTimeoutSeconds: 7 * 24 * 3600,
  // A step makes at most two host calls (a fence, the start of a copy), each within hostOperationSeconds.
  stepTimeoutSeconds: 300,
  hostOperationSeconds: 60,
  start: 'Plan',
  states: {
    Plan: { type: 'task', step: 'plan', next: 'RecoverEach', retry: [CONFLICT_RETRY], catch: [invalidInputCatch([ValidationError, ContentBusyError]), { errors: ['States.ALL'], next: 'Summarize' }] },
    RecoverEach: {
      type: 'map',
      itemsPath: '$.plan.recoveries',
      maxConcurrencyPath: '$.plan.parallel',
      itemSelector: { clusterId: '$.clusterId', pollSeconds: '$.plan.pollSeconds', stallSeconds: '$.plan.stallSeconds', item: '$$.Map.Item.Value' },
      resultPath: '$.results',
      next: 'Summarize',
      catch: [{ errors: ['States.ALL'], next: 'Summarize' }],
      start: 'StartRebuild',
      states: {
        ...rebuildLoop({ start: 'StartRebuild', wait: 'WaitForRebuild', poll: 'PollRebuild', done: 'RebuildDone', mark: 'MarkRecovered' }),
      },
    },
    Summarize: { type: 'task', step: 'summarize', next: 'Complete', retry: [CONFLICT_RETRY] },
    Complete: { type: 'choice', when: [{ path: '$.summarize.complete', equals: true, next: 'Recovered' }], otherwise: 'RecoveryIncomplete' },
    Recovered: { type: 'succeed' },
    RecoveryIncomplete: { type: 'fail', error: 'RecoveryIncomplete', causePath: '$.summarize.message' },
    InvalidInput: INVALID_INPUT_STATE,
  },
};
