/**
 * The workflow definitions as they deploy, for local mode and tests: builds the FtsStack
 * in-process (bundling skipped: nothing is compiled or written), takes each state
 * machine's DefinitionString and resolves its CloudFormation intrinsics (Fn::Join,
 * Fn::GetAtt, Ref) into plain ASL. Local mode therefore runs the very definitions CDK
 * deploys, never a hand-written copy.
 */
import { App, CfnResource, Stack } from 'aws-cdk-lib';
import type { CfnStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { LocalWorkflows, type LocalWorkflow, type LocalWorkflowsOptions } from '../lambdas/adapters/local/local-workflows';
import { WORKFLOW_KINDS, type WorkflowKind } from '../lambdas/workflows/spec';
import { FtsStack, ftsStackPropsFromContext, type FtsStackProps } from './fts-stack';

/** Context of the in-process stack: the example values of cdk.json (the definition does not depend on them). */
export const EXAMPLE_FTS_CONTEXT: Readonly<Record<string, unknown>> = {
  clusterId: 'example',
  vpcId: 'vpc-0123456789abcdef0',
  availabilityZones: ['us-east-1a', 'us-east-1b'],
  privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
  segmentSecurityGroupId: 'sg-0123456789abcdef0',
  pgSecretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fts/example/pg-AbCdEf',
};

/** Values the pseudo parameters resolve to locally. */
export const LOCAL_PSEUDO_PARAMETERS: Readonly<Record<string, string>> = {
  'AWS::Partition': 'aws',
  'AWS::Region': 'us-east-1',
  'AWS::AccountId': '123456789012',
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::StackName': 'Fts-example',
};

/** A resolved, validated workflow definition. */
export interface WorkflowDefinition {
  /** The ASL object (JSONPath, Resource fields are fake Lambda ARNs named after the function's logical id). */
  definition: object;
  /** Names of its Task states; local mode binds each to the step handler. */
  taskStates: string[];
}

/** Options of {@link synthesizeDefinition}. */
export interface SynthesizeOptions {
  /**
   * Handler sources for the in-process stack (NodejsFunction requires the entry files
   * to exist even when bundling is skipped). Only the first call of a process uses them:
   * the definition does not depend on them, and the result is cached.
   * @default the real handlers under lambdas/handlers/
   */
  handlers?: FtsStackProps['handlers'];
}

type AslValidator = (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };
// asl-validator ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const aslValidator = require('asl-validator') as AslValidator;

let cached: Record<WorkflowKind, WorkflowDefinition> | undefined;

/**
 * Synthesizes the FtsStack in-process and returns a workflow's ASL with every intrinsic
 * resolved; validated with asl-validator (throws on errors). Cached per process; callers
 * get a deep copy, so they may mutate it.
 */
export function synthesizeDefinition(kind: WorkflowKind, options: SynthesizeOptions = {}): WorkflowDefinition {
  cached ??= synthesize(options);
  return structuredClone(cached[kind]);
}

/** The PromoteMirror definition (see {@link synthesizeDefinition}). */
export const synthesizePromoteMirrorDefinition = (options: SynthesizeOptions = {}): WorkflowDefinition => synthesizeDefinition('PromoteMirror', options);

/**
 * LocalWorkflows running the deployed definitions of the workflows `handlers` names,
 * each Task bound to that workflow's step handler.
 */
export function localWorkflows(handlers: Partial<Record<WorkflowKind, LocalWorkflow['handler']>>, options: Omit<LocalWorkflowsOptions, 'workflows'> = {}): LocalWorkflows {
  const workflows: Partial<Record<WorkflowKind, LocalWorkflow>> = {};
  for (const [kind, handler] of Object.entries(handlers) as [WorkflowKind, LocalWorkflow['handler']][]) {
    workflows[kind] = { definition: synthesizeDefinition(kind).definition, handler };
  }
  return new LocalWorkflows({ ...options, workflows });
}

function synthesize(options: SynthesizeOptions): Record<WorkflowKind, WorkflowDefinition> {
  // An empty bundling-stacks list skips esbuild; nothing is synthesized to disk either.
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], ...EXAMPLE_FTS_CONTEXT } });
  const props = ftsStackPropsFromContext((key) => app.node.tryGetContext(key), { handlers: options.handlers });
  const stack = new FtsStack(app, 'Fts-example', props);
  const types = logicalIdTypes(stack);
  const byKind = { PromoteMirror: stack.promoteMirror, RecoverSegments: stack.recoverSegments, Rebalance: stack.rebalance, ActivateStandby: stack.activateStandby, InitStandby: stack.initStandby };
  const out = {} as Record<WorkflowKind, WorkflowDefinition>;
  for (const kind of WORKFLOW_KINDS) {
    const cfn = byKind[kind].stateMachine.node.defaultChild as CfnStateMachine;
    const definitionString = resolveIntrinsics(stack.resolve(cfn.definitionString), types);
    if (typeof definitionString !== 'string') throw new Error(`${kind} DefinitionString did not resolve to a string`);
    const definition = JSON.parse(definitionString) as { States: Record<string, { Type: string }> };
    // asl-validator adds QueryLanguage to every state it checks: give it a copy.
    const result = aslValidator(structuredClone(definition));
    if (!result.isValid) throw new Error(`the synthesized ${kind} definition is not valid ASL: ${result.errorsText('; ')}`);
    const taskStates = Object.entries(definition.States)
      .filter(([, state]) => state.Type === 'Task')
      .map(([name]) => name);
    out[kind] = { definition, taskStates };
  }
  return out;
}

