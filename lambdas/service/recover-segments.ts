/**
 * The steps of RecoverSegments (gprecoverseg): plan and hold, then per content the
 * shared rebuild steps (./rebuild-steps.ts), then the summary.
 */
import { ValidationError } from '../core/errors';
import type { CatalogChange } from '../core/model';
import { parseRecoverConfig, planRecovery, relocationChange, type RecoveryPlan } from '../core/recovery';
import { RECOVER_SEGMENTS_SPEC } from '../workflows/recover-segments';
import { parseWorkflowInput } from '../workflows/spec';
import { holdOf, plannedBefore, rebuildItemSchema, rebuildSteps, summarize, type RebuildItem, type SkippedContent } from './rebuild-steps';
import { stepRunner, type StepTable, type WorkflowDeps } from './steps';

/** What `plan` returns: the Map's items, what is left alone, and the run's knobs. */
interface PlanResult extends Record<string, unknown> {
  recoveries: RebuildItem[];
  skipped: SkippedContent[];
  /** Contents asked for that need nothing (both rows up). */
  upToDate: number[];
  warnings: string[];
  parallel: number;
  pollSeconds: number;
  stallSeconds: number;
}

/**
 * Checks the input against the schema and the catalog, plans with the core planner, and
 * in one catalog write holds every content it will rebuild and moves the rows that
 * change place (catalog first). Re-planned on a concurrent write; a re-run of the same
 * execution finds its own holds and plans the same.
 */
async function plan(deps: WorkflowDeps, doc: unknown, execution: string): Promise<PlanResult> {
  const input = parseWorkflowInput(RECOVER_SEGMENTS_SPEC, doc);
  const request = {
    mode: input.mode,
    ...(input.contents ? { contents: input.contents } : {}),
    ...(input.recoverConfig !== undefined ? { config: parseRecoverConfig(input.recoverConfig) } : {}),
    ...(input.spareHost ? { spareHost: input.spareHost } : {}),
  };
  for (let attempt = 1; ; attempt++) {
    const snapshot = await deps.catalog.load(input.clusterId);
    if (input.catalogVersion !== undefined && input.catalogVersion > snapshot.version) {
      throw new ValidationError(`catalogVersion ${input.catalogVersion} is newer than the catalog of cluster ${snapshot.clusterId} (version ${snapshot.version})`);
    }
    const again = plannedBefore(snapshot, execution, rebuildItemSchema);
    if (again) {
      const warning = 'planned again after a retried step: the contents this execution holds, as first planned; contents it left alone then are not listed again';
      return { recoveries: again, skipped: [], upToDate: [], warnings: [warning], parallel: input.parallel, pollSeconds: input.pollSeconds, stallSeconds: input.stallSeconds };
    }
    const now = deps.now();
    const planned: RecoveryPlan = planRecovery(snapshot, request, { now, execution });
    // A content asked for whose rows are both up needs nothing: not a reason for an incomplete run.
    const fine = (content: number) => {
      const rows = snapshot.segments.filter((r) => r.content === content);
      return rows.length === 2 && rows.every((r) => r.status === 'u');
    };
    const result: PlanResult = {
      recoveries: planned.recoveries.map((r) => {
        const before = snapshot.segments.find((s) => s.dbid === r.failedDbid);
        return {
          content: r.content,
          dbid: r.failedDbid,
          sourceDbid: r.actingPrimaryDbid,
          method: r.method,
          ...(r.moved && before
            ? { previous: { hostname: before.hostname, address: before.address, port: before.port, datadir: before.datadir, ...(before.instanceId ? { instanceId: before.instanceId } : {}) } }
            : {}),
        };
      }),
      skipped: planned.skipped.filter((k) => !fine(k.content)),
      upToDate: planned.skipped.filter((k) => fine(k.content)).map((k) => k.content),
      warnings: planned.warnings,
      parallel: input.parallel,
      pollSeconds: input.pollSeconds,
      stallSeconds: input.stallSeconds,
    };
    if (!planned.recoveries.length) return result;
    const relocation = relocationChange(snapshot, planned, now);
    const change: CatalogChange = {
      rows: relocation?.rows ?? [],
      history: [
        ...(relocation?.history ?? []),
        ...planned.recoveries.map((r) => ({ time: now.toISOString(), dbid: r.failedDbid, description: `FTS: gprecoverseg (${execution}) holds content ${r.content} to rebuild dbid ${r.failedDbid} from dbid ${r.actingPrimaryDbid} by ${r.method}` })),
      ],
      setOperations: result.recoveries.map((item) => holdOf('recovery', item.content, execution, now, item)),
    };
    try {
      await deps.catalog.apply(input.clusterId, snapshot.version, change);
      // Rows moved by an earlier run of this execution are already in place: re-planning finds them moved.
      for (const r of result.recoveries) deps.telemetry.info(`gprecoverseg: content ${r.content} held, dbid ${r.dbid} to be rebuilt by ${r.method}`, { content: r.content, execution });
      return result;
    } catch (e) {
      if ((e as Error).name !== 'CatalogConflictError' || attempt >= 5) throw e;
    }
  }
}

const TABLE: StepTable<WorkflowDeps> = {
  plan,
  ...rebuildSteps('gprecoverseg', 'recovery'),
  summarize: async (deps, doc, execution) => {
    const d = doc as { plan?: PlanResult };
    return summarize(deps, doc, execution, { verb: 'recovered', skipped: d.plan?.skipped ?? [], upToDate: d.plan?.upToDate, warnings: d.plan?.warnings });
  },
};

const run = stepRunner(RECOVER_SEGMENTS_SPEC, TABLE);

/** Runs the step a Task state names (the Lambda and local mode both call this). */
export async function runRecoverSegmentsStepEvent(deps: WorkflowDeps, event: { step?: unknown; input?: unknown; execution?: unknown }): Promise<Record<string, unknown>> {
  return run(deps, event);
}

