/**
 * SegmentHost over SSM Run Command: the serverless stand-in for Greenplum's gpssh. Each
 * operation sends one `AWS-RunShellScript` command (a script from ./shell) to the
 * segment's EC2 instance and polls its invocation until it ends; a background rebuild
 * (startRebuild) returns once it is sent, and its invocation is polled by jobStatus.
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
import type { FenceReport, HostJob, HostJobStatus, RebuildMethod, SegmentControl, SegmentHost, StopReport } from '../../ports/segments';
import {
  checkShellOptions,
  fenceScript,
  outputTail,
  parseFenceReport,
  parseProgress,
  parseStopReport,
  readProgressScript,
  rebuildAsMirrorScript,
  rebuildOutcome,
  rebuildStateFiles,
  startScript,
  stopScript,
  writeIdentityScript,
  writeMirrorConfigScript,
  type RunAs,
  type ServiceManager,
  type ShellOptions,
  type StartOptions,
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
/** SSM's largest `executionTimeout` of AWS-RunShellScript (48 h), the default of a background rebuild. */
export const MAX_EXECUTION_TIMEOUT_SECONDS = 172800;
/** Default seconds jobStatus waits for the short command that reads a running rebuild's progress file. */
export const DEFAULT_PROGRESS_READ_SECONDS = 10;
/** Prefix of the id of a job run through SSM: `ssm:<instance id>:<command id>:<progress file>`. */
const JOB_ID_PREFIX = 'ssm:';
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
  /**
   * `executionTimeout` of a background rebuild (startRebuild), 1..172800 seconds; default
   * 172800 (48 h, SSM's maximum): a full copy of a large segment can take many hours.
   */
  rebuildTimeoutSeconds?: number;
  /**
   * Seconds jobStatus of a running rebuild waits for the short second command that reads
   * its progress file (1..60, default 10); without an answer in time the status has no progress.
   */
  progressReadSeconds?: number;
  /** Who starts and stops instances on the hosts: pg_ctl (default) or systemd units (see ./shell's ServiceManager). */
  serviceManager?: ServiceManager;
  /**
   * Seconds a whole start, stop, mirror config or identity operation may take, delivery
   * included, before its command is cancelled and it fails (30..900). Set it below the
   * calling Lambda's timeout. Default: delivery and execution timeouts plus a grace.
   */
  operationBudgetSeconds?: number;
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
/** States of an invocation that has not ended. */
const RUNNING_STATUSES = new Set(['Pending', 'InProgress', 'Delayed']);

