/**
 * Prober settings, validated. Defaults are much faster than Greenplum's (interval 60 s,
 * timeout 20 s, 5 retries, grace 30 s: 6 s to 2.2 min of detection) yet never fail over
 * on a probe that is merely slow:
 * - a dead primary refuses connections at once, so detection is bounded by the interval
 *   plus the retries' delays: at most 2 + 3 x 1 = 5 s;
 * - a slow primary gets the whole probe timeout (5 s) on each of 4 attempts, over 20 s in
 *   all, before it counts as failed; a probe that answers late still answers;
 * - the mirror-down grace period (10 s) rides out a mirror restart without switching
 *   sync rep off and on, and more than `replicationAttempts` drops inside it (a crash
 *   loop, gpdb #10327) mark the mirror down without waiting.
 */
import { z } from 'zod';
import { ValidationError } from './errors';

const schema = z
  .object({
    /** Seconds between the starts of two probe rounds. */
    probeIntervalSeconds: z.number().min(1).max(600).default(2),
    /** Seconds one probe attempt (connect + query) may take. */
    probeTimeoutSeconds: z.number().min(0.5).max(60).default(5),
    /** Attempts after the first before a probe counts as failed. */
    probeRetries: z.number().int().min(0).max(10).default(3),
    /** Seconds between two attempts of a probe. */
    probeRetryDelaySeconds: z.number().min(0.1).max(30).default(1),
    /** Seconds a primary may report its mirror not streaming before the mirror is marked down. */
    mirrorDownGracePeriodSeconds: z.number().min(0).max(3600).default(10),
    /** Times a mirror may stop streaming inside the grace period before it is marked down anyway. */
    replicationAttempts: z.number().int().min(1).max(100).default(3),
    /** Instances probed at once. */
    probeParallelism: z.number().int().min(1).max(256).default(16),
    /**
     * Seconds after which a promotion whose catalog flip is written but whose pending
     * marker was never cleared (its workflow died) is started again.
     */
    promotionStaleSeconds: z.number().min(1).max(3600).default(60),
    /**
     * Seconds before a failover that did not flip the catalog (aborted because the
     * primary proved alive, or failed) is attempted again while the primary still fails.
     */
    failoverRetrySeconds: z.number().min(1).max(3600).default(15),
    /**
     * Bytes of WAL a connected mirror may still lack (primary position minus the mirror's
     * flush position) for synchronous replication to be on: more, and sync rep is turned
     * off while it catches up, so commits never wait for a long catch-up; at most this,
     * and it is turned (back) on.
     */
    catchUpLagBytes: z.number().int().min(0).max(1024 ** 3).default(1024 * 1024),
    /**
     * Seconds a primary in crash recovery (refusing connections while it starts up or
     * replays) may go without visible replay progress before it counts as failed: covers
     * the phases with no progress signal (the data-directory sync before replay) and a
     * slow replay between two WAL files (gpdb #11770).
     */
    crashRecoveryGraceSeconds: z.number().min(0).max(3600).default(30),
    /** Crash resets of a primary's postmaster within `resetLoopWindowSeconds` that make it a failure (gpdb #4470). */
    resetLoopThreshold: z.number().int().min(1).max(1000).default(3),
    /** Window in which resets are counted. */
    resetLoopWindowSeconds: z.number().min(1).max(3600).default(60),
    /**
     * The coordinator waits for its standby to flush every commit (sync rep, with the
     * mirror-down handling of segments), so an activation loses no acknowledged commit.
     * `false` keeps Greenplum's asynchronous standby: sync rep stays off for the
     * coordinator, the pair is never marked `s`, and `ftsctl state -f` shows the lag an
     * activation would lose.
     */
    standbySynchronous: z.boolean().default(true),
    /** Bytes of WAL the standby may lack (coordinator position minus its flush position) before `StandbyLagging` is raised, each round it holds. */
    standbyLagAlarmBytes: z.number().int().min(0).max(1024 ** 4).default(16 * 1024 * 1024),
    /**
     * The prober starts ActivateStandby itself when the coordinator fails (after the
     * probe's retries, like a failed primary) and its standby is in sync; the workflow
     * asks the standby for a second opinion and fences the coordinator before it
     * activates anything. Off by default, as in Greenplum; needs `standbySynchronous`.
     */
    autoActivateStandby: z.boolean().default(false),
  })
  .strict();

