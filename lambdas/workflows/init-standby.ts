/**
 * InitStandby (Greenplum's `gpinitstandby`): adds a warm standby of the coordinator on
 * another host, or with `remove` (`gpinitstandby -r`) removes the standby. Started from
 * the console or `ftsctl initstandby -s <host> [-P port] [-S dir] | -r`.
 *
 *   Plan -> Action?
 *     add:    StartCopy -> WaitForCopy -> PollCopy -> CopyDone? (running: wait again;
 *             restart: start again) -> VerifyStreaming -> Finish -> Initialized
 *     remove: DisableSyncRep -> StopStandby -> RemoveStandby -> Removed
 *   any error after Plan -> RecordFailure -> InitFailed | RemoveFailed
 *
 * Catalog first: Plan holds content -1 and (to add) writes the standby's row `m/d/n`
 * with a new dbid in one catalog write, after the placement check (never in the
 * coordinator's failure domain). The copy (pg_basebackup through the standby's slot,
 * its identity and standby config, its start) is a host job in a wait-and-poll loop.
 * Finish marks it `m/u/n` once it streams from the coordinator and turns sync rep on;
 * the prober marks the pair `s` once it has caught up. RecordFailure undoes an add (the
 * copy cancelled, the standby stopped, its slot dropped, its row removed) and releases
 * the hold; the half-built data directory stays for the next attempt.
 */
import { z } from 'zod';
import { ContentBusyError, ValidationError } from '../core/errors';
import { clusterIdSchema } from './promote-mirror';
import { DEFAULT_POLL_SECONDS, DEFAULT_STALL_SECONDS, requestDigest } from './recover-segments';
import { CONFLICT_RETRY, executionNameOf, TRANSIENT_RETRY, type WorkflowSpec, INVALID_INPUT_STATE, invalidInputCatch } from './spec';

/** A host name as `gp_segment_configuration.hostname` holds it. */
const hostnameSchema = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/, 'must be a host name (letters, digits, ".", "-", "_")');

/** An address peers connect to: an IPv4 or IPv6 address or a DNS name. */
const addressSchema = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9:._-]+$/, 'must be an IP address or a DNS name');

