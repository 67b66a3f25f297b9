/**
 * Validation of catalog rows: `gp_segment_configuration` rows (with their EC2
 * placement), `gp_configuration_history` rows and pending promotion markers. Used on
 * every input that becomes a row (initialize, apply) and on every row read back, so a
 * corrupt item in the table surfaces as a ValidationError naming its dbid instead of a
 * wrong decision. Also the markers stored with the cluster item: pending promotions,
 * fences and operations. Pure.
 */
import { z } from 'zod';
import { ValidationError } from './errors';
import type { HistoryRow, PendingFence, PendingOperation, PendingPromotion, SegmentRow } from './model';

const role = z.enum(['p', 'm']);
const nonEmpty = z.string().min(1);

/** One `gp_segment_configuration` row; unknown keys are rejected (a typo is not silently dropped). */
export const segmentRowSchema = z
  .object({
    dbid: z.number().int().min(1),
    content: z.number().int().min(-1),
    role,
    preferredRole: role,
    mode: z.enum(['s', 'n']),
    status: z.enum(['u', 'd']),
    port: z.number().int().min(1).max(65535),
    hostname: nonEmpty,
    address: nonEmpty,
    datadir: nonEmpty,
    instanceId: nonEmpty.optional(),
    availabilityZone: nonEmpty.optional(),
    placementGroup: nonEmpty.optional(),
    partitionNumber: z.number().int().min(1).max(7).optional(),
    systemIdentifier: z.string().regex(/^[0-9]{1,20}$/, 'must be a decimal system identifier').optional(),
  })
  .strict();

/** One `gp_configuration_history` row. */
export const historyRowSchema = z
  .object({
    time: z.iso.datetime({ offset: true }),
    dbid: z.number().int().min(1),
    description: nonEmpty,
  })
  .strict();

/** A pending promotion marker (see PendingPromotion). */
export const pendingPromotionSchema = z
  .object({
    content: z.number().int().min(-1),
    mirrorDbid: z.number().int().min(1),
    failedPrimaryDbid: z.number().int().min(1),
    version: z.number().int().min(1),
    startedAt: z.iso.datetime({ offset: true }),
  })
  .strict();

/** A fence the catalog owes an instance (see PendingFence). */
export const pendingFenceSchema = z
  .object({
    dbid: z.number().int().min(1),
    content: z.number().int().min(-1),
    newPrimaryDbid: z.number().int().min(1).optional(),
    since: z.iso.datetime({ offset: true }),
    reason: z.string().max(1000),
  })
  .strict();

/** Longest execution name kept: a Step Functions execution ARN fits (names are at most 80 characters). */
const MAX_EXECUTION_LENGTH = 2048;
const execution = nonEmpty.max(MAX_EXECUTION_LENGTH);

/** A content held by an operator workflow (see PendingOperation); it lapses after it was taken. */
export const pendingOperationSchema = z
  .object({
    content: z.number().int().min(-1),
    kind: z.enum(['recovery', 'rebalance', 'activation', 'standby-init']),
    execution,
    since: z.iso.datetime({ offset: true }),
    expiresAt: z.iso.datetime({ offset: true }),
    plan: z.string().max(4000).optional(),
  })
  .strict()
  // A bad time is reported on its own field; the order is checked between good ones only.
  .refine((op) => Number.isNaN(Date.parse(op.since)) || Number.isNaN(Date.parse(op.expiresAt)) || Date.parse(op.expiresAt) > Date.parse(op.since), {
    path: ['expiresAt'],
    message: 'must be later than since',
  });

/** The release of an operation by the execution that holds it (CatalogChange.clearOperations). */
export const operationReleaseSchema = z.object({ content: z.number().int().min(-1), execution }).strict();

