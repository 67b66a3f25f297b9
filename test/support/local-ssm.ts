/**
 * A local stand-in for SSM Run Command, so the shipped SsmSegmentHost (and the bundled
 * Lambda code that builds one) can run its host scripts on this machine: an HTTP server
 * on a free loopback port speaking SSM's JSON 1.1 protocol (`X-Amz-Target:
 * AmazonSSM.<Operation>`, JSON bodies, errors as status 400 with `{"__type", "message"}`)
 * for exactly the calls the adapter makes: SendCommand of `AWS-RunShellScript`,
 * GetCommandInvocation and CancelCommand. Point the SDK at it with AWS_ENDPOINT_URL_SSM.
 *
 * Each invocation runs as the SSM agent (amazon-ssm-agent, agent/executers) runs it on a
 * Linux host: the `commands` parameter joined with newlines into a script file, run
 * (here with bash, as this process's user) in a process group of its own, stdout and
 * stderr captured through pipes; it ends when the script exited and its pipes closed.
 * GetCommandInvocation then gives the first 24,000 characters of stdout and the first
 * 8,000 of stderr (both empty while it runs), and the status the agent reports: exit 0
 * Success; any other exit code Failed with that ResponseCode; killed by a signal not
 * sent here Failed with ResponseCode -1; past `executionTimeout` the whole group is
 * killed (SIGKILL) and it is TimedOut (StatusDetails ExecutionTimedOut); CancelCommand
 * kills the group too: Cancelling, then Cancelled. A script stopped so reports
 * ResponseCode 137, the agent's CommandStoppedPreemptivelyExitCode on Linux; one
 * cancelled before it started reports -1.
 *
 * Any instance id of EC2's format is accepted, registered or not: every invocation runs
 * here. Requests are validated as SSM validates them (document, parameters and their
 * patterns, TimeoutSeconds, Comment), so a request SSM would refuse fails here too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/** Characters of stdout GetCommandInvocation returns (the agent's MaxStdoutLength). */