/** What a job id names. */
interface JobRef {
  instanceId: string;
  commandId: string;
  progressFile: string;
}

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
  private readonly rebuildTimeoutSeconds: number;
  private readonly progressReadSeconds: number;
  private readonly operationBudgetSeconds?: number;

  /** Validates the options; throws ValidationError. */
  constructor(options: SsmSegmentHostOptions = {}) {
    this.client = options.client ?? new SSMClient({ maxAttempts: 5 });
    this.timeoutSeconds = options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
    this.deliveryTimeoutSeconds = options.deliveryTimeoutSeconds ?? DEFAULT_DELIVERY_TIMEOUT_SECONDS;
    this.pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.fenceBudgetSeconds = options.fenceBudgetSeconds ?? DEFAULT_FENCE_BUDGET_SECONDS;
    this.now = options.now ?? Date.now;
    this.control = options.control;
    this.rebuildTimeoutSeconds = options.rebuildTimeoutSeconds ?? MAX_EXECUTION_TIMEOUT_SECONDS;
    this.progressReadSeconds = options.progressReadSeconds ?? DEFAULT_PROGRESS_READ_SECONDS;
    this.operationBudgetSeconds = options.operationBudgetSeconds;
    const issues: string[] = [];
    if (this.operationBudgetSeconds !== undefined && (!Number.isInteger(this.operationBudgetSeconds) || this.operationBudgetSeconds < 30 || this.operationBudgetSeconds > 900)) {
      issues.push(`operationBudgetSeconds must be an integer from 30 to 900, not ${this.operationBudgetSeconds}`);
    }
    // Limits of AWS-RunShellScript's executionTimeout and of SendCommand's TimeoutSeconds.
    if (!Number.isInteger(this.timeoutSeconds) || this.timeoutSeconds < 1 || this.timeoutSeconds > 172800) {
      issues.push(`timeoutSeconds must be an integer from 1 to 172800, not ${this.timeoutSeconds}`);
    }
    if (!Number.isInteger(this.deliveryTimeoutSeconds) || this.deliveryTimeoutSeconds < 30 || this.deliveryTimeoutSeconds > 2592000) {
      issues.push(`deliveryTimeoutSeconds must be an integer from 30 to 2592000, not ${this.deliveryTimeoutSeconds}`);
    }
    if (!Number.isInteger(this.rebuildTimeoutSeconds) || this.rebuildTimeoutSeconds < 1 || this.rebuildTimeoutSeconds > MAX_EXECUTION_TIMEOUT_SECONDS) {
      issues.push(`rebuildTimeoutSeconds must be an integer from 1 to ${MAX_EXECUTION_TIMEOUT_SECONDS}, not ${this.rebuildTimeoutSeconds}`);
    }
    if (!Number.isFinite(this.progressReadSeconds) || this.progressReadSeconds < 1 || this.progressReadSeconds > 60) {
      issues.push(`progressReadSeconds must be from 1 to 60, not ${this.progressReadSeconds}`);
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
      serviceManager: options.serviceManager,
    };
    // Checked now, not at the first operation: a bad service manager is a deployment error.
    if (options.serviceManager !== undefined) checkShellOptions({ serviceManager: options.serviceManager });
  }

  /** Starts the instance with `pg_ctl start -w`; a running instance is left alone. */
  async start(segment: SegmentRow, start: StartOptions = {}): Promise<void> {
    requireInstance(segment);
    await this.run({ name: 'start', segment, script: startScript(segment, this.shell, start) });
  }

  /**
   * Stops the instance with `pg_ctl stop -m <mode>`; no error if it is not running. The
   * report is the script's last `STOP ...` line (pg_controldata after the stop).
   */
  async stop(segment: SegmentRow, mode: 'fast' | 'immediate'): Promise<StopReport> {
    requireInstance(segment);
    const done = await this.run({ name: `stop -m ${mode}`, segment, script: stopScript(segment, mode, this.shell) });
    return parseStopReport(done.StandardOutputContent ?? '');
  }

  /**
   * Rebuilds `mirror` on its host from `primary` (reached at its address and port) by
   * pg_rewind or pg_basebackup, writes its standby config and starts it, in one command
   * that may run `timeoutSeconds`. For a copy that takes longer, use startRebuild.
   */
  async rebuildAsMirror(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<void> {
    requireInstance(mirror);
    const script = rebuildAsMirrorScript(mirror, primary, method, this.shell);
    await this.control?.ensureSlot(primary, mirror.dbid);
    await this.run({ name: `rebuild by ${method}`, segment: mirror, script });
  }

  /**
   * Starts the rebuild in the background: ensures the mirror's slot on the primary, then
   * sends the rebuild script with `executionTimeout` = `rebuildTimeoutSeconds` and returns
   * once SSM accepted it. The script keeps its latest PROGRESS line in a file beside the
   * data directory (./shell's rebuildStateFiles) and its output short, because
   * GetCommandInvocation returns only the first 24,000 characters of stdout and 8,000 of stderr: a
   * progress line a second would fill them within minutes of a copy of hours.
   */
  async startRebuild(mirror: SegmentRow, primary: SegmentRow, method: RebuildMethod): Promise<HostJob> {
    requireInstance(mirror);
    const progressFile = rebuildStateFiles(mirror.datadir).progressFile;
    const script = rebuildAsMirrorScript(mirror, primary, method, { ...this.shell, progressFile });
    await this.control?.ensureSlot(primary, mirror.dbid);
    const instanceId = mirror.instanceId as string;
    const what = `rebuild by ${method} of dbid ${mirror.dbid} (content ${mirror.content}) on ${instanceId}`;
    const startedAt = new Date(this.now()).toISOString();
    const commandId = await this.send(what, instanceId, script, this.rebuildTimeoutSeconds, `fts start rebuild by ${method} dbid ${mirror.dbid} content ${mirror.content}`);
    return { id: `${JOB_ID_PREFIX}${instanceId}:${commandId}:${progressFile}`, dbid: mirror.dbid, startedAt };
  }

  /**
   * Where a background rebuild stands, from its invocation: Pending, InProgress, Delayed
   * (and no invocation yet, within the delivery timeout of the start) are `running`, with
   * the progress file read by a short second command while InProgress; Success is
   * `succeeded`; Failed, TimedOut, Cancelled, Cancelling (and any status SSM may add) are
   * `failed` with the exit code, the parsed RECOVERY line, `wipeRefused` and the tail of stderr.
   * Throws HostCommandError when SSM cannot be asked (the caller retries).
   */
  async jobStatus(job: HostJob): Promise<HostJobStatus> {
    const ref = parseJobId(job);
    const what = `rebuild of dbid ${job.dbid} (command ${ref.commandId} on ${ref.instanceId})`;
    let inv: GetCommandInvocationCommandOutput;
    try {
      inv = await this.client.send(new GetCommandInvocationCommand({ CommandId: ref.commandId, InstanceId: ref.instanceId }));
    } catch (err) {
      if (errorName(err) === 'InvocationDoesNotExist') {
        // Normal right after SendCommand; long after it, SSM has no such command (expired, or another account/region).
        const age = this.now() - Date.parse(job.startedAt);
        if (!(age > (this.deliveryTimeoutSeconds * 1000 + DEADLINE_GRACE_MS))) return { state: 'running' };
        return { state: 'failed', lost: true, message: `${what}: SSM has no invocation of the command ${Math.round(age / 1000)} s after it was sent; start the rebuild again` };
      }
      throw new HostCommandError(`${what}: GetCommandInvocation failed: ${describe(err)}`);
    }
    const status = inv.Status ?? 'Pending';
    if (RUNNING_STATUSES.has(status)) {
      const progress = status === 'InProgress' ? await this.readProgress(ref, job) : undefined;
      return progress ? { state: 'running', progress } : { state: 'running' };
    }
    const stdout = inv.StandardOutputContent ?? '';
    const stderr = inv.StandardErrorContent ?? '';
    // ResponseCode is -1 when the script never exited (not delivered), and the agent reports
    // 137 for a script it stopped itself (timeout, cancel): neither is the script's own status.
    const stopped = status === 'TimedOut' || status === 'Cancelled' || status === 'Cancelling';
    const exitCode = !stopped && inv.ResponseCode !== undefined && inv.ResponseCode >= 0 ? inv.ResponseCode : undefined;
    const outcome = rebuildOutcome(exitCode, stdout, stderr);
    if (status === 'Success') return { state: 'succeeded', exitCode: exitCode ?? 0, ...outcome };
    const detail = inv.StatusDetails && inv.StatusDetails !== status ? ` (${inv.StatusDetails})` : '';
    const why = FAILED_STATUSES.has(status) ? `${status}${detail}` : `ended in status ${status}${detail}`;
    const timeout = status === 'TimedOut' && inv.StatusDetails !== 'DeliveryTimedOut' ? ` after its executionTimeout` : '';
    const tailText = outputTail(stderr);
    return {
      state: 'failed',
      ...(exitCode !== undefined ? { exitCode } : {}),
      // Failed without the script's status: the agent or the host lost it.
      ...(status === 'Failed' && exitCode === undefined ? { lost: true } : {}),
      ...outcome,
      message: `${what}: ${why}${timeout}${exitCode !== undefined ? `, exit code ${exitCode}` : ''}${tailText ? `: ${tailText}` : ''}`,
    };
  }

  /**
   * Cancels the job's command (SSM's agent stops the script and its process tree). No
   * error when it is already over or SSM no longer knows it.
   */
  async cancelJob(job: HostJob): Promise<void> {
    const ref = parseJobId(job);
    try {
      await this.client.send(new CancelCommandCommand({ CommandId: ref.commandId, InstanceIds: [ref.instanceId] }));
    } catch (err) {
      if (errorName(err) === 'InvalidCommandId' || errorName(err) === 'InvalidInstanceId') return;
      throw new HostCommandError(`cancel of the rebuild of dbid ${job.dbid} (command ${ref.commandId} on ${ref.instanceId}) failed: ${describe(err)}`);
    }
  }

  /**
   * The latest PROGRESS line of a running rebuild, read from its progress file by a short
   * command. Best effort: undefined when that command gives no answer in time.
   */
  private async readProgress(ref: JobRef, job: HostJob): Promise<HostJobStatus['progress']> {
    let commandId: string | undefined;
    const deadline = this.now() + this.progressReadSeconds * 1000;
    try {
      commandId = await this.send(
        `progress of the rebuild of dbid ${job.dbid}`,
        ref.instanceId,
        readProgressScript(ref.progressFile),
        // Delivery must be at least 30 s; the script itself is a cat.
        30,
        `fts progress of rebuild dbid ${job.dbid}`,
        30,
      );
      for (;;) {
        await sleep(this.pollIntervalMs);
        if (this.now() > deadline) break;
        let inv: GetCommandInvocationCommandOutput;
        try {
          inv = await this.client.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: ref.instanceId }));
        } catch (err) {
          if (errorName(err) === 'InvocationDoesNotExist') continue;
          break;
        }
        if (inv.Status === 'Success') {
          const reports = parseProgress(inv.StandardOutputContent ?? '');
          return reports[reports.length - 1];
        }
        if (!RUNNING_STATUSES.has(inv.Status ?? 'Pending')) break;
      }
    } catch {
      // The progress is a nicety: the status of the job does not depend on it.
    }
    if (commandId) await this.cancel(commandId, ref.instanceId);
    return undefined;
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

  /** Sends one AWS-RunShellScript command to one instance; returns its id. Throws HostCommandError. */
  private async send(what: string, instanceId: string, script: string, executionTimeoutSeconds: number, comment: string, deliveryTimeoutSeconds = this.deliveryTimeoutSeconds): Promise<string> {
    let commandId: string | undefined;
    try {
      const sent = await this.client.send(
        new SendCommandCommand({
          DocumentName: RUN_SHELL_SCRIPT,
          InstanceIds: [instanceId],
          Parameters: { commands: [script], executionTimeout: [String(executionTimeoutSeconds)] },
          TimeoutSeconds: deliveryTimeoutSeconds,
          // SSM limits comments to 100 characters.
          Comment: comment.slice(0, 100),
        }),
      );
      commandId = sent.Command?.CommandId;
    } catch (err) {
      throw new HostCommandError(`${what}: SendCommand failed: ${describe(err)}`);
    }
    if (!commandId) throw new HostCommandError(`${what}: SendCommand returned no command id`);
    return commandId;
  }

  /** Sends the script, then polls until it ends; throws HostCommandError unless it succeeded. */
  private async run(operation: Operation): Promise<GetCommandInvocationCommandOutput> {
    const op: Operation = { ...operation, budgetSeconds: operation.budgetSeconds ?? this.operationBudgetSeconds };
    const instanceId = op.segment.instanceId as string;
    const what = `${op.name} of dbid ${op.segment.dbid} (content ${op.segment.content}) on ${instanceId}`;
    const commandId = await this.send(
      what,
      instanceId,
      op.script,
      Math.min(this.timeoutSeconds, op.budgetSeconds ?? Infinity),
      `fts ${op.name} dbid ${op.segment.dbid} content ${op.segment.content}`,
    );

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
        // ResponseCode is -1 when the script never exited (not delivered); 137 when the agent stopped it.
        const code = last.Status === 'TimedOut' || last.Status === 'Cancelled' || last.Status === 'Cancelling' ? undefined : last.ResponseCode !== undefined && last.ResponseCode >= 0 ? last.ResponseCode : undefined;
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

/** The SSM command, instance and progress file a job id names; ValidationError for an id this adapter did not make. */
function parseJobId(job: HostJob): JobRef {
  const id = typeof job?.id === 'string' ? job.id : '';
  const m = /^ssm:([^:]+):([^:]+):(\/.*)$/.exec(id);
  if (!m) throw new ValidationError(`job id ${JSON.stringify(id)} is not an SSM job (ssm:<instance id>:<command id>:<progress file>)`);
  return { instanceId: m[1], commandId: m[2], progressFile: m[3] };
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
