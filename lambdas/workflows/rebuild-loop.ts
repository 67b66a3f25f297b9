/**
 * The per-content states RecoverSegments and Rebalance share: start a rebuild, wait,
 * poll, and either wait again, start again (a lost or busy copy), or mark the instance
 * up; any error records the content's failure (and cancels its copy). The steps are
 * lambdas/service/rebuild-steps.ts.
 */
import { CONFLICT_RETRY, TRANSIENT_RETRY, type StateSpec } from './spec';

/** Names of the loop's states in one workflow (each workflow says it its way). */
export interface RebuildLoopNames {
  start: string;
  wait: string;
  poll: string;
  done: string;
  mark: string;
}

/** Where every error of the loop goes. */
export const RECORD_CONTENT_FAILURE = 'RecordContentFailure';

/** The loop's states, plus RecordContentFailure. */
export function rebuildLoop(n: RebuildLoopNames): Record<string, StateSpec> {
  const onError = [{ errors: ['States.ALL'] as const, next: RECORD_CONTENT_FAILURE }];
  return {
    [n.start]: { type: 'task', step: 'start-rebuild', next: n.wait, retry: [TRANSIENT_RETRY], catch: onError },
    [n.wait]: { type: 'wait', secondsPath: '$.pollSeconds', next: n.poll },
    [n.poll]: { type: 'task', step: 'poll-rebuild', next: n.done, retry: [TRANSIENT_RETRY], catch: onError },
    [n.done]: {
      type: 'choice',
      when: [
        { path: '$.pollRebuild.state', equals: 'running', next: n.wait },
        { path: '$.pollRebuild.state', equals: 'restart', next: n.start },
      ],
      otherwise: n.mark,
    },
    [n.mark]: { type: 'task', step: 'mark-recovered', retry: [TRANSIENT_RETRY], catch: onError },
    [RECORD_CONTENT_FAILURE]: { type: 'task', step: 'record-content-failure', retry: [CONFLICT_RETRY] },
  };
}