/** Logical id -> CloudFormation type of every resource of the stack. */
function logicalIdTypes(stack: Stack): Map<string, string> {
  const types = new Map<string, string>();
  for (const c of stack.node.findAll()) {
    if (CfnResource.isCfnResource(c)) types.set(stack.resolve(c.logicalId) as string, c.cfnResourceType);
  }
  return types;
}

/** The local stand-in for a resource's ARN (only Lambda functions appear in the definition). */
function fakeArn(logicalId: string, type: string | undefined): string {
  const { 'AWS::Partition': partition, 'AWS::Region': region, 'AWS::AccountId': account } = LOCAL_PSEUDO_PARAMETERS;
  if (type === 'AWS::Lambda::Function') return `arn:${partition}:lambda:${region}:${account}:function:${logicalId}`;
  throw new Error(`cannot resolve a reference to ${logicalId} (${type ?? 'unknown resource'}) in a workflow definition`);
}

/** Resolves Fn::Join, Fn::GetAtt (Arn) and Ref in a resolved CloudFormation value. */
export function resolveIntrinsics(value: unknown, types: ReadonlyMap<string, string>): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveIntrinsics(v, types));
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value);
  if (entries.length === 1) {
    const [key, arg] = entries[0];
    if (key === 'Fn::Join') {
      const [separator, parts] = arg as [string, unknown[]];
      return (resolveIntrinsics(parts, types) as unknown[]).map((p) => {
        if (typeof p !== 'string') throw new Error(`Fn::Join part did not resolve to a string: ${JSON.stringify(p)}`);
        return p;
      }).join(separator);
    }
    if (key === 'Ref') {
      const name = arg as string;
      if (name in LOCAL_PSEUDO_PARAMETERS) return LOCAL_PSEUDO_PARAMETERS[name];
      if (types.get(name) === 'AWS::Lambda::Function') return name; // Ref of a function is its name
      throw new Error(`cannot resolve Ref ${name} in a workflow definition`);
    }
    if (key === 'Fn::GetAtt') {
      const [logicalId, attribute] = (typeof arg === 'string' ? arg.split('.') : arg) as [string, string];
      if (attribute !== 'Arn') throw new Error(`cannot resolve Fn::GetAtt ${logicalId}.${attribute} in a workflow definition`);
      return fakeArn(logicalId, types.get(logicalId));
    }
    if (key.startsWith('Fn::')) throw new Error(`unsupported intrinsic ${key} in a workflow definition`);
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, resolveIntrinsics(v, types)]));
}
