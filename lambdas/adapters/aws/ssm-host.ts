/**
 * SegmentHost over SSM Run Command: the serverless stand-in for Greenplum's gpssh. Each
 * operation sends one `AWS-RunShellScript` command (a script from ./shell) to the
 * segment's EC2 instance and polls its invocation until it ends.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  SendCommandCommand,
  SSMClient,
  type GetCommandInvocationCommandOutput,
} from '@aws-sdk/client-ssm';
import { HostCommandError, ValidationError } from '../../core/errors';
import type { SegmentRow } from '../../core/model';
import type { FenceReport, RebuildMethod, SegmentControl, SegmentHost } from '../../ports/segments';
import {
  fenceScript,
  parseFenceReport,
  rebuildAsMirrorScript,
  startScript,
  stopScript,
  writeIdentityScript,
  writeMirrorConfigScript,
  type RunAs,
  type ShellOptions,
} from './shell';

/** SSM document that runs a list of shell commands on Linux. */
export const RUN_SHELL_SCRIPT = 'AWS-RunShellScript';
/** Default seconds a script may run on the host (`executionTimeout`). */
export const DEFAULT_TIMEOUT_SECONDS = 600;
/** Default seconds SSM may take to deliver the command before giving up (`TimeoutSeconds`, at least 30). */
export const DEFAULT_DELIVERY_TIMEOUT_SECONDS = 60;
/** Default seconds a whole fence may take before it is cancelled and left owed. */
export const DEFAULT_FENCE_BUDGET_SECONDS = 30;
/** Default milliseconds between two GetCommandInvocation calls. */
export const DEFAULT_POLL_INTERVAL_MS = 1000;
/** Characters of stderr kept in a HostCommandError. */
const OUTPUT_TAIL_CHARS = 2000;
/** Extra wait past delivery + execution timeouts before we stop polling: SSM reports the end late. */
const DEADLINE_GRACE_MS = 30_000;

/** Construction options; all optional. */
export interface SsmSegmentHostOptions {
  /** Default: a client with the SDK's standard retry, 5 attempts. */
  client?: SSMClient;
  /** OS user that owns PostgreSQL; default `gpadmin`. */
  osUser?: string;
  /** PostgreSQL bin directory on the hosts; default `/usr/lib/postgresql/15/bin`. */
  pgBin?: string;
  /** `sudo` (default) or `runuser`: SSM runs scripts as root. */
  runAs?: Exclude<RunAs, 'none'>;
  /** Role the mirror connects to its primary as; default the OS user. */
  replicationUser?: string;
  /**
   * Seconds a script may run on the host (1..172800), default 600. A `pg_basebackup` of
   * a large segment needs more; `pg_ctl -w` waits at most this long too.
   */
  timeoutSeconds?: number;
  /** Seconds SSM may take to start the command on the host (30..2592000), default 60. */
  deliveryTimeoutSeconds?: number;
  /** Milliseconds between polls, default 1000. */
  pollIntervalMs?: number;
  /** Seconds a fence gives `pg_ctl stop -m immediate` before it kills the instance; default 10. */
  fenceTimeoutSeconds?: number;
  /**
   * Seconds a whole fence may take, delivery included, before the command is cancelled
   * and the fence reported failed (it stays owed in the catalog); default 30. It must end
   * well inside the calling Lambda's timeout: a host that is hung or partitioned keeps a
   * command Pending until SSM's delivery timeout, and the workflow must go on meanwhile.
   */
  fenceBudgetSeconds?: number;
  /** Clock for the polling deadline (tests); default Date.now. */
  now?: () => number;
  /**
   * Creates the mirror's slot on the primary before a rebuild (a PgSegmentControl), so
   * the primary keeps the WAL the rebuilt mirror needs. Without it the slot must exist.
   */
  control?: Pick<SegmentControl, 'ensureSlot'>;
}

/** What one SSM command is about, for comments, messages and errors. */
interface Operation {
  /** `start`, `stop`, `fence`, `rebuild`, `mirror config`, `identity`. */
  name: string;
  segment: SegmentRow;
  script: string;
  /** Seconds the whole operation may take (default: delivery + execution timeouts + a grace). */
  budgetSeconds?: number;
}

/** Terminal states that mean the script did not succeed. `Cancelling` ends as `Cancelled`. */
const FAILED_STATUSES = new Set(['Failed', 'TimedOut', 'Cancelled', 'Cancelling']);

