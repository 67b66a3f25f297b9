import { ValidationError } from '../../lambdas/core/errors';
import type { SegmentRow } from '../../lambdas/core/model';
import { segmentRowSchema, validateHistoryRows, validateOperationReleases, validatePendingOperations, validatePendingPromotions, validateSegmentRows } from '../../lambdas/core/rows';

const row = (dbid: number, content: number, role: 'p' | 'm', over: Record<string, unknown> = {}): SegmentRow =>
  ({ dbid, content, role, preferredRole: role, mode: 's', status: 'u', port: 6000 + dbid, hostname: 'sdw1', address: '10.0.0.1', datadir: `/data/gpseg${content}`, ...over }) as SegmentRow;

/** Coordinator 1 + standby 6; content 0: 2 + 4; content 1: 3 + 5. */
const good = (): SegmentRow[] => [row(1, -1, 'p'), row(6, -1, 'm'), row(2, 0, 'p'), row(4, 0, 'm'), row(3, 1, 'p'), row(5, 1, 'm')];

/** Replaces the row with `dbid` in a good cluster. */
const withRow = (dbid: number, over: Record<string, unknown>): unknown[] => good().map((r) => (r.dbid === dbid ? { ...r, ...over } : r));

function issuesOf(rows: unknown[]): string[] {
  try {
    validateSegmentRows(rows);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).issues;
  }
  throw new Error('rows were accepted');
}

describe('validateSegmentRows', () => {
  it('accepts a coordinator with standby and two mirrored contents, placement fields included', () => {
    const rows = good().map((r) => ({ ...r, instanceId: 'i-0abc', availabilityZone: 'us-east-1a', placementGroup: 'pg1', partitionNumber: 2 }));
    expect(validateSegmentRows(rows)).toEqual(rows);
  });

  it('accepts a content without a mirror and an empty set', () => {
    expect(validateSegmentRows([row(2, 0, 'p', { mode: 'n' })])).toHaveLength(1);
    expect(validateSegmentRows([])).toEqual([]);
  });

  // Each bad row must be rejected with an issue naming its dbid and the field.
  it.each<[string, unknown[], RegExp]>([
    ['dbid 0', withRow(4, { dbid: 0 }), /row \d+ \(dbid 0\): dbid must be at least 1/],
    ['fractional dbid', withRow(4, { dbid: 4.5 }), /row \d+ \(dbid 4\.5\): dbid must be an integer/],
    ['content below -1', withRow(4, { content: -2 }), /dbid 4: content must be at least -1 \(got -2\)/],
    ['unknown role', withRow(4, { role: 'x' }), /dbid 4: role must be one of p\|m \(got "x"\)/],
    ['unknown preferred role', withRow(4, { preferredRole: 'primary' }), /dbid 4: preferredRole must be one of p\|m/],
    ['unknown mode', withRow(4, { mode: 'r' }), /dbid 4: mode must be one of s\|n/],
    ['unknown status', withRow(4, { status: 'up' }), /dbid 4: status must be one of u\|d/],
    ['port 0', withRow(4, { port: 0 }), /dbid 4: port must be at least 1 \(got 0\)/],
    ['port above 65535', withRow(4, { port: 70000 }), /dbid 4: port must be at most 65535 \(got 70000\)/],
    ['port as a string', withRow(4, { port: '6000' }), /dbid 4: port must be a number \(got "6000"\)/],
    ['empty hostname', withRow(4, { hostname: '' }), /dbid 4: hostname must not be empty/],
    ['missing address', withRow(4, { address: undefined }), /dbid 4: address is missing/],
    ['empty datadir', withRow(4, { datadir: '' }), /dbid 4: datadir must not be empty/],
    ['partition number 0', withRow(4, { partitionNumber: 0 }), /dbid 4: partitionNumber must be at least 1/],
    ['unknown field', withRow(4, { prefered_role: 'p' }), /dbid 4: unknown field\(s\) prefered_role/],
    ['duplicate dbid', [...good(), row(5, 2, 'p')], /dbid 5 appears 2 times/],
    ['two primaries for a content', withRow(4, { role: 'p' }), /content 0 has 2 acting primaries \(dbids 2, 4\)/],
    ['three rows for a content', [...good(), row(7, 1, 'm')], /content 1 has 3 rows \(dbids 3, 5, 7\)/],
    ['pair with different modes', withRow(5, { mode: 'n' }), /content 1: dbid 3 has mode s, dbid 5 has mode n; both rows of a pair carry the same mode/],
  ])('rejects %s', (_name, rows, message) => {
    const issues = issuesOf(rows);
    expect(issues.some((i) => message.test(i))).toBe(true);
  });

  it('lists every problem, not just the first', () => {
    const rows = good().map((r) => (r.dbid === 4 ? { ...r, port: 0 } : r.dbid === 5 ? { ...r, hostname: '' } : r));
    const issues = issuesOf(rows);
    expect(issues).toHaveLength(2);
    expect(issues.join('\n')).toMatch(/dbid 4: port/);
    expect(issues.join('\n')).toMatch(/dbid 5: hostname/);
  });

  it('puts the issues in the error message', () => {
    expect(() => validateSegmentRows(withRow(2, { port: -1 }))).toThrow(/invalid segment rows: dbid 2: port must be at least 1/);
  });

  it('exports the row schema for other validators', () => {
    expect(segmentRowSchema.safeParse(row(2, 0, 'p')).success).toBe(true);
    expect(segmentRowSchema.safeParse({ ...row(2, 0, 'p'), port: 65536 }).success).toBe(false);
  });
});

