/** The RecoverSegments step function (lambdas/workflows/recover-segments.ts). */
import { runRecoverSegmentsStepEvent } from '../service/recover-segments';
import { workflowStepHandler } from './workflow-handler';

/** Runs the named step on the state document. */
export const handler = workflowStepHandler(runRecoverSegmentsStepEvent);
