/**
 * The fault matrix: every scenario (./scenarios.ts) `trials` times on local clusters
 * shared between trials (./harness.ts), and its report as a Markdown table or one JSON
 * object. `npm run faults` runs it; test/e2e/faults.test.ts runs each scenario once.
 */
import { cpus, release, totalmem } from 'node:os';
import { runTrial, FAULT_SETTINGS, type ClusterPool, type FaultClusterSpec, type Log, type Scenario, type TrialResult } from './harness';

/** One scenario's trials and their totals. */
export interface ScenarioSummary {
  name: string;
  title: string;
  expected: string;
  params: Record<string, number>;
  /** The scenario's own cluster kind, when not the standard one. */
  cluster?: FaultClusterSpec;
  trials: TrialResult[];
  passed: number;
  notProvoked: number;
  failovers: number;
  falseFailovers: number;
  lostCommits: number;
  splitBrainCommits: number;
  /** Longest over the trials; absent when no trial had a healthy content to measure. */
  maxStallMs?: number;
  /** Detection of each trial that had one. */
  detectionMs: number[];
  acknowledged: number;
  durationMs: number;
}

/** The whole matrix. */
export interface MatrixReport {
  startedAt: string;
  durationMs: number;
  trialsPerScenario: number;
  settings: Record<string, number>;
  machine: { cpus: number; cpu: string; memoryGib: number; kernel: string; node: string };
  scenarios: ScenarioSummary[];
  passed: number;
  trials: number;
}

/** The order trials run in: scenarios needing the same kind of cluster next to each other (the report keeps the scenarios' order). */
export function executionOrder(scenarios: readonly Scenario[]): Scenario[] {
  const key = (s: Scenario): string => JSON.stringify(s.cluster ?? {});
  const keys = [...new Set(scenarios.map(key))];
  return keys.flatMap((k) => scenarios.filter((s) => key(s) === k));
}

/** Options of {@link runMatrix}. */
export interface MatrixOptions {
  scenarios: readonly Scenario[];
  trials: number;
  pool: ClusterPool;
  log?: Log;
  /** Stops before the next trial when it returns true (an interrupted run). */
  stopped?: () => boolean;
}

/** Runs every scenario `trials` times. */
export async function runMatrix(options: MatrixOptions): Promise<MatrixReport> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const results = new Map<string, TrialResult[]>();
  for (const scenario of executionOrder(options.scenarios)) {
    for (let i = 1; i <= options.trials && !options.stopped?.(); i++) {
      log(`${scenario.name} trial ${i}/${options.trials}`);
      const r = await runTrial(scenario, options.pool, i, log);
      log(`${scenario.name} trial ${i}/${options.trials}: ${r.status} (${(r.durationMs / 1000).toFixed(1)} s)${r.failures.length ? `: ${r.failures.join('; ')}` : ''}`);
      results.set(scenario.name, [...(results.get(scenario.name) ?? []), r]);
    }
  }
  const scenarios = options.scenarios.map((s) => summarize(s, results.get(s.name) ?? []));
  return {
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    trialsPerScenario: options.trials,
    settings: FAULT_SETTINGS,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGib: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version },
    scenarios,
    passed: scenarios.reduce((n, s) => n + s.passed, 0),
    trials: scenarios.reduce((n, s) => n + s.trials.length, 0),
  };
}

function summarize(s: Scenario, trials: TrialResult[]): ScenarioSummary {
  const sum = (f: (t: TrialResult) => number): number => trials.reduce((n, t) => n + f(t), 0);
  return {
    name: s.name,
    title: s.title,
    expected: s.expected,
    params: { ...s.params },
    ...(s.cluster ? { cluster: s.cluster } : {}),
    trials,
    passed: trials.filter((t) => t.status === 'pass').length,
    notProvoked: trials.filter((t) => t.status === 'not-provoked').length,
    failovers: sum((t) => t.failovers),
    falseFailovers: sum((t) => t.falseFailovers),
    lostCommits: sum((t) => t.lostCommits),
    splitBrainCommits: sum((t) => t.splitBrainCommits),
    ...(trials.some((t) => t.maxStallMs !== undefined) ? { maxStallMs: Math.max(...trials.map((t) => t.maxStallMs ?? 0)) } : {}),
    detectionMs: trials.flatMap((t) => (t.detectionMs !== undefined ? [t.detectionMs] : [])),
    acknowledged: sum((t) => t.acknowledged),
    durationMs: sum((t) => t.durationMs),
  };
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

const duration = (ms: number): string => {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
};

/** The report as Markdown: one table row per scenario, then the totals and how long it took. */
export function formatMatrix(report: MatrixReport): string {
  const rows = report.scenarios.map((s) => {
    const detection = s.detectionMs.length ? (s.detectionMs.length === 1 ? String(s.detectionMs[0]) : `${Math.min(...s.detectionMs)}–${Math.max(...s.detectionMs)}`) : '—';
    const perTrial = s.trials
      .map((t) => {
        if (t.status === 'pass') return `#${t.trial} pass`;
        if (t.status === 'not-provoked') return `#${t.trial} not provoked: ${t.notes.find((n) => n.startsWith('not provoked: '))?.slice(14) ?? ''}`;
        return `#${t.trial} FAIL: ${t.failures.join('; ')}`;
      })
      .join('; ');
    return `| ${cell(s.name)} | ${s.trials.length} | ${cell(s.expected)} | ${s.failovers} | ${s.falseFailovers} | ${s.lostCommits} | ${s.splitBrainCommits} | ${s.maxStallMs ?? '—'} | ${detection} | ${cell(perTrial || 'not run')} |`;
  });
  const settings = Object.entries(report.settings)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return [
    '| scenario | trials | expected | failovers | false failovers | lost commits | split-brain commits | longest stall, healthy contents (ms) | detection (ms) | result per trial |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows,
    '',
    `${report.passed} of ${report.trials} trials passed; ${report.scenarios.length} scenarios × ${report.trialsPerScenario} trial(s) took ${duration(report.durationMs)}.`,
    `Settings: ${settings}${report.scenarios
      .filter((s) => s.cluster?.settings)
      .map((s) => `; ${s.name}: ${Object.entries(s.cluster!.settings!).map(([k, v]) => `${k}=${v}`).join(', ')}`)
      .join('')}. Machine: ${report.machine.cpus} × ${report.machine.cpu}, ${report.machine.memoryGib} GiB, Linux ${report.machine.kernel}, Node ${report.machine.node}.`,
    '',
  ].join('\n');
}
