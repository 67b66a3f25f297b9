/**
 * Typed errors. Their `name` is what Step Functions Retry/Catch match on, so keep
 * names stable.
 */

/** Base for all domain errors; `name` is the class name. */
export class FtsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Input (settings, spec, workflow input, CLI flag, catalog row) that breaks the rules. */
export class ValidationError extends FtsError {
  constructor(message: string, readonly issues: string[] = [message]) {
    super(message);
  }
}

/**
 * A content is held by someone else (a pending promotion, or a live operation of another
 * workflow execution): the change or plan is refused and nothing is written. A
 * ValidationError, so callers that treat bad input as final do the same here; Step
 * Functions Catch it by its own name to wait and retry instead.
 */
export class ContentBusyError extends ValidationError {}

/** Another writer changed the catalog since it was read; nothing was written. */
export class CatalogConflictError extends FtsError {
  constructor(readonly clusterId: string, readonly expectedVersion: number) {
    super(`catalog of cluster ${clusterId} is no longer at version ${expectedVersion}; nothing was written`);
  }
}

/** The cluster is not in the catalog. */
export class ClusterNotFoundError extends FtsError {
  constructor(readonly clusterId: string) {
    super(`cluster ${clusterId} is not in the catalog`);
  }
}

/** The prober lease is held by someone else, or was lost. */
export class LeaseLostError extends FtsError {}

/** A segment could not be reached or did not answer. */
export class SegmentUnreachableError extends FtsError {}

/** A remote command on a segment host failed (non-zero exit, timeout, agent error). */
export class HostCommandError extends FtsError {
  constructor(message: string, readonly exitCode?: number, readonly output?: string) {
    super(message);
  }
}

/** A promotion must not go on: the primary answers again, or the mirror still streams from it. */
export class PrimaryAliveError extends FtsError {}

/** The mirror is not eligible for promotion (down or not in sync). */
export class MirrorNotPromotableError extends FtsError {}

/** The promoted instance did not accept a write. */
export class NotWritableError extends FtsError {}

/**
 * The instance reached at a row's address is not the one the row means (its `fts.dbid`,
 * `fts.content` or system identifier differ). Nothing was done to it.
 */
export class WrongInstanceError extends FtsError {}

/** The prober's lease lapsed or was taken over: it must not act on what it decided. */
export class NotLeaseHolderError extends FtsError {}

/**
 * Rebuilding an instance as a mirror failed: pg_rewind cannot work (a full recovery
 * can), the target directory is not safe to empty, or the rebuild script failed.
 */
export class RebuildFailedError extends FtsError {}

/** A planned switchover stopped before the catalog flip and put the primary back: nothing changed. */
export class SwitchoverAbortedError extends FtsError {}

/**
 * The coordinator answers (or its standby still hears from it): the standby is not
 * activated unless the operator forces it, and then only after the coordinator is fenced.
 */
export class CoordinatorAliveError extends FtsError {}

/**
 * The old coordinator could not be shown fenced (its host did not answer, the stop failed):
 * activating its standby could leave two writable coordinators, so the activation stops
 * unless forced.
 */
export class FenceUnconfirmedError extends FtsError {}
