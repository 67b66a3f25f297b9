/**
 * The prober of a local cluster: the same service code the Lambda runs (runProber in
 * one-minute invocations, as EventBridge Scheduler would start them) with PromoteMirror
 * executed from the synthesized definition by LocalWorkflows, every Task state bound to
 * the same step code the Lambda runs. Events go to a JSON-lines timeline.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { Catalog } from '../lambdas/ports/catalog';
import type { ClientEndpoint } from '../lambdas/ports/endpoint';
import type { SegmentControl, SegmentHost, SegmentProbe } from '../lambdas/ports/segments';
import type { MetricName, Telemetry } from '../lambdas/ports/telemetry';
import type { LocalExecutionEvent, LocalWorkflows, StepEvent } from '../lambdas/adapters/local/local-workflows';
import { runProber, type ProberDeps, type RoundReport } from '../lambdas/service/prober';
import type { WorkflowDeps } from '../lambdas/service/steps';
import { STEP_EVENT_RUNNERS } from '../lambdas/service/workflows';
import type { WorkflowKind } from '../lambdas/workflows/spec';
import { localWorkflows } from '../lib/local-definition';

/** One line of the timeline. */
export interface TimelineEvent {
  /** Epoch ms. */
  at: number;
  level: 'info' | 'warn' | 'error' | 'metric';
  message: string;
  [field: string]: unknown;
}

/** Telemetry that hands every log line and metric to `sink` as a timeline event. */
export function timelineTelemetry(sink: (event: TimelineEvent) => void): Telemetry {
  const emit = (level: TimelineEvent['level'], message: string, fields?: Record<string, unknown>): void => {
    try {
      sink({ at: Date.now(), level, message, ...fields });
    } catch {
      // A broken sink must not break a probe round.
    }
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    metric: (name: MetricName, value: number) => emit('metric', name, { value }),
    flush: () => undefined,
  };
}

/** A sink appending JSON lines to a file. */
export const fileSink =
  (path: string) =>
  (event: TimelineEvent): void =>
    appendFileSync(path, `${JSON.stringify(event)}\n`);

/** Options of {@link startLocalProber}. */
export interface LocalProberOptions {
  clusterId: string;
  catalog: Catalog;
  probe: SegmentProbe;
  control: SegmentControl;
  /** Host operations (fences). */
  host: SegmentHost;
  /** The client endpoint an automatic ActivateStandby moves; absent: none. */
  endpoint?: ClientEndpoint;
  telemetry: Telemetry;
  /** Owner prefix of the lease; default `local-<pid>`. */
  owner?: string;
  /** Length of one invocation; default 60 s, the schedule's period. */
  invocationMs?: number;
  /** Pause before a step's retry instead of the definition's interval (tests: 0). */
  retryIntervalMs?: number;
  /** Milliseconds `stop()` waits for running executions before it aborts them; default 60 000. */
  stopTimeoutMs?: number;
  /** Wraps the step code (tests inject a failure). */
  wrapStep?: (event: StepEvent, run: () => Promise<unknown>) => Promise<unknown>;
  onRound?: (report: RoundReport) => void;
  onExecution?: (event: LocalExecutionEvent) => void;
}

/** A running local prober. */
export interface LocalProber {
  workflows: LocalWorkflows;
  /** Rounds run so far. */
  rounds(): number;
  /** Ends after the current round, releases the lease and waits for running executions (at most `stopTimeoutMs`, then aborts them). */
  stop(): Promise<void>;
}

/** Starts the prober loop in this process. */
export function startLocalProber(options: LocalProberOptions): LocalProber {
  const { catalog, probe, control, host, telemetry } = options;
  const workflowDeps: WorkflowDeps = {
    catalog,
    probe,
    control,
    host,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    telemetry,
    now: () => new Date(),
    notify: async (subject, message) => telemetry.info(subject, { notification: message }),
  };
  // The workflows the prober starts: PromoteMirror, and ActivateStandby when autoActivateStandby is on.
  const bind = (kind: WorkflowKind) => (event: StepEvent) => {
    const run = (): Promise<unknown> => STEP_EVENT_RUNNERS[kind](workflowDeps, event);
    return options.wrapStep ? options.wrapStep(event, run) : run();
  };
  const workflows = localWorkflows(
    { PromoteMirror: bind('PromoteMirror'), ActivateStandby: bind('ActivateStandby') },
    {
      retryIntervalMs: options.retryIntervalMs,
      onExecution: (event) => {
        telemetry.info(`${event.kind} ${event.status.toLowerCase()}`, { execution: event.name, error: event.error, cause: event.cause });
        options.onExecution?.(event);
      },
    },
  );
  const controller = new AbortController();
  // An abort (stop) ends the wait at once; runProber then sees the signal and returns.
  const sleep = (ms: number): Promise<void> => delay(ms, undefined, { signal: controller.signal }).catch(() => undefined);
  const deps: ProberDeps = { catalog, probe, control, host, workflows, telemetry, clock: Date.now, sleep };
  let rounds = 0;
  let invocation = 0;
  const owner = options.owner ?? `local-${process.pid}`;
  const loop = (async () => {
    while (!controller.signal.aborted) {
      invocation += 1;
      try {
        await runProber(deps, {
          clusterId: options.clusterId,
          owner: `${owner}-${invocation}`,
          deadline: Date.now() + (options.invocationMs ?? 60_000),
          signal: controller.signal,
          onRound: (report) => {
            rounds += 1;
            options.onRound?.(report);
          },
        });
      } catch (e) {
        // The Lambda would fail this invocation; the next one starts on schedule.
        telemetry.error(`prober invocation failed: ${(e as Error).message}`, { clusterId: options.clusterId });
        await sleep(1000);
      }
    }
  })();
  return {
    workflows,
    rounds: () => rounds,
    stop: async () => {
      controller.abort();
      await loop;
      // Running executions may finish (a promotion half done is better finished), but not forever.
      const running = workflows.list().filter((e) => !e.outcome);
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.stopTimeoutMs ?? 60_000)));
      await Promise.race([Promise.all(running.map((e) => workflows.wait(e.name))), limit]);
      clearTimeout(timer);
      for (const e of running) {
        if (workflows.abort(e.name)) telemetry.warn(`${e.kind} aborted at stop: it had not ended after ${options.stopTimeoutMs ?? 60_000} ms`, { execution: e.name });
      }
    },
  };
}