/** Runs segment start/stop/rebuild scripts on EC2 hosts through SSM Run Command. */
export class SsmSegmentHost implements SegmentHost {
  private readonly client: SSMClient;
  private readonly shell: ShellOptions;
  private readonly timeoutSeconds: number;
  private readonly deliveryTimeoutSeconds: number;
  private readonly pollIntervalMs: number;
  private readonly fenceBudgetSeconds: number;
  private readonly now: () => number;
  private readonly control?: Pick<SegmentControl, 'ensureSlot'>;

  /** Validates the options; throws ValidationError. */
  constructor(options: SsmSegmentHostOptions = {}) {
    this.client = options.client ?? new SSMClient({ maxAttempts: 5 });
    this.timeoutSeconds = options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
    this.deliveryTimeoutSeconds = options.deliveryTimeoutSeconds ?? DEFAULT_DELIVERY_TIMEOUT_SECONDS;
    this.pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.fenceBudgetSeconds = options.fenceBudgetSeconds ?? DEFAULT_FENCE_BUDGET_SECONDS;
    this.now = options.now ?? Date.now;
    this.control = options.control;
    const issues: string[] = [];
    // Limits of AWS-RunShellScript's executionTimeout and of SendCommand's TimeoutSeconds.
    if (!Number.isInteger(this.timeoutSeconds) || this.timeoutSeconds < 1 || this.timeoutSeconds > 172800) {
      issues.push(`timeoutSeconds must be an integer from 1 to 172800, not ${this.timeoutSeconds}`);
    }
    if (!Number.isInteger(this.deliveryTimeoutSeconds) || this.deliveryTimeoutSeconds < 30 || this.deliveryTimeoutSeconds > 2592000) {
      issues.push(`deliveryTimeoutSeconds must be an integer from 30 to 2592000, not ${this.deliveryTimeoutSeconds}`);
    }
    if (!Number.isFinite(this.pollIntervalMs) || this.pollIntervalMs < 0) issues.push(`pollIntervalMs must be >= 0, not ${this.pollIntervalMs}`);
    const fenceStop = options.fenceTimeoutSeconds ?? 10;
    if (!Number.isInteger(this.fenceBudgetSeconds) || this.fenceBudgetSeconds < fenceStop + 5 || this.fenceBudgetSeconds > 600) {
      issues.push(`fenceBudgetSeconds must be an integer from fenceTimeoutSeconds + 5 (${fenceStop + 5}) to 600, not ${this.fenceBudgetSeconds}`);
    }
    if (issues.length > 0) throw new ValidationError(`invalid SSM segment host options: ${issues.join('; ')}`, issues);
    this.shell = {
      osUser: options.osUser,
      pgBin: options.pgBin,
      runAs: options.runAs ?? 'sudo',
      replicationUser: options.replicationUser,
      pgCtlTimeoutSeconds: this.timeoutSeconds,
      fenceTimeoutSeconds: options.fenceTimeoutSeconds,
    };
  }

  /** Starts the instance with `pg_ctl start -w`; a running instance is left alone. */
  async start(segment: SegmentRow): Promise<void> {
    requireInstance(segment);
    await this.run({ name: 'start', segment, script: startScript(segment, this.shell) });
  }

  /** Stops the instance with `pg_ctl stop -m <mode>`; no error if it is not running. */
  async stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<void> {
    requireInstance(segment);
    await this.run({ name: `stop -m ${mode}`, segment, script: stopScript(segment, mode, this.shell) });
  }

  /**
   * Rebuilds `mirror` on its host from `primary` (reached at its address and port) by
   * pg_rewind or pg_basebackup, writes its standby config and starts it, in one command.
   */
  async rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void> {
    requireInstance(mirror);
    await this.control?.ensureSlot(primary, mirror.dbid);
    await this.run({ name: `rebuild by ${method}`, segment: mirror, script: rebuildAsMirrorScript(mirror, primary, method, this.shell) });
  }

  /**
   * Writes `primary_conninfo`, `primary_slot_name`, the mirror's own `fts.dbid` and
   * `fts.content`, and `standby.signal` on the mirror's host.
   */
  async writeMirrorConfig(mirror: SegmentRow, primary: SegmentRow): Promise<void> {
    requireInstance(mirror);
    await this.run({ name: 'mirror config', segment: mirror, script: writeMirrorConfigScript(mirror, primary, this.shell) });
  }

  /** Writes the instance's `fts.dbid` and `fts.content` into its postgresql.auto.conf (e.g. after initdb). */
  async writeIdentity(segment: SegmentRow): Promise<void> {
    requireInstance(segment);
    await this.run({ name: 'identity', segment, script: writeIdentityScript(segment, this.shell) });
  }