// Compile-time check that the schemas and the model agree in both directions.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Always true; fails to compile when a schema drifts from lambdas/core/model.ts. */
export const SCHEMAS_MATCH_MODEL: [
  Same<z.infer<typeof segmentRowSchema>, SegmentRow>,
  Same<z.infer<typeof historyRowSchema>, HistoryRow>,
  Same<z.infer<typeof pendingPromotionSchema>, PendingPromotion>,
  Same<z.infer<typeof pendingFenceSchema>, PendingFence>,
  Same<z.infer<typeof pendingOperationSchema>, PendingOperation>,
] = [true, true, true, true, true];

/** Names a row in a message: by its dbid when it has a usable one, else by position. */
function rowLabel(raw: unknown, index: number): string {
  const dbid = raw && typeof raw === 'object' ? (raw as Record<string, unknown>).dbid : undefined;
  return typeof dbid === 'number' && Number.isInteger(dbid) && dbid >= 1 ? `dbid ${dbid}` : `row ${index} (dbid ${JSON.stringify(dbid) ?? 'missing'})`;
}

/** One zod issue as a sentence, with the offending value. */
function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const field = issue.path.join('.') || '(row)';
  const value = issue.path.length && raw && typeof raw === 'object' ? (raw as Record<string, unknown>)[String(issue.path[0])] : raw;
  const got = ` (got ${JSON.stringify(value) ?? 'nothing'})`;
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field(s) ${issue.keys.join(', ')}`;
    case 'too_small':
      return issue.origin === 'string' ? `${field} must not be empty` : `${field} must be at least ${String(issue.minimum)}${got}`;
    case 'too_big':
      return `${field} must be at most ${String(issue.maximum)}${got}`;
    case 'invalid_value':
      return `${field} must be one of ${issue.values.map((v) => String(v)).join('|')}${got}`;
    case 'invalid_type':
      return value === undefined ? `${field} is missing` : `${field} must be ${issue.expected === 'int' ? 'an integer' : `a ${issue.expected}`}${got}`;
    default:
      return `${field}: ${issue.message}${got}`;
  }
}

/** Parses each row with `schema`; returns the parsed rows and the issues, each prefixed by the row's label. */
function parseEach<T>(schema: z.ZodType<T>, rows: readonly unknown[], label: (raw: unknown, index: number) => string): { parsed: T[]; issues: string[] } {
  const parsed: T[] = [];
  const issues: string[] = [];
  rows.forEach((raw, index) => {
    const result = schema.safeParse(raw);
    if (result.success) parsed.push(result.data);
    else for (const issue of result.error.issues) issues.push(`${label(raw, index)}: ${describeIssue(issue, raw)}`);
  });
  return { parsed, issues };
}

function fail(what: string, issues: string[]): never {
  throw new ValidationError(`invalid ${what}: ${issues.join('; ')}`, issues);
}

/**
 * Validates a whole set of `gp_segment_configuration` rows (one cluster): every field
 * typed and in range, then the set rules Greenplum holds: dbids unique, at most one
 * acting primary per content, at most two rows (a primary and its mirror) per content,
 * both rows of a pair with the same mode. Throws ValidationError listing every problem,
 * each naming the dbid(s) at fault; returns the parsed rows otherwise.
 */
export function validateSegmentRows(rows: readonly unknown[]): SegmentRow[] {
  const { parsed, issues } = parseEach(segmentRowSchema, rows, rowLabel);

  const seen = new Map<number, number>();
  for (const row of parsed) seen.set(row.dbid, (seen.get(row.dbid) ?? 0) + 1);
  for (const [dbid, n] of seen) if (n > 1) issues.push(`dbid ${dbid} appears ${n} times; dbids are unique`);

  const byContent = new Map<number, SegmentRow[]>();
  for (const row of parsed) byContent.set(row.content, [...(byContent.get(row.content) ?? []), row]);
  for (const [content, pair] of [...byContent].sort(([a], [b]) => a - b)) {
    const dbids = (list: SegmentRow[]) => list.map((r) => r.dbid).join(', ');
    if (pair.length > 2) issues.push(`content ${content} has ${pair.length} rows (dbids ${dbids(pair)}); a content has at most a primary and a mirror`);
    const primaries = pair.filter((r) => r.role === 'p');
    if (primaries.length > 1) issues.push(`content ${content} has ${primaries.length} acting primaries (dbids ${dbids(primaries)}); at most one row per content has role p`);
    const modes = new Set(pair.map((r) => r.mode));
    if (pair.length > 1 && modes.size > 1) {
      issues.push(`content ${content}: ${pair.map((r) => `dbid ${r.dbid} has mode ${r.mode}`).join(', ')}; both rows of a pair carry the same mode`);
    }
  }
  if (issues.length) fail('segment rows', issues);
  return parsed;
}

/** Validates history rows; throws ValidationError naming the dbid of each bad row. */
export function validateHistoryRows(rows: readonly unknown[]): HistoryRow[] {
  const { parsed, issues } = parseEach(historyRowSchema, rows, (raw, i) => `history ${rowLabel(raw, i)}`);
  if (issues.length) fail('history rows', issues);
  return parsed;
}

/** Validates pending promotion markers; at most one per content. Throws ValidationError naming the content. */
export function validatePendingPromotions(markers: readonly unknown[]): PendingPromotion[] {
  const label = (raw: unknown, i: number) => {
    const content = raw && typeof raw === 'object' ? (raw as Record<string, unknown>).content : undefined;
    return typeof content === 'number' ? `pending promotion of content ${content}` : `pending promotion ${i}`;
  };
  const { parsed, issues } = parseEach(pendingPromotionSchema, markers, label);
  const contents = parsed.map((p) => p.content);
  for (const content of new Set(contents)) {
    if (contents.filter((c) => c === content).length > 1) issues.push(`content ${content} has more than one pending promotion`);
  }
  if (issues.length) fail('pending promotions', issues);
  return parsed;
}

/** Validates pending fences; at most one per dbid. Throws ValidationError naming the dbid. */
export function validatePendingFences(fences: readonly unknown[]): PendingFence[] {
  const { parsed, issues } = parseEach(pendingFenceSchema, fences, (raw, i) => `pending fence ${rowLabel(raw, i)}`);
  const dbids = parsed.map((f) => f.dbid);
  for (const dbid of new Set(dbids)) if (dbids.filter((d) => d === dbid).length > 1) issues.push(`dbid ${dbid} has more than one pending fence`);
  if (issues.length) fail('pending fences', issues);
  return parsed;
}

/** Names a marker by its content when it has a usable one, else by position. */
function contentLabel(what: string) {
  return (raw: unknown, i: number): string => {
    const content = raw && typeof raw === 'object' ? (raw as Record<string, unknown>).content : undefined;
    return typeof content === 'number' && Number.isInteger(content) ? `${what} of content ${content}` : `${what} ${i}`;
  };
}

/**
 * Validates pending operations (content holds of operator workflows); at most one per
 * content. Throws ValidationError naming the content.
 */
export function validatePendingOperations(operations: readonly unknown[]): PendingOperation[] {
  const { parsed, issues } = parseEach(pendingOperationSchema, operations, contentLabel('pending operation'));
  const contents = parsed.map((op) => op.content);
  for (const content of new Set(contents)) {
    if (contents.filter((c) => c === content).length > 1) issues.push(`content ${content} has more than one pending operation`);
  }
  if (issues.length) fail('pending operations', issues);
  return parsed;
}

/** Validates releases of operations (content and the releasing execution). Throws ValidationError naming the content. */
export function validateOperationReleases(releases: readonly unknown[]): { content: number; execution: string }[] {
  const { parsed, issues } = parseEach(operationReleaseSchema, releases, contentLabel('release of the operation'));
  if (issues.length) fail('operation releases', issues);
  return parsed;
}
