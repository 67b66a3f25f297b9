/**
 * PromoteMirror (Greenplum's FTS PROMOTE), started by the prober for a failed primary:
 *
 *   ValidateInput -> ConfirmFailure -> FenceOldPrimary -> AlreadyFlipped? -> FlipCatalog
 *     -> PromoteMirror -> VerifyWritable -> ClearPending -> Notify -> Promoted
 *
 * The old primary is fenced before the catalog names the mirror, so no client that
 * follows the catalog finds two writable instances of the content; the fence is
 * recorded as owed first, and one that cannot be done (host unreachable) stays owed in
 * the catalog and the prober carries it out later.
 */
import { z } from 'zod';
import { ContentBusyError, MirrorNotPromotableError, PrimaryAliveError, ValidationError } from '../core/errors';
import { CONFLICT_RETRY as conflict, TRANSIENT_RETRY as transient, type WorkflowSpec, INVALID_INPUT_STATE, invalidInputCatch } from './spec';

/** Cluster ids every workflow accepts. */
export const clusterIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/, 'clusterId: 1 to 48 letters, digits, - or _');

/** Workflow input as the prober (or a person in the console) sends it. */
export const promoteMirrorInputSchema = z
  .object({
    clusterId: clusterIdSchema,
    content: z.number().int().min(0),
    failedPrimaryDbid: z.number().int().min(1),
    mirrorDbid: z.number().int().min(1),
    /** Catalog version the prober decided on; part of the execution name. */
    catalogVersion: z.number().int().min(1),
    /**
     * Attempt of this failure episode at that version; part of the execution name, so a
     * retry after an aborted or failed attempt starts a new execution while a duplicate
     * start of the same attempt stays a no-op.
     */
    attempt: z.number().int().min(1).max(1_000_000).default(1),
    /** How the primary failed, which decides how the workflow confirms it. */
    failure: z.enum(['unreachable', 'disk', 'reset-loop']).default('unreachable'),
    /** Why it was started. */
    reason: z.string().max(2000).default('started by hand'),
  })
  .strict()
  .refine((i) => i.failedPrimaryDbid !== i.mirrorDbid, 'failedPrimaryDbid and mirrorDbid must differ');

/** PromoteMirror's input, defaults filled in. */
export type PromoteMirrorInput = z.output<typeof promoteMirrorInputSchema>;

const toFailure = { errors: ['States.ALL'], next: 'RecordFailure' } as const;

/**
 * Execution name: one failure episode (cluster, content, catalog version) and attempt,
 * so a second start of the same attempt is a no-op and a new attempt starts anew. The
 * cluster id is cut first when the name would pass Step Functions' 80 characters.
 */
export const promotionExecutionName = (input: Pick<PromoteMirrorInput, 'clusterId' | 'content' | 'catalogVersion'> & { attempt?: number }): string => {
  const tail = `-c${input.content}-v${input.catalogVersion}-a${input.attempt ?? 1}`;
  return `promote-${input.clusterId.slice(0, 80 - 'promote-'.length - tail.length)}${tail}`.replace(/[^A-Za-z0-9_-]/g, '-');
};

/** The PromoteMirror workflow. */
export const PROMOTE_MIRROR_SPEC: WorkflowSpec<PromoteMirrorInput> = {
  kind: 'PromoteMirror',
  description: 'confirm the primary is gone, fence it, flip the catalog, promote the mirror',
  handler: 'promote-mirror',
  serviceName: 'fts-promote-mirror',
  input: promoteMirrorInputSchema,
  executionName: promotionExecutionName,
  executionTimeoutSeconds: 15 * 60,
  // `promote` waits up to 30 s for pg_promote; the fence has its own 30 s budget.
  stepTimeoutSeconds: 90,
  hostOperationSeconds: 40,
  start: 'ValidateInput',
  states: {
    ValidateInput: { type: 'task', step: 'validate', next: 'ConfirmFailure', catch: [invalidInputCatch([ValidationError])] },
    ConfirmFailure: {
      type: 'task',
      step: 'confirm-failure',
      next: 'FenceOldPrimary',
      catch: [
        { errors: [PrimaryAliveError], next: 'RecordAbort' },
        // An operator workflow (a rebalance) holds the content: not a failed promotion.
        { errors: [ContentBusyError], next: 'RecordAbort' },
        { errors: [MirrorNotPromotableError], next: 'RecordFailure' },
        // Anything else (catalog unreadable, mirror unreachable) is a failed promotion too: recorded and alarmed.
        toFailure,
      ],
    },
    FenceOldPrimary: { type: 'task', step: 'fence-old-primary', next: 'AlreadyFlipped', retry: [transient], catch: [{ errors: [ContentBusyError], next: 'RecordAbort' }, toFailure] },
    AlreadyFlipped: { type: 'choice', when: [{ path: '$.confirmFailure.alreadyFlipped', equals: true, next: 'PromoteMirror' }], otherwise: 'FlipCatalog' },
    FlipCatalog: { type: 'task', step: 'flip-catalog', next: 'PromoteMirror', retry: [conflict], catch: [{ errors: [ContentBusyError], next: 'RecordAbort' }, toFailure] },
    PromoteMirror: { type: 'task', step: 'promote', next: 'VerifyWritable', retry: [transient], catch: [toFailure] },
    VerifyWritable: { type: 'task', step: 'verify-writable', next: 'ClearPending', retry: [transient], catch: [toFailure] },
    ClearPending: { type: 'task', step: 'clear-pending', next: 'Notify', retry: [transient], catch: [toFailure] },
    // The mirror is the writable primary by now: a notification that cannot be sent (the step
    // reports it and returns; this catch covers the Lambda itself failing) never makes the
    // promotion a failure.
    Notify: { type: 'task', step: 'notify', next: 'Promoted', catch: [{ errors: ['States.ALL'], next: 'Promoted' }] },
    Promoted: { type: 'succeed' },
    RecordAbort: { type: 'task', step: 'record-abort', next: 'Aborted', retry: [conflict] },
    Aborted: { type: 'succeed', comment: 'The primary is alive: no failover. Not an error.' },
    RecordFailure: { type: 'task', step: 'record-failure', next: 'PromotionFailed', retry: [conflict] },
    PromotionFailed: { type: 'fail', error: 'PromotionFailed', causePath: '$.error.Cause' },
    InvalidInput: INVALID_INPUT_STATE,
  },
};