/** An absolute data directory other than `/`, without control characters. */
const datadirSchema = z
  .string()
  .min(1)
  .max(1024)
  .refine((d) => d.startsWith('/'), 'must be an absolute path')
  .refine((d) => [...d].every((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f), 'must not contain control characters (newlines, tabs)')
  .refine((d) => d.split('/').some((part) => part !== '' && part !== '.' && part !== '..'), 'must not be the root directory');

/** InitStandby input, as the console or `ftsctl initstandby` sends it. */
export const initStandbyInputSchema = z
  .object({
    clusterId: clusterIdSchema,
    /** `-s`: the standby's host (its `hostname` column). Required unless `remove`. */
    hostname: hostnameSchema.optional(),
    /** The address the coordinator and FTS reach the standby at; default the hostname. */
    address: addressSchema.optional(),
    /** `-P`: the standby's port; default the coordinator's port (as gpinitstandby). */
    port: z.number().int().min(1).max(65535).optional(),
    /** `-S`: the standby's data directory; default the coordinator's (as gpinitstandby). */
    datadir: datadirSchema.optional(),
    /** EC2 placement of the standby's host (default: that of a catalog row on the same host, if any). */
    instanceId: z.string().min(1).max(64).optional(),
    availabilityZone: z.string().min(1).max(64).optional(),
    placementGroup: z.string().min(1).max(255).optional(),
    partitionNumber: z.number().int().min(1).max(7).optional(),
    /**
     * Allow the standby in the coordinator's availability zone (a cluster deployed in one
     * zone). A zone outage then takes both; the same host or partition is never allowed.
     */
    allowSameZone: z.boolean().default(false),
    /** `-r`: remove the standby (sync rep off first, then stop it, drop its slot, remove its row). */
    remove: z.boolean().default(false),
    /** Seconds between two looks at the running copy. */
    pollSeconds: z.number().int().min(1).max(300).default(DEFAULT_POLL_SECONDS),
    /** Seconds the copy may go without progress before it is cancelled and the add undone. */
    stallSeconds: z.number().int().min(10).max(86_400).default(DEFAULT_STALL_SECONDS),
    /** Catalog version the request was made on (names the execution; newer than the catalog is refused). */
    catalogVersion: z.number().int().min(1).optional(),
  })
  .strict()
  .refine((i) => i.remove || i.hostname !== undefined, { message: 'is required to add a standby (gpinitstandby -s <host>); to remove the standby give remove: true (gpinitstandby -r)', path: ['hostname'] })
  .refine(
    (i) => !i.remove || [i.hostname, i.address, i.port, i.datadir, i.instanceId, i.availabilityZone, i.placementGroup, i.partitionNumber].every((v) => v === undefined) && !i.allowSameZone,
    { message: 'removes the standby the catalog names (gpinitstandby -r): give no hostname, address, port, datadir, placement or allowSameZone with it', path: ['remove'] },
  )
  .refine((i) => i.partitionNumber === undefined || i.placementGroup !== undefined, { message: 'partitionNumber goes with placementGroup', path: ['partitionNumber'] })
  .refine((i) => i.stallSeconds > 2 * i.pollSeconds, { message: 'stallSeconds must be more than twice pollSeconds: a poll or two without news is not a stall', path: ['stallSeconds'] });

/** InitStandby input, defaults filled in. */
export type InitStandbyInput = z.output<typeof initStandbyInputSchema>;

const toFailure = { errors: ['States.ALL'], next: 'RecordFailure' } as const;

/** The InitStandby workflow. */
export const INIT_STANDBY_SPEC: WorkflowSpec<InitStandbyInput> = {
  kind: 'InitStandby',
  description: 'add a standby of the coordinator on another host, copied with pg_basebackup and streaming in sync, or remove it (gpinitstandby, gpinitstandby -r)',
  handler: 'init-standby',
  serviceName: 'fts-init-standby',
  input: initStandbyInputSchema,
  executionName: (i) => executionNameOf('initstandby', i.clusterId, `v${i.catalogVersion ?? 0}-${requestDigest(i)}`),
  // A copy of a large coordinator takes a while; a day is plenty (its stall limit ends a frozen one sooner).
  executionTimeoutSeconds: 24 * 3600,
  // VerifyStreaming waits up to 60 s for the stream; a step makes at most three host calls (the undo), each within hostOperationSeconds.
  stepTimeoutSeconds: 300,
  hostOperationSeconds: 60,
  start: 'Plan',
  states: {
    Plan: { type: 'task', step: 'plan', next: 'Action', retry: [CONFLICT_RETRY], catch: [invalidInputCatch([ValidationError, ContentBusyError]), toFailure] },
    Action: { type: 'choice', when: [{ path: '$.plan.remove', equals: true, next: 'DisableSyncRep' }], otherwise: 'StartCopy' },
    StartCopy: { type: 'task', step: 'start-copy', next: 'WaitForCopy', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    WaitForCopy: { type: 'wait', secondsPath: '$.plan.pollSeconds', next: 'PollCopy' },
    PollCopy: { type: 'task', step: 'poll-copy', next: 'CopyDone', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    CopyDone: {
      type: 'choice',
      when: [
        { path: '$.pollCopy.state', equals: 'running', next: 'WaitForCopy' },
        { path: '$.pollCopy.state', equals: 'restart', next: 'StartCopy' },
      ],
      otherwise: 'VerifyStreaming',
    },
    VerifyStreaming: { type: 'task', step: 'verify-streaming', next: 'Finish', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    Finish: { type: 'task', step: 'finish', next: 'Initialized', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    Initialized: { type: 'succeed' },
    DisableSyncRep: { type: 'task', step: 'disable-sync-rep', next: 'StopStandby', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    StopStandby: { type: 'task', step: 'stop-standby', next: 'RemoveStandby', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    RemoveStandby: { type: 'task', step: 'remove-standby', next: 'Removed', retry: [TRANSIENT_RETRY], catch: [toFailure] },
    Removed: { type: 'succeed' },
    RecordFailure: { type: 'task', step: 'record-failure', next: 'FailedHow', retry: [CONFLICT_RETRY] },
    FailedHow: { type: 'choice', when: [{ path: '$.recordFailure.remove', equals: true, next: 'RemoveFailed' }], otherwise: 'InitFailed' },
    InitFailed: { type: 'fail', error: 'InitStandbyFailed', causePath: '$.recordFailure.message' },
    RemoveFailed: { type: 'fail', error: 'RemoveStandbyFailed', causePath: '$.recordFailure.message' },
    InvalidInput: INVALID_INPUT_STATE,
  },
};
