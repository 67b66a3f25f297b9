/**
 * `ftsctl initstandby`: Greenplum's `gpinitstandby` flags mapped onto the InitStandby
 * workflow's console input (lambdas/workflows/init-standby.ts), and the text printed for
 * a run. Bad flags are refused here, before anything is read or started.
 */
import { InvalidArgumentError } from 'commander';
import { INIT_STANDBY_SPEC } from '../lambdas/workflows/init-standby';
import { zodIssues } from '../lambdas/workflows/spec';
import { LOCAL_ADDRESS } from './local-cluster';

/** `ftsctl initstandby` options, as commander parses them. */
export interface InitstandbyOptions {
  /** `-s`: the standby's host. */
  s?: string;
  /** `-P`: the standby's port. */
  P?: number;
  /** `-S`, `--datadir`: the standby's data directory. */
  datadir?: string;
  /** `-r`: remove the standby. */
  r?: boolean;
  address?: string;
  instanceId?: string;
  availabilityZone?: string;
  allowSameZone?: boolean;
  /** `--poll`: seconds between two looks at the copy. */
  poll?: number;
}

/** The flag that sets each input key, for messages. */
const FLAG_OF: Readonly<Record<string, string>> = {
  hostname: '-s',
  port: '-P',
  datadir: '--datadir',
  address: '--address',
  instanceId: '--instance-id',
  availabilityZone: '--availability-zone',
  allowSameZone: '--allow-same-zone',
  remove: '-r',
  pollSeconds: '--poll',
};

/** `-P`: a port, 1-65535. */
export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value) || n < 1 || n > 65535) throw new InvalidArgumentError(`-P must be a port (1-65535), got "${value}"`);
  return n;
}

/**
 * The workflow and input `ftsctl initstandby` starts, as one would paste it in the
 * console. `-s` adds a standby (`-P`, `--datadir`, `--address` and the placement flags
 * say where), `-r` removes it and takes none of them. Without `--address` the standby's
 * address is 127.0.0.1 on a local cluster (`local`: every host of it runs on this
 * machine), else its hostname.
 * `catalogVersion` is left out when undefined (a check of the flags alone).
 * InvalidArgumentError names the flag at fault; nothing is started.
 */
export function initstandbyRequest(
  clusterId: string,
  catalogVersion: number | undefined,
  o: InitstandbyOptions,
  where: { local?: boolean } = {},
): { kind: 'InitStandby'; input: Record<string, unknown> } {
  const placeFlags = (
    [
      ['-s', o.s],
      ['-P', o.P],
      ['--datadir', o.datadir],
      ['--address', o.address],
      ['--instance-id', o.instanceId],
      ['--availability-zone', o.availabilityZone],
      ['--allow-same-zone', o.allowSameZone || undefined],
    ] as const
  ).filter(([, v]) => v !== undefined);
  const common = { clusterId, ...(catalogVersion !== undefined ? { catalogVersion } : {}) };
  let input: Record<string, unknown>;
  if (o.r) {
    if (placeFlags.length) throw new InvalidArgumentError(`-r removes the standby the catalog names: it does not go with ${placeFlags.map(([f]) => f).join(', ')}`);
    input = { ...common, remove: true };
  } else {
    if (o.s === undefined) throw new InvalidArgumentError('initstandby needs -s <host> (add a standby on that host) or -r (remove the standby)');
    if (o.datadir !== undefined && !o.datadir.startsWith('/')) throw new InvalidArgumentError(`--datadir must be an absolute path, got "${o.datadir}"`);
    const address = o.address ?? (where.local ? LOCAL_ADDRESS : undefined);
    input = {
      ...common,
      hostname: o.s,
      ...(address !== undefined ? { address } : {}),
      ...(o.P !== undefined ? { port: o.P } : {}),
      ...(o.datadir !== undefined ? { datadir: o.datadir } : {}),
      ...(o.instanceId !== undefined ? { instanceId: o.instanceId } : {}),
      ...(o.availabilityZone !== undefined ? { availabilityZone: o.availabilityZone } : {}),
      ...(o.allowSameZone ? { allowSameZone: true } : {}),
      ...(o.poll !== undefined ? { pollSeconds: o.poll } : {}),
    };
  }
  // The spec's own checks, said in flags: what the console would refuse is refused here.
  const parsed = INIT_STANDBY_SPEC.input.safeParse(input);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error).map((issue) => issue.replace(/^([A-Za-z]+):/, (m, key: string) => (FLAG_OF[key] ? `${FLAG_OF[key]}:` : m)));
    throw new InvalidArgumentError(`initstandby: ${issues.join('; ')}`);
  }
  return { kind: 'InitStandby', input };
}

/** The parts of a finished run `ftsctl initstandby` prints (WorkflowRunResult of bin/ftsctl.ts). */
export interface InitstandbyRunResult {
  executionName: string;
  executionArn?: string;
  status: string;
  output?: unknown;
  error?: string;
  cause?: string;
}

/** The text `ftsctl initstandby` prints: what happened, in a DBA's words. */
export function formatInitstandby(r: InitstandbyRunResult): string {
  const out = (r.output ?? {}) as { plan?: { warnings?: string[]; action?: string }; finish?: { message?: string }; removeStandby?: { message?: string }; stopStandby?: { warning?: string } };
  const lines: string[] = [];
  if (r.status === 'SUCCEEDED') {
    lines.push(out.removeStandby?.message ?? out.finish?.message ?? (out.plan?.action === 'remove' ? 'the standby was removed' : 'the standby was added'));
    for (const w of [...(out.plan?.warnings ?? []), ...(out.stopStandby?.warning ? [out.stopStandby.warning] : [])]) lines.push(`warning: ${w}`);
  } else {
    const what = r.error === 'RemoveStandbyFailed' ? 'gpinitstandby -r failed' : r.error === 'InitStandbyFailed' ? 'gpinitstandby failed' : r.error === 'InvalidInput' ? 'refused (nothing was changed)' : `${r.error ?? r.status}`;
    lines.push(`${what}: ${r.cause ?? r.status}`);
  }
  lines.push(`(InitStandby execution ${r.executionName}${r.executionArn ? `, ${r.executionArn}` : ''}: ${r.status})`);
  return lines.join('\n');
}
