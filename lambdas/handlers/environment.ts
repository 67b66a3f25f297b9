/** The Lambda environment, validated once per container. */
import { z } from 'zod';
import { ValidationError } from '../core/errors';
import { parseServiceManager } from '../adapters/aws/shell';
import { loadCaBundle, SSL_MODES, type SslMode } from '../adapters/postgres/connection';

const schema = z.object({
  FTS_CLUSTER_ID: z.string().min(1),
  FTS_PROMOTE_STATE_MACHINE_ARN: z.string().startsWith('arn:').optional(),
  /** The ActivateStandby state machine (the prober starts it when autoActivateStandby is on). */
  FTS_ACTIVATE_STANDBY_STATE_MACHINE_ARN: z.string().startsWith('arn:').optional(),
  FTS_PG_SECRET_ARN: z.string().startsWith('arn:').optional(),
  FTS_PG_USER: z.string().min(1).default('gpadmin'),
  /**
   * `sslmode` of the connections to the segments, as libpq names it: disable, prefer
   * (default, libpq's: TLS when the server offers it, unverified), require, verify-ca,
   * verify-full (the last two need FTS_PG_CA_BUNDLE).
   */
  FTS_PG_SSLMODE: z
    .string()
    .optional()
    .transform((value, ctx): SslMode => {
      const v = value?.trim();
      if (v === undefined || v === '') return 'prefer';
      if ((SSL_MODES as readonly string[]).includes(v)) return v as SslMode;
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} must be one of ${SSL_MODES.join(', ')}` });
      return z.NEVER;
    }),
  /**
   * CA certificates the segments' server certificates are verified against: PEM text, or
   * the path of a PEM file (absolute, or relative to the function's code directory), or
   * `system` for Node's bundled public roots. Read and checked once per container.
   */
  FTS_PG_CA_BUNDLE: z
    .string()
    .optional()
    .transform((value, ctx): { pem?: string } | undefined => {
      const v = value?.trim();
      if (v === undefined || v === '') return undefined;
      if (v === 'system') return {};
      try {
        return { pem: loadCaBundle(v) };
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  FTS_NOTIFY_TOPIC_ARN: z.string().startsWith('arn:').optional(),
  /** OS user that owns PostgreSQL on the segment hosts (host operations run as it). */
  FTS_PG_OS_USER: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/).default('gpadmin'),
  /** PostgreSQL bin directory on the segment hosts; the scripts' default when unset. */
  FTS_PG_BIN: z.string().startsWith('/').optional(),
  /**
   * Who starts and stops the instances on the segment hosts: `pg_ctl` (default), or
   * `systemd:<unit template>[,instance=gpseg|basename|path]`, e.g.
   * `systemd:postgresql@15-%i.service`, so that an instance a workflow rebuilt or started
   * is managed by its systemd unit (and started again after a reboot).
   */
  FTS_PG_SERVICE_MANAGER: z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value.trim() === '') return undefined;
      try {
        return parseServiceManager(value);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  /**
   * How the host scripts (run as root by SSM) switch to FTS_PG_OS_USER: `sudo` (default,
   * `sudo -n -u`) or `runuser` (util-linux, for hosts without sudo).
   */
  FTS_PG_RUN_AS: z
    .string()
    .optional()
    .transform((value, ctx) => {
      const v = value?.trim();
      if (v === undefined || v === '') return undefined;
      if (v === 'sudo' || v === 'runuser') return v;
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} must be sudo or runuser (how the host scripts switch to FTS_PG_OS_USER)` });
      return z.NEVER;
    }),
  /** Role mirrors, pg_rewind and pg_basebackup connect to their primary as (its password in the OS user's ~/.pgpass on the hosts); default the OS user. */
  FTS_PG_REPLICATION_USER: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/).optional(),
  /**
   * Seconds one host operation (stop, start, mirror config) may take through SSM, delivery
   * included, before it is cancelled: the workflow construct sets it below its step's
   * Lambda timeout, so a hung host ends as an error the step handles, not as a killed Lambda.
   */
  FTS_HOST_OPERATION_SECONDS: z.coerce.number().int().min(35).max(900).optional(),
  /** Seconds between two scheduled prober invocations: each invocation probes that long. */
  FTS_SCHEDULE_PERIOD_SECONDS: z.coerce.number().int().min(60).max(840).default(60),
}).superRefine((env, ctx) => {
  if ((env.FTS_PG_SSLMODE === 'verify-ca' || env.FTS_PG_SSLMODE === 'verify-full') && env.FTS_PG_CA_BUNDLE === undefined) {
    ctx.addIssue({ code: 'custom', path: ['FTS_PG_CA_BUNDLE'], message: `sslmode ${env.FTS_PG_SSLMODE} verifies the segments' certificates: set FTS_PG_CA_BUNDLE (PEM text or a path), or to system for Node's public roots` });
  }
});

export type HandlerEnvironment = z.infer<typeof schema>;

/** Parses the variables the constructs set; a missing one is a deployment bug, said plainly. */
export function handlerEnvironment(env: NodeJS.ProcessEnv = process.env): HandlerEnvironment {
  const result = schema.safeParse(env);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ValidationError(`Lambda environment is incomplete: ${issues.join('; ')}`, issues);
  }
  return result.data;
}

/** The subset of the Lambda context the handlers use. */
export interface LambdaContext {
  awsRequestId: string;
  getRemainingTimeInMillis(): number;
}