export const MAX_STDOUT_CHARS = 24_000;
/** Characters of stderr GetCommandInvocation returns (the agent's MaxStderrLength). */
export const MAX_STDERR_CHARS = 8_000;
/** ResponseCode of a script the agent killed at its timeout or on a cancel (Linux). */
export const STOPPED_PREEMPTIVELY_EXIT_CODE = 137;
/** The only document served. */
const DOCUMENT = 'AWS-RunShellScript';
const PLUGIN = 'aws:runShellScript';
/** AWS-RunShellScript's executionTimeout: default and allowed values (its allowedPattern: 1 to 172800). */
const DEFAULT_EXECUTION_TIMEOUT = 3600;
const EXECUTION_TIMEOUT_PATTERN = /^(([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800))$/;
/** SSM's InstanceId pattern. */
const INSTANCE_ID_PATTERN = /(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)/;
/** PATH of the agent's systemd unit, before this machine's own PATH. */
const AGENT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Status of an invocation, as GetCommandInvocation reports it. */
export type LocalSsmStatus = 'Pending' | 'InProgress' | 'Success' | 'Failed' | 'TimedOut' | 'Cancelling' | 'Cancelled';

/** One command on one instance, as the server has it. */
export interface LocalSsmInvocation {
  commandId: string;
  instanceId: string;
  comment: string;
  /** The script run: the `commands` joined as the agent joins them. */
  script: string;
  executionTimeoutSeconds: number;
  status: LocalSsmStatus;
  statusDetails: string;
  /** -1 until the script ended. */
  responseCode: number;
  requestedAt: Date;
  startedAt?: Date;
  endedAt?: Date;
  /** Once ended: what GetCommandInvocation returns (truncated). */
  stdout: string;
  stderr: string;
}

/** Options of {@link startLocalSsm}; all optional. */
export interface LocalSsmOptions {
  /**
   * Milliseconds after SendCommand before an invocation exists and starts: until then
   * GetCommandInvocation answers InvocationDoesNotExist, as SSM does right after a send.
   * Default 0.
   */
  registrationDelayMs?: number;
  /** Extra environment variables of every script. */
  env?: Record<string, string>;
  /**
   * Puts a `sudo` and a `runuser` first on the scripts' PATH that run the command as this
   * process's user when it is the user asked for (and fail otherwise): for a test run
   * as the PostgreSQL OS user, not root, where the real ones cannot switch users.
   */
  switchUserToSelf?: boolean;
  /** Region reported to scripts (AWS_SSM_REGION_NAME); default AWS_REGION or us-east-1. */
  region?: string;
}

/** A running local SSM endpoint. */
export interface LocalSsm {
  /** For AWS_ENDPOINT_URL_SSM or an SSMClient's `endpoint`. */
  endpoint: string;
  /** Every invocation so far, oldest first (copies). */
  invocations(): LocalSsmInvocation[];
  /** Invocations not ended yet. */
  running(): number;
  /** Kills every script still running (its process group), stops the server, removes its files. Never throws. */
  close(): Promise<void>;
}

interface Invocation extends LocalSsmInvocation {
  registered: boolean;
  cancelRequested: boolean;
  timedOut: boolean;
  child?: ChildProcess;
  timers: NodeJS.Timeout[];
  ended: Promise<void>;
  end: () => void;
}

/** An error SSM answers with: status 400 and its type. */
class SsmError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Starts the endpoint on a free loopback port. */
export async function startLocalSsm(options: LocalSsmOptions = {}): Promise<LocalSsm> {
  const root = mkdtempSync(join(tmpdir(), 'fts-local-ssm-'));
  const byCommand = new Map<string, Invocation[]>();
  const all: Invocation[] = [];
  const region = options.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const registrationDelayMs = options.registrationDelayMs ?? 0;
  let closing = false;

  let pathPrefix = '';
  if (options.switchUserToSelf) {
    const bin = join(root, 'bin');
    mkdirSync(bin);
    for (const name of ['sudo', 'runuser']) {
      writeFileSync(join(bin, name), switchUserShim(name), { mode: 0o755 });
      chmodSync(join(bin, name), 0o755);
    }
    pathPrefix = `${bin}:`;
  }
  const scriptEnv = (instanceId: string): NodeJS.ProcessEnv => ({
    PATH: `${pathPrefix}${AGENT_PATH}${process.env.PATH ? `:${process.env.PATH}` : ''}`,
    HOME: homedir(),
    AWS_SSM_INSTANCE_ID: instanceId,
    AWS_SSM_REGION_NAME: region,
    ...options.env,
  });

  const finish = (inv: Invocation, status: LocalSsmStatus, statusDetails: string, responseCode: number, out = '', err = '') => {
    if (inv.endedAt) return;
    for (const t of inv.timers) clearTimeout(t);
    Object.assign(inv, { status, statusDetails, responseCode, endedAt: new Date(), stdout: out.slice(0, MAX_STDOUT_CHARS), stderr: err.slice(0, MAX_STDERR_CHARS) });
    inv.end();
  };

  const killGroup = (inv: Invocation) => {
    const pid = inv.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };

  const start = (inv: Invocation) => {
    inv.registered = true;
    if (inv.cancelRequested || closing) return finish(inv, 'Cancelled', 'Cancelled', -1);
    const dir = join(root, inv.instanceId, inv.commandId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const scriptPath = join(dir, '_script.sh');
    writeFileSync(scriptPath, inv.script, { mode: 0o700 });
    let out = '';
    let err = '';
    const child = spawn('bash', [scriptPath], { cwd: dir, env: scriptEnv(inv.instanceId), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    inv.child = child;
    Object.assign(inv, { status: 'InProgress', statusDetails: 'InProgress', startedAt: new Date() });
    // Only the first characters are ever returned; a chatty script must not fill this process's memory.
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (out.length <= MAX_STDOUT_CHARS) out += d;
    });
    child.stderr.on('data', (d: string) => {
      if (err.length <= MAX_STDERR_CHARS) err += d;
    });
    child.once('error', (e) => finish(inv, 'Failed', 'Failed', 1, out, `${err}${e.message}\n`));
    // The agent waits for the script's exit and the end of its output pipes, or stops waiting when it kills the script.
    child.once('close', (code, signal) => {
      if (inv.timedOut) return finish(inv, 'TimedOut', 'ExecutionTimedOut', STOPPED_PREEMPTIVELY_EXIT_CODE, out, err);
      if (inv.cancelRequested) return finish(inv, 'Cancelled', 'Cancelled', STOPPED_PREEMPTIVELY_EXIT_CODE, out, err);
      if (code === 0) return finish(inv, 'Success', 'Success', 0, out, err);
      return finish(inv, 'Failed', 'Failed', signal !== null || code === null ? -1 : code, out, err);
    });
    inv.timers.push(
      setTimeout(() => {
        inv.timedOut = true;
        killGroup(inv);
        // A process that left the group may hold the pipes: the agent does not wait for them.
        inv.timers.push(setTimeout(() => finish(inv, 'TimedOut', 'ExecutionTimedOut', STOPPED_PREEMPTIVELY_EXIT_CODE, out, err), 1000).unref());
      }, inv.executionTimeoutSeconds * 1000).unref(),
    );
  };

  const operations: Record<string, (input: Record<string, unknown>) => unknown> = {
    SendCommand(input) {
      const documentName = input.DocumentName;
      if (documentName !== DOCUMENT) throw new SsmError('InvalidDocument', `document ${JSON.stringify(documentName)} is not served here (only ${DOCUMENT})`);
      if (input.Targets !== undefined) throw new SsmError('InvalidParameters', 'Targets are not served here: name the InstanceIds');
      const instanceIds = input.InstanceIds;
      if (!Array.isArray(instanceIds) || instanceIds.length < 1 || instanceIds.length > 50) throw new SsmError('ValidationException', 'InstanceIds must name 1 to 50 instances');
      for (const id of instanceIds) if (typeof id !== 'string' || !INSTANCE_ID_PATTERN.test(id)) throw new SsmError('InvalidInstanceId', `${JSON.stringify(id)} is not an instance id`);
      const { commands, executionTimeout } = parameters(input.Parameters);
      const timeoutSeconds = input.TimeoutSeconds;
      if (timeoutSeconds !== undefined && !(Number.isInteger(timeoutSeconds) && (timeoutSeconds as number) >= 30 && (timeoutSeconds as number) <= 2592000)) {
        throw new SsmError('ValidationException', `1 validation error detected: Value '${String(timeoutSeconds)}' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000`);
      }
      const comment = input.Comment ?? '';
      if (typeof comment !== 'string' || comment.length > 100) throw new SsmError('ValidationException', "1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100");
      const commandId = randomUUID();
      const requestedAt = new Date();
      const script = `${commands.join('\n')}\n`;
      const invocations = (instanceIds as string[]).map((instanceId) => {
        let end!: () => void;
        const ended = new Promise<void>((resolve) => (end = resolve));
        const inv: Invocation = {
          commandId, instanceId, comment, script, executionTimeoutSeconds: executionTimeout,
          status: 'Pending', statusDetails: 'Pending', responseCode: -1, requestedAt, stdout: '', stderr: '',
          registered: false, cancelRequested: false, timedOut: false, timers: [], ended, end,
        };
        return inv;
      });
      byCommand.set(commandId, invocations);
      all.push(...invocations);
      for (const inv of invocations) {
        if (registrationDelayMs > 0) inv.timers.push(setTimeout(() => start(inv), registrationDelayMs).unref());
        else start(inv);
      }
      const parametersOut: Record<string, string[]> = { commands, executionTimeout: [String(executionTimeout)] };
      return {
        Command: {
          CommandId: commandId,
          DocumentName: DOCUMENT,
          DocumentVersion: '$DEFAULT',
          Comment: comment,
          ExpiresAfter: requestedAt.getTime() / 1000 + ((timeoutSeconds as number | undefined) ?? 3600),
          Parameters: parametersOut,
          InstanceIds: instanceIds,
          Targets: [],
          RequestedDateTime: requestedAt.getTime() / 1000,
          Status: 'Pending',
          StatusDetails: 'Pending',
          TargetCount: instanceIds.length,
          CompletedCount: 0,
          ErrorCount: 0,
          DeliveryTimedOutCount: 0,
          MaxConcurrency: '50',
          MaxErrors: '0',
          TimeoutSeconds: timeoutSeconds ?? 3600,
        },
      };
    },

    GetCommandInvocation(input) {
      const commandId = input.CommandId;
      const instanceId = input.InstanceId;
      if (typeof commandId !== 'string' || commandId.length !== 36) throw new SsmError('ValidationException', "1 validation error detected: Value at 'commandId' failed to satisfy constraint: Member must have length 36");
      if (typeof instanceId !== 'string' || !INSTANCE_ID_PATTERN.test(instanceId)) throw new SsmError('InvalidInstanceId', `${JSON.stringify(instanceId)} is not an instance id`);
      if (input.PluginName !== undefined && input.PluginName !== PLUGIN) throw new SsmError('InvalidPluginName', `the document has no plugin ${JSON.stringify(input.PluginName)}`);
      const inv = byCommand.get(commandId)?.find((i) => i.instanceId === instanceId);
      if (!inv || !inv.registered) throw new SsmError('InvocationDoesNotExist', '');
      const ended = inv.endedAt !== undefined;
      const elapsed = inv.startedAt ? ((inv.endedAt ?? new Date()).getTime() - inv.startedAt.getTime()) / 1000 : undefined;
      return {
        CommandId: inv.commandId,
        InstanceId: inv.instanceId,
        Comment: inv.comment,
        DocumentName: DOCUMENT,
        DocumentVersion: '$DEFAULT',
        PluginName: PLUGIN,
        ResponseCode: inv.responseCode,
        ExecutionStartDateTime: inv.startedAt?.toISOString() ?? '',
        ExecutionElapsedTime: elapsed !== undefined ? `PT${elapsed.toFixed(3)}S` : '',
        ExecutionEndDateTime: inv.endedAt?.toISOString() ?? '',
        Status: inv.status,
        StatusDetails: inv.statusDetails,
        StandardOutputContent: ended ? inv.stdout : '',
        StandardOutputUrl: '',
        StandardErrorContent: ended ? inv.stderr : '',
        StandardErrorUrl: '',
        CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
      };
    },

    CancelCommand(input) {
      const commandId = input.CommandId;
      if (typeof commandId !== 'string' || commandId.length !== 36) throw new SsmError('ValidationException', "1 validation error detected: Value at 'commandId' failed to satisfy constraint: Member must have length 36");
      const invocations = byCommand.get(commandId);
      if (!invocations) throw new SsmError('InvalidCommandId', '');
      const named = input.InstanceIds;
      if (named !== undefined && (!Array.isArray(named) || named.some((id) => !invocations.some((i) => i.instanceId === id)))) throw new SsmError('InvalidInstanceId', '');
      for (const inv of invocations) {
        if (named && !(named as string[]).includes(inv.instanceId)) continue;
        if (inv.endedAt) continue; // cancelling what has ended does nothing
        inv.cancelRequested = true;
        if (!inv.child) continue; // not started yet: it ends Cancelled when its start comes
        Object.assign(inv, { status: 'Cancelling', statusDetails: 'Cancelling' });
        killGroup(inv);
      }
      return {};
    },
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => answer(req, Buffer.concat(chunks).toString('utf8'), res));
  });

  const answer = (req: IncomingMessage, body: string, res: ServerResponse) => {
    const send = (status: number, payload: unknown) => {
      const text = JSON.stringify(payload);
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID() });
      res.end(text);
    };
    const fail = (e: SsmError) => send(400, { __type: e.type, message: e.message });
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('AmazonSSM.') ? operations[target.slice('AmazonSSM.'.length)] : undefined;
    if (req.method !== 'POST' || !operation) return fail(new SsmError('UnknownOperationException', `${target || 'no X-Amz-Target'} is not served here`));
    if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 ')) return fail(new SsmError('MissingAuthenticationTokenException', 'the request is not signed'));
    let input: unknown;
    try {
      input = JSON.parse(body || '{}');
    } catch {
      return fail(new SsmError('SerializationException', 'the body is not JSON'));
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) return fail(new SsmError('SerializationException', 'the body is not a JSON object'));
    try {
      send(200, operation(input as Record<string, unknown>));
    } catch (e) {
      if (e instanceof SsmError) return fail(e);
      send(500, { __type: 'InternalServerError', message: String(e) });
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });

  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    invocations: () => all.map(({ commandId, instanceId, comment, script, executionTimeoutSeconds, status, statusDetails, responseCode, requestedAt, startedAt, endedAt, stdout, stderr }) => ({
      commandId, instanceId, comment, script, executionTimeoutSeconds, status, statusDetails, responseCode, requestedAt, startedAt, endedAt, stdout, stderr,
    })),
    running: () => all.filter((i) => !i.endedAt).length,
    async close() {
      closing = true;
      for (const inv of all) {
        if (inv.endedAt) continue;
        inv.cancelRequested = true;
        killGroup(inv);
        if (!inv.child) finish(inv, 'Cancelled', 'Cancelled', -1);
      }
      // A killed group's pipes close at once; a process that left the group is not waited for long.
      await Promise.race([Promise.all(all.map((i) => i.ended)), new Promise((r) => setTimeout(r, 5000).unref())]);
      for (const inv of all) {
        finish(inv, 'Cancelled', 'Cancelled', STOPPED_PREEMPTIVELY_EXIT_CODE);
        // Pipes a process outside the group still holds would keep this process alive.
        inv.child?.stdout?.destroy();
        inv.child?.stderr?.destroy();
      }
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The `commands` and `executionTimeout` of AWS-RunShellScript's parameters, validated as SSM does. */
function parameters(value: unknown): { commands: string[]; executionTimeout: number } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SsmError('InvalidParameters', 'Parameters are required: commands');
  const p = value as Record<string, unknown>;
  const unknown = Object.keys(p).filter((k) => !['commands', 'executionTimeout', 'workingDirectory'].includes(k));
  if (unknown.length) throw new SsmError('InvalidParameters', `document ${DOCUMENT} has no parameter ${unknown.join(', ')}`);
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (!strings(p.commands) || p.commands.length === 0) throw new SsmError('InvalidParameters', 'parameter commands must be a non-empty list of strings');
  if (p.workingDirectory !== undefined && (!strings(p.workingDirectory) || p.workingDirectory.some((d) => d !== ''))) {
    throw new SsmError('InvalidParameters', 'a workingDirectory is not served here');
  }
  let executionTimeout = DEFAULT_EXECUTION_TIMEOUT;
  if (p.executionTimeout !== undefined) {
    if (!strings(p.executionTimeout) || p.executionTimeout.length !== 1 || !EXECUTION_TIMEOUT_PATTERN.test(p.executionTimeout[0])) {
      throw new SsmError('InvalidParameters', `parameter executionTimeout ${JSON.stringify(p.executionTimeout)} must be one whole number of seconds from 1 to 172800`);
    }
    executionTimeout = Number(p.executionTimeout[0]);
  }
  return { commands: p.commands, executionTimeout };
}

/** `sudo -n -u USER -- cmd...` or `runuser -u USER -- cmd...` that only "switches" to this process's own user. */
function switchUserShim(name: string): string {
  return [
    '#!/bin/bash',
    `# ${name} of the local SSM endpoint: the scripts already run as the PostgreSQL OS user`,
    'user=',
    'while [ $# -gt 0 ]; do',
    '  case "$1" in',
    '    -n) shift ;;',
    '    -u) user="$2"; shift 2 ;;',
    '    --) shift; break ;;',
    '    *) break ;;',
    '  esac',
    'done',
    `if [ -z "$user" ] || [ "$user" != "$(id -un)" ]; then echo "${name} (local SSM): cannot switch from $(id -un) to \${user:-nobody}" >&2; exit 1; fi`,
    'exec "$@"',
    '',
  ].join('\n');
}
