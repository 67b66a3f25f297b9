/**
 * Walks one Map iteration of a workflow spec the way Step Functions would, for fast step
 * tests on the in-memory fakes: Task results at `$.<stepKey>`, a Catch puts `{ Error,
 * Cause }` at `$.error`, Choice rules read the document, a Wait calls `wait` with its
 * seconds (the test moves its clock; no real wait). Retry rules are not replayed: a step
 * that throws goes to its Catch.
 */
import { errorName, stepResultKey, type MapSpec, type StateSpec } from '../../lambdas/workflows/spec';

/** A state document. */
export type Doc = Record<string, unknown>;

/** A JSONPath of the simple `$.a.b` kind the specs use. */
export const at = (doc: unknown, path: string): unknown =>
  path.replace(/^\$\.?/, '').split('.').filter(Boolean).reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Doc)[k] : undefined), doc);

/** An error as Step Functions puts it at `$.error`: Cause is the Lambda error JSON. */
export const lambdaError = (e: Error) => ({ Error: e.name, Cause: JSON.stringify({ errorType: e.name, errorMessage: e.message, trace: [] }) });

/** A Map iteration's document, from the spec's itemSelector. */
export const iterationDoc = (map: MapSpec, outer: Doc, item: unknown): Doc =>
  Object.fromEntries(Object.entries(map.itemSelector).map(([key, path]) => [key, path === '$$.Map.Item.Value' ? item : at(outer, path)]));

/** Runs one iteration from `map.start` on `doc` (changed in place); returns it and the states visited. */
export async function iterateMap(
  map: MapSpec,
  doc: Doc,
  step: (name: string, doc: Doc) => Promise<unknown>,
  wait: (seconds: number) => void,
): Promise<{ doc: Doc; visited: string[] }> {
  const visited: string[] = [];
  for (let name: string | undefined = map.start; name !== undefined; ) {
    if (visited.length > 1000) throw new Error(`the iteration does not end: ${visited.join(' ')}`);
    visited.push(name);
    const state: StateSpec = map.states[name];
    if (state.type === 'task') {
      try {
        doc[stepResultKey(state.step)] = await step(state.step, doc);
        name = state.next;
      } catch (e) {
        const error = e as Error;
        const rule = state.catch?.find((c) => c.errors.some((ref) => errorName(ref) === 'States.ALL' || errorName(ref) === error.name));
        if (!rule) throw e;
        doc.error = lambdaError(error);
        name = rule.next;
      }
    } else if (state.type === 'choice') {
      name = state.when.find((w) => at(doc, w.path) === w.equals)?.next ?? state.otherwise;
    } else if (state.type === 'wait') {
      const seconds = at(doc, state.secondsPath);
      if (typeof seconds !== 'number') throw new Error(`wait state ${name}: no seconds at ${state.secondsPath}`);
      wait(seconds);
      name = state.next;
    } else {
      throw new Error(`state ${name} (${state.type}) cannot be in this Map iteration`);
    }
  }
  return { doc, visited };
}