  /**
   * Fences the instance on its host (./shell's fenceScript): standby config pointing at
   * `newPrimary` first, then an immediate stop, then SIGKILL for what did not stop. The
   * report is the script's last `FENCE ...` line of standard output.
   */
  async fence(segment: SegmentRow, newPrimary: SegmentRow | undefined): Promise<FenceReport> {
    requireInstance(segment);
    const done = await this.run({ name: 'fence', segment, script: fenceScript(segment, newPrimary, this.shell), budgetSeconds: this.fenceBudgetSeconds });
    return parseFenceReport(done.StandardOutputContent ?? '');
  }

  /** Sends the script, then polls until it ends; throws HostCommandError unless it succeeded. */
  private async run(op: Operation): Promise<GetCommandInvocationCommandOutput> {
    const instanceId = op.segment.instanceId as string;
    const what = `${op.name} of dbid ${op.segment.dbid} (content ${op.segment.content}) on ${instanceId}`;
    let commandId: string | undefined;
    try {
      const sent = await this.client.send(
        new SendCommandCommand({
          DocumentName: RUN_SHELL_SCRIPT,
          InstanceIds: [instanceId],
          Parameters: { commands: [op.script], executionTimeout: [String(Math.min(this.timeoutSeconds, op.budgetSeconds ?? Infinity))] },
          TimeoutSeconds: this.deliveryTimeoutSeconds,
          // SSM limits comments to 100 characters.
          Comment: `fts ${op.name} dbid ${op.segment.dbid} content ${op.segment.content}`.slice(0, 100),
        }),
      );
      commandId = sent.Command?.CommandId;
    } catch (err) {
      throw new HostCommandError(`${what}: SendCommand failed: ${describe(err)}`);
    }
    if (!commandId) throw new HostCommandError(`${what}: SendCommand returned no command id`);

    const budgetMs = op.budgetSeconds !== undefined ? op.budgetSeconds * 1000 : (this.deliveryTimeoutSeconds + this.timeoutSeconds) * 1000 + DEADLINE_GRACE_MS;
    const deadline = this.now() + budgetMs;
    let last: GetCommandInvocationCommandOutput | undefined;
    for (;;) {
      // SSM needs a moment before the invocation exists; polling at once only wastes a call.
      await sleep(this.pollIntervalMs);
      if (this.now() > deadline) {
        await this.cancel(commandId, instanceId);
        throw new HostCommandError(
          `${what}: no result from command ${commandId} within ${budgetMs / 1000} s (last status ${last?.Status ?? 'none'}); cancelled it`,
          undefined,
          tail(last?.StandardErrorContent),
        );
      }
      try {
        last = await this.client.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }));
      } catch (err) {
        // Normal right after SendCommand: the invocation is not registered yet.
        if (errorName(err) === 'InvocationDoesNotExist') continue;
        throw new HostCommandError(`${what}: GetCommandInvocation of command ${commandId} failed: ${describe(err)}`);
      }
      const status = last.Status ?? 'Pending';
      if (status === 'Success') return last;
      if (FAILED_STATUSES.has(status)) {
        // ResponseCode is -1 when the script never exited (timeout, cancel, not delivered).
        const code = last.ResponseCode !== undefined && last.ResponseCode >= 0 ? last.ResponseCode : undefined;
        const stderr = tail(last.StandardErrorContent);
        const detail = last.StatusDetails && last.StatusDetails !== status ? ` (${last.StatusDetails})` : '';
        throw new HostCommandError(
          `${what}: command ${commandId} ${status}${detail}${code !== undefined ? `, exit code ${code}` : ''}${stderr ? `: ${lastLine(stderr)}` : ''}`,
          code,
          stderr,
        );
      }
      // Pending, InProgress, Delayed: keep polling.
    }
  }

  /** Best effort: a command we gave up on should not go on changing the host. */
  private async cancel(commandId: string, instanceId: string): Promise<void> {
    try {
      await this.client.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }));
    } catch {
      // The command may have ended meanwhile; the caller already gets a HostCommandError.
    }
  }
}

/** A row without an EC2 instance id cannot be reached through SSM: reject before any call. */
function requireInstance(segment: SegmentRow): void {
  if (!segment.instanceId) {
    throw new ValidationError(`segment dbid ${segment.dbid} (content ${segment.content}) has no instanceId; SSM cannot reach its host ${segment.hostname}`);
  }
}

function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Last characters of a command's output, where the error usually is. */
function tail(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const trimmed = text.trimEnd();
  return trimmed.length > OUTPUT_TAIL_CHARS ? trimmed.slice(-OUTPUT_TAIL_CHARS) : trimmed;
}

function lastLine(text: string): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines[lines.length - 1] ?? '';
}
