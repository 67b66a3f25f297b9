/** Starting workflows (Step Functions in AWS, the synthesized ASL in-process locally). */
import type { FailureKind } from '../core/decide';

/** Input of the PromoteMirror workflow. */
export interface PromoteMirrorInput {
  clusterId: string;
  content: number;
  failedPrimaryDbid: number;
  mirrorDbid: number;
  /** Catalog version the prober decided on; part of the execution name. */
  catalogVersion: number;
  /**
   * Attempt of this failure episode at that version (default 1); part of the execution
   * name, so a retry after an aborted or failed attempt starts a new execution while a
   * duplicate start of the same attempt stays a no-op.
   */
  attempt?: number;
  /** How the primary failed, which decides how the workflow confirms it (default `unreachable`). */
  failure?: FailureKind;
  /** Why the prober started it. */
  reason: string;
}

export interface StartedExecution {
  executionName: string;
  /** False when an execution with that name already existed (idempotent start). */
  started: boolean;
}

export interface Workflows {
  /** Starts PromoteMirror with a name derived from cluster, content and catalog version. */
  startPromotion(input: PromoteMirrorInput): Promise<StartedExecution>;
}

/**
 * Execution name: one failure episode (cluster, content, catalog version) and attempt,
 * so a second start of the same attempt is a no-op and a new attempt starts anew. The
 * cluster id is cut first when the name would pass Step Functions' 80 characters.
 */
export const promotionExecutionName = (input: Pick<PromoteMirrorInput, 'clusterId' | 'content' | 'catalogVersion' | 'attempt'>): string => {
  const tail = `-c${input.content}-v${input.catalogVersion}-a${input.attempt ?? 1}`;
  return `promote-${input.clusterId.slice(0, 80 - 'promote-'.length - tail.length)}${tail}`.replace(/[^A-Za-z0-9_-]/g, '-');
};
