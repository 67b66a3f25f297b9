/** Every FTS workflow spec, by kind, and the input each one is started with. */
import type { z } from 'zod';
import { ACTIVATE_STANDBY_SPEC, type activateStandbyInputSchema } from './activate-standby';
import { INIT_STANDBY_SPEC, type initStandbyInputSchema } from './init-standby';
import { PROMOTE_MIRROR_SPEC, type promoteMirrorInputSchema } from './promote-mirror';
import { REBALANCE_SPEC, type rebalanceInputSchema } from './rebalance';
import { RECOVER_SEGMENTS_SPEC, type recoverSegmentsInputSchema } from './recover-segments';
import type { WorkflowKind, WorkflowSpec } from './spec';

/** The spec of each workflow kind. */
export const WORKFLOW_SPECS: Readonly<Record<WorkflowKind, WorkflowSpec>> = {
  PromoteMirror: PROMOTE_MIRROR_SPEC,
  RecoverSegments: RECOVER_SEGMENTS_SPEC,
  Rebalance: REBALANCE_SPEC,
  ActivateStandby: ACTIVATE_STANDBY_SPEC,
  InitStandby: INIT_STANDBY_SPEC,
};

/** What a start of each kind takes (before defaults are filled in). */
export interface WorkflowInputs {
  PromoteMirror: z.input<typeof promoteMirrorInputSchema>;
  RecoverSegments: z.input<typeof recoverSegmentsInputSchema>;
  Rebalance: z.input<typeof rebalanceInputSchema>;
  ActivateStandby: z.input<typeof activateStandbyInputSchema>;
  InitStandby: z.input<typeof initStandbyInputSchema>;
}