describe('validateHistoryRows', () => {
  it('accepts ISO times and rejects bad rows naming the dbid', () => {
    expect(validateHistoryRows([{ time: '2024-05-01T10:00:00.000Z', dbid: 2, description: 'FTS: marked down' }])).toHaveLength(1);
    expect(() => validateHistoryRows([{ time: 'yesterday', dbid: 2, description: 'x' }])).toThrow(/history dbid 2: time/);
    expect(() => validateHistoryRows([{ time: '2024-05-01T10:00:00Z', dbid: 3, description: '' }])).toThrow(/history dbid 3: description must not be empty/);
  });
});

describe('validatePendingPromotions', () => {
  const marker = { content: 0, mirrorDbid: 4, failedPrimaryDbid: 2, version: 8, startedAt: '2024-05-01T10:00:00Z' };
  it('rejects two markers for one content and bad fields', () => {
    expect(validatePendingPromotions([marker])).toEqual([marker]);
    expect(() => validatePendingPromotions([marker, { ...marker, mirrorDbid: 2 }])).toThrow(/content 0 has more than one pending promotion/);
    expect(() => validatePendingPromotions([{ ...marker, version: 0 }])).toThrow(/pending promotion of content 0: version must be at least 1/);
  });
});

describe('validatePendingOperations', () => {
  const op = { content: 0, kind: 'recovery', execution: 'recover-1', since: '2024-05-01T10:00:00Z', expiresAt: '2024-05-01T11:00:00Z' };
  it('accepts an operation and rejects two for one content', () => {
    expect(validatePendingOperations([op, { ...op, content: 1, kind: 'rebalance' }])).toEqual([op, { ...op, content: 1, kind: 'rebalance' }]);
    expect(() => validatePendingOperations([op, { ...op, execution: 'recover-2' }])).toThrow(/^invalid pending operations: content 0 has more than one pending operation$/);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['an unknown kind', { kind: 'promotion' }, 'pending operation of content 0: kind must be one of recovery|rebalance|activation|standby-init (got "promotion")'],
    ['an empty execution', { execution: '' }, 'pending operation of content 0: execution must not be empty'],
    ['a bad time', { since: 'now' }, 'pending operation of content 0: since: Invalid ISO datetime (got "now")'],
    ['an expiry not after it was taken', { expiresAt: '2024-05-01T10:00:00Z' }, 'pending operation of content 0: expiresAt: must be later than since (got "2024-05-01T10:00:00Z")'],
    ['an unknown field', { owner: 'x' }, 'pending operation of content 0: unknown field(s) owner'],
  ])('rejects %s naming the content', (_name, over, issue) => {
    expect(() => validatePendingOperations([{ ...op, ...over }])).toThrow(ValidationError);
    try {
      validatePendingOperations([{ ...op, ...over }]);
    } catch (err) {
      expect((err as ValidationError).issues).toEqual([issue]);
    }
  });

  it('validates releases: a content and a non-empty execution', () => {
    expect(validateOperationReleases([{ content: 0, execution: 'recover-1' }])).toEqual([{ content: 0, execution: 'recover-1' }]);
    expect(() => validateOperationReleases([{ content: 0 }])).toThrow(/^invalid operation releases: release of the operation of content 0: execution is missing$/);
    expect(() => validateOperationReleases([{ content: 'zero', execution: 'x' }])).toThrow(/release of the operation 0: content must be a number/);
  });
});
