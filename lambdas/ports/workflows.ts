/** Starting workflows (Step Functions in AWS, the synthesized ASL in-process locally). */

/** Input of the PromoteMirror workflow. */
export interface PromoteMirrorInput {
  clusterId: string;
  content: number;
  failedPrimaryDbid: number;
  mirrorDbid: number;
  /** Catalog version the prober decided on; part of the execution name. */
  catalogVersion: number;
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

/** Execution name: unique per cluster, content and catalog version, so a second start is a no-op. */
export const promotionExecutionName = (input: Pick<PromoteMirrorInput, 'clusterId' | 'content' | 'catalogVersion'>): string =>
  `promote-${input.clusterId}-c${input.content}-v${input.catalogVersion}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 80);
