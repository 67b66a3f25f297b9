/** Each workflow's step runner, by kind: what a Lambda handler or local mode binds to the Task states. */
import type { WorkflowKind } from '../workflows/spec';
import { runActivateStandbyStepEvent } from './activate-standby';
import { runInitStandbyStepEvent } from './init-standby';
import { runPromoteStepEvent } from './promotion';
import { runRebalanceStepEvent } from './rebalance';
import { runRecoverSegmentsStepEvent } from './recover-segments';
import type { WorkflowDeps } from './steps';

/** A workflow's step runner. */
export type StepEventRunner = (deps: WorkflowDeps, event: { step?: unknown; input?: unknown; execution?: unknown }) => Promise<Record<string, unknown>>;

/** The step runner of every workflow. */
export const STEP_EVENT_RUNNERS: Readonly<Record<WorkflowKind, StepEventRunner>> = {
  PromoteMirror: runPromoteStepEvent,
  RecoverSegments: runRecoverSegmentsStepEvent,
  Rebalance: runRebalanceStepEvent,
  ActivateStandby: runActivateStandbyStepEvent,
  InitStandby: runInitStandbyStepEvent,
};
