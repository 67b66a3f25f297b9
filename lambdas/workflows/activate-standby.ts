/**
 * ActivateStandby (Greenplum's `gpactivatestandby`): the standby becomes the coordinator.
 * Started from the console or `ftsctl activatestandby [-f]`, or by the prober when
 * `autoActivateStandby` is on.
 *
 *   Validate -> ConfirmDown -> FenceCoordinator -> [StopCoordinatorInstance] -> Activate
 *     -> MoveEndpoint -> VerifyWrite -> Finish -> Activated
 *
 * Validate holds content -1 (the lock between the prober and workflows) and records the
 * old coordinator's row in the hold, so every later step can be re-run after a crash,
 * also once the catalog no longer has that row. The old coordinator is confirmed down
 * (its probe, and its standby's WAL receiver as second opinion) and fenced before the
 * catalog names the standby; Activate writes the catalog first and then promotes.
 */
import { z } from 'zod';
import { ClusterNotFoundError, ContentBusyError, CoordinatorAliveError, FenceUnconfirmedError, MirrorNotPromotableError, ValidationError } from '../core/errors';
import { clusterIdSchema } from './promote-mirror';
import { requestDigest } from './recover-segments';
import { CONFLICT_RETRY, executionNameOf, TRANSIENT_RETRY, type WorkflowSpec, INVALID_INPUT_STATE, invalidInputCatch } from './spec';

/** ActivateStandby input, as the console, `ftsctl activatestandby` or the prober sends it. */
export const activateStandbyInputSchema = z
  .object({
    clusterId: clusterIdSchema,
    /** The standby to activate; default the catalog's standby (a mismatch is refused). */
    standbyDbid: z.number().int().min(1).optional(),
    /**
     * Activate although the coordinator answers (`gpactivatestandby -f`): it is fenced
     * first. Also goes on when the fence cannot be confirmed (its host does not answer).
     */
    force: z.boolean().default(false),
    /**
     * Activate a standby that is not in sync (asynchronous mode, or it lagged): the commits
     * it had not received are lost. Without it such a standby is refused.
     */
    ignoreLag: z.boolean().default(false),
    /**
     * After the fence, also stop the old coordinator's EC2 instance (StopInstances with
     * Force, a native Step Functions task: it works when the host's agent does not answer).
     * The catalog row must name its instance.
     */
    stopInstance: z.boolean().default(false),
    /** Started by the prober (`autoActivateStandby`): never forced, never with ignoreLag. */
    automatic: z.boolean().default(false),
    /** Catalog version the request was made on (names the execution; newer than the catalog is refused). */
    catalogVersion: z.number().int().min(1).optional(),
    /** Attempt of an automatic activation at that version; part of the execution name. */
    attempt: z.number().int().min(1).max(1_000_000).default(1),
    /** Why it was started. */
    reason: z.string().max(2000).default('started by hand'),
  })
  .strict()
  .refine((i) => !i.automatic || (!i.force && !i.ignoreLag), 'an automatic activation is never forced and never ignores lag: it is safe or it does not happen');

/** ActivateStandby input, defaults filled in. */
export type ActivateStandbyInput = z.output<typeof activateStandbyInputSchema>;

const toFailure = { errors: ['States.ALL'], next: 'RecordFailure' } as const;

/** The ActivateStandby workflow. */
export const ACTIVATE_STANDBY_SPEC: WorkflowSpec<ActivateStandbyInput> = {
  kind: 'ActivateStandby',
  description: 'confirm the coordinator is down, fence it, make its standby the coordinator, move the client endpoint (gpactivatestandby)',
  handler: 'activate-standby',
  serviceName: 'fts-activate-standby',
  input: activateStandbyInputSchema,
  executionName: (i) => executionNameOf('activate', i.clusterId, `v${i.catalogVersion ?? 0}-${i.automatic ? `auto-a${i.attempt}` : requestDigest(i)}`),
  executionTimeoutSeconds: 15 * 60,
  // Activate waits up to 30 s for pg_promote; the fence and the endpoint move have their own budgets below it.
  stepTimeoutSeconds: 120,
  hostOperationSeconds: 40,
  start: 'Validate',
  states: {
    Validate: { type: 'task', step: 'validate', next: 'ConfirmDown', retry: [CONFLICT_RETRY], catch: [invalidInputCatch([ValidationError, ContentBusyError, MirrorNotPromotableError, ClusterNotFoundError])] },
    ConfirmDown: { type: 'task', step: 'confirm-down', next: 'FenceCoordinator', retry: [TRANSIENT_RETRY], catch: [{ errors: [CoordinatorAliveError], next: 'RecordRefusal' }, toFailure] },
    FenceCoordinator: { type: 'task', step: 'fence-coordinator', next: 'StopInstanceAsked', retry: [TRANSIENT_RETRY], catch: [{ errors: [FenceUnconfirmedError], next: 'RecordRefusal' }, toFailure] },
    StopInstanceAsked: { type: 'choice', when: [{ path: '$.fenceCoordinator.stopInstance', equals: true, next: 'StopCoordinatorInstance' }], otherwise: 'Activate' },
    StopCoordinatorInstance: {
      type: 'sdk',
      service: 'ec2',
      action: 'stopInstances',
      parameters: { InstanceIds: { path: '$.fenceCoordinator.instanceIds', list: true }, Force: true },
      resultPath: '$.stopCoordinatorInstance',
      next: 'Activate',
      retry: [{ errors: ['States.TaskFailed'], intervalSeconds: 2, backoffRate: 2, maxAttempts: 3 }],
      catch: [toFailure],
    },
    Activate: { type: 'task', step: 'activate', next: 'MoveEndpoint', retry: [TRANSIENT_RETRY, CONFLICT_RETRY], catch: [toFailure] },
    MoveEndpoint: { type: 'task', step: 'move-endpoint', next: 'VerifyWrite', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    VerifyWrite: { type: 'task', step: 'verify-write', next: 'Finish', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    Finish: { type: 'task', step: 'finish', next: 'Activated', retry: [CONFLICT_RETRY, TRANSIENT_RETRY], catch: [toFailure] },
    Activated: { type: 'succeed' },
    RecordRefusal: { type: 'task', step: 'record-refusal', next: 'Refused', retry: [CONFLICT_RETRY] },
    Refused: { type: 'fail', error: 'ActivationRefused', causePath: '$.error.Cause' },
    RecordFailure: { type: 'task', step: 'record-failure', next: 'ActivationFailed', retry: [CONFLICT_RETRY] },
    ActivationFailed: { type: 'fail', error: 'ActivationFailed', causePath: '$.error.Cause' },
    InvalidInput: INVALID_INPUT_STATE,
  },
};