/** Validated prober settings (see the module comment for the defaults' reasoning). */
export type Settings = z.infer<typeof schema>;

/** Every setting with its default. */
export const DEFAULT_SETTINGS: Settings = schema.parse({});

/** Longest a probe may take under any valid settings, so a round fits in the prober's invocation. */
export const MAX_WORST_CASE_PROBE_SECONDS = 50;

/** Worst-case seconds to declare a probe failed: every attempt times out. */
export const worstCaseProbeSeconds = (s: Settings): number =>
  (s.probeRetries + 1) * s.probeTimeoutSeconds + s.probeRetries * s.probeRetryDelaySeconds;

/**
 * Validates settings (partial; missing keys take defaults). Throws ValidationError naming
 * each bad setting and its allowed range; unknown keys and contradictions are rejected.
 */
export function parseSettings(input: unknown): Settings {
  const result = schema.safeParse(input ?? {});
  if (!result.success) {
    const issues = result.error.issues.map((issue) => describeIssue(issue));
    throw new ValidationError(`invalid settings: ${issues.join('; ')}`, issues);
  }
  const s = result.data;
  const problems: string[] = [];
  if (s.mirrorDownGracePeriodSeconds > 0 && s.mirrorDownGracePeriodSeconds < s.probeIntervalSeconds) {
    problems.push(
      `mirrorDownGracePeriodSeconds (${s.mirrorDownGracePeriodSeconds}) must be 0 or at least probeIntervalSeconds (${s.probeIntervalSeconds}): a shorter grace period is never observed`,
    );
  }
  if (s.probeRetryDelaySeconds >= s.probeIntervalSeconds * 10) {
    problems.push(`probeRetryDelaySeconds (${s.probeRetryDelaySeconds}) must be less than 10 x probeIntervalSeconds (${s.probeIntervalSeconds})`);
  }
  if (worstCaseProbeSeconds(s) > MAX_WORST_CASE_PROBE_SECONDS) {
    problems.push(
      `probeRetries, probeTimeoutSeconds and probeRetryDelaySeconds allow a probe to take ${worstCaseProbeSeconds(s)} s; it must fit in ${MAX_WORST_CASE_PROBE_SECONDS} s so a round ends inside the prober's one-minute invocation`,
    );
  }
  if (s.autoActivateStandby && !s.standbySynchronous) {
    problems.push(
      'autoActivateStandby needs standbySynchronous: an asynchronous standby may lack commits the coordinator acknowledged, and an automatic activation would lose them',
    );
  }
  if (problems.length) throw new ValidationError(`invalid settings: ${problems.join('; ')}`, problems);
  return s;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.join('.') || '(settings)';
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown setting(s) ${issue.keys.join(', ')}; known settings are ${Object.keys(schema.shape).join(', ')}`;
    case 'too_small':
      return `${key} must be at least ${String(issue.minimum)}${rangeOf(key)}`;
    case 'too_big':
      return `${key} must be at most ${String(issue.maximum)}${rangeOf(key)}`;
    case 'invalid_type':
      return `${key} must be ${issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`}${rangeOf(key)}`;
    default:
      return `${key}: ${issue.message}${rangeOf(key)}`;
  }
}

/** ` (allowed <min> to <max>)` for a numeric setting; nothing for the others (booleans). */
function rangeOf(key: string): string {
  const field = (schema.shape as Record<string, z.ZodDefault<z.ZodType>>)[key];
  if (!field) return '';
  const inner = field.unwrap();
  if (!(inner instanceof z.ZodNumber)) return '';
  return ` (allowed ${inner.minValue} to ${inner.maxValue})`;
}
