/**
 * Runs the step a Task state names, for any workflow: the event is
 * `{ "step", "input": <state document>, "execution": <execution name> }` (see
 * lambdas/workflows/spec.ts). The Lambda handlers and local mode both call this.
 */
import { CatalogConflictError, ValidationError } from '../core/errors';
import type { CatalogChange, ClusterSnapshot } from '../core/model';
import type { Catalog } from '../ports/catalog';
import type { ClientEndpoint } from '../ports/endpoint';
import type { SegmentControl, SegmentHost, SegmentProbe } from '../ports/segments';
import type { Telemetry } from '../ports/telemetry';
import { checkSpec, taskSteps, type WorkflowSpec } from '../workflows/spec';

/** What every workflow's steps need. */
export interface WorkflowDeps {
  catalog: Catalog;
  probe: SegmentProbe;
  control: SegmentControl;
  /** Host operations: fences, stops, rebuilds. */
  host: SegmentHost;
  telemetry: Telemetry;
  now: () => Date;
  /** Pauses inside a step (a short poll); default a real timer. Tests with a controlled clock pass one that advances it. */
  sleep?: (ms: number) => Promise<void>;
  /** Sends a notification (SNS in AWS, the console locally). */
  notify?: (subject: string, message: string) => Promise<void>;
  /** The client endpoint that follows the acting coordinator; absent when none is configured. */
  endpoint?: ClientEndpoint;
}

/** Applies a change, re-reading the catalog after a concurrent write (a few times); undefined when `build` says nothing is to change. */
export async function applyFresh(catalog: Catalog, clusterId: string, build: (snapshot: ClusterSnapshot) => CatalogChange | null): Promise<number | undefined> {
  for (let attempt = 1; ; attempt++) {
    const snapshot = await catalog.load(clusterId);
    const change = build(snapshot);
    if (!change) return undefined;
    try {
      return await catalog.apply(clusterId, snapshot.version, change);
    } catch (e) {
      if (!(e instanceof CatalogConflictError) || attempt >= 5) throw e;
    }
  }
}

/** One step: reads the state document, returns its result (written at `$.<stepKey>`). */
export type StepHandler<D> = (deps: D, doc: unknown, execution: string) => Promise<Record<string, unknown>>;

/** A workflow's steps by name. */
export type StepTable<D> = Readonly<Record<string, StepHandler<D>>>;

/** Checks that `table` has a handler for every Task step of `spec` and nothing else; returns a runner. */
export function stepRunner<D>(spec: WorkflowSpec, table: StepTable<D>): (deps: D, event: { step?: unknown; input?: unknown; execution?: unknown }) => Promise<Record<string, unknown>> {
  checkSpec(spec, Object.keys(table));
  const steps = taskSteps(spec);
  const extra = Object.keys(table).filter((s) => !steps.includes(s));
  if (extra.length) throw new Error(`${spec.kind} step table has steps no state runs: ${extra.join(', ')}`);
  return async (deps, event) => {
    const step = event?.step;
    if (typeof step !== 'string' || !steps.includes(step)) {
      throw new ValidationError(`unknown ${spec.kind} step ${JSON.stringify(step)}; known steps are ${steps.join(', ')}`);
    }
    const execution = typeof event.execution === 'string' && event.execution ? event.execution : `${spec.kind}-unnamed`;
    return (table[step] as StepHandler<D>)(deps, event.input, execution);
  };
}

/** The workflow input part of a state document: its keys that the input schema knows. */
export function pickInput(doc: unknown, keys: readonly string[]): unknown {
  if (!doc || typeof doc !== 'object') return doc;
  return Object.fromEntries(Object.entries(doc).filter(([k]) => keys.includes(k)));
}

/** The error and cause a Catch put at `$.error`, as one sentence (a Lambda error's message taken out of its JSON). */
export function errorCause(doc: unknown): string {
  const error = (doc as { error?: { Error?: string; Cause?: string } } | undefined)?.error;
  if (!error) return 'unknown error';
  let cause = error.Cause ?? '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    cause = parsed.errorMessage ?? cause;
  } catch {
    /* a plain-text cause */
  }
  return `${error.Error ?? 'Error'}: ${cause}`;
}
