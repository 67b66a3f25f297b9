/** Starting workflows (Step Functions in AWS, the synthesized ASL in-process locally). */
import { WORKFLOW_SPECS, type WorkflowInputs } from '../workflows';
import { parseWorkflowInput, type WorkflowKind } from '../workflows/spec';

export type { PromoteMirrorInput } from '../workflows/promote-mirror';

/** The outcome of a start. */
export interface StartedExecution {
  executionName: string;
  /** False when an execution with that name already existed (idempotent start). */
  started: boolean;
}

export interface Workflows {
  /**
   * Starts a workflow under the execution name its spec derives from the input, so a
   * repeated start of the same request starts nothing (`started: false`). Input the
   * spec's schema refuses is a ValidationError, and nothing starts.
   */
  start<K extends WorkflowKind>(kind: K, input: WorkflowInputs[K]): Promise<StartedExecution>;
}

/** The execution name a start through {@link Workflows.start} uses; ValidationError for bad input. */
export function executionNameFor(kind: WorkflowKind, input: unknown): string {
  const spec = WORKFLOW_SPECS[kind];
  return spec.executionName(parseWorkflowInput(spec, input));
}
