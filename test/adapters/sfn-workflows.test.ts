import { mockClient } from 'aws-sdk-client-mock';
import { ExecutionAlreadyExists, InvalidExecutionInput, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SfnWorkflows } from '../../lambdas/adapters/aws/sfn-workflows';
import type { WorkflowInputs } from '../../lambdas/workflows';

const sfn = mockClient(SFNClient);
beforeEach(() => sfn.reset());

/** A client that never reaches AWS: the mock intercepts every send. */
const client = (): SFNClient => new SFNClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:PromoteMirror-prod';
const input: WorkflowInputs['PromoteMirror'] = { clusterId: 'prod', content: 3, failedPrimaryDbid: 5, mirrorDbid: 9, catalogVersion: 42, reason: 'primary dbid 5 does not answer' };

test('StartExecution with the derived name and the input as JSON', async () => {
  sfn.on(StartExecutionCommand).resolves({ executionArn: `${ARN}:promote-prod-c3-v42`, startDate: new Date() });
  const started = await new SfnWorkflows({ PromoteMirror: ARN }, client()).start('PromoteMirror', input);
  expect(started).toEqual({ executionName: 'promote-prod-c3-v42-a1', started: true });
  const calls = sfn.commandCalls(StartExecutionCommand);
  expect(calls).toHaveLength(1);
  expect(calls[0].args[0].input).toEqual({ stateMachineArn: ARN, name: 'promote-prod-c3-v42-a1', input: JSON.stringify(input) });
});

test('ExecutionAlreadyExists means the promotion was already started', async () => {
  sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'Execution Already Exists', $metadata: {} }));
  expect(await new SfnWorkflows({ PromoteMirror: ARN }, client()).start('PromoteMirror', input)).toEqual({ executionName: 'promote-prod-c3-v42-a1', started: false });
});

test('an error named ExecutionAlreadyExists from another SDK copy counts too', async () => {
  sfn.on(StartExecutionCommand).rejects(Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' }));
  expect((await new SfnWorkflows({ PromoteMirror: ARN }, client()).start('PromoteMirror', input)).started).toBe(false);
});

test('other errors propagate', async () => {
  sfn.on(StartExecutionCommand).rejects(new InvalidExecutionInput({ message: 'bad input', $metadata: {} }));
  await expect(new SfnWorkflows({ PromoteMirror: ARN }, client()).start('PromoteMirror', input)).rejects.toThrow('bad input');
});

test('the state machine ARNs are checked up front', () => {
  expect(() => new SfnWorkflows({}, client())).toThrow(/names no state machine/);
  expect(() => new SfnWorkflows({ PromoteMirror: '' }, client())).toThrow(/PromoteMirror ARN must be a state machine ARN/);
  expect(() => new SfnWorkflows({ PromoteMirror: 'arn:aws:lambda:us-east-1:123456789012:function:x' }, client())).toThrow(/PromoteMirror ARN must be a state machine ARN/);
  expect(() => new SfnWorkflows({ Promote: ARN } as never, client())).toThrow(/Promote is not a workflow/);
});

test('a kind this caller was not given, or input the spec refuses, starts nothing', async () => {
  const wf = new SfnWorkflows({ PromoteMirror: ARN }, client());
  await expect(wf.start('RecoverSegments', { clusterId: 'prod' })).rejects.toThrow(/no RecoverSegments state machine/);
  await expect(wf.start('PromoteMirror', { ...input, mirrorDbid: 5 })).rejects.toThrow(/failedPrimaryDbid and mirrorDbid must differ/);
  expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
});

test('operator workflows get a name from cluster, catalog version and request', async () => {
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'x', startDate: new Date() });
  const wf = new SfnWorkflows({ RecoverSegments: ARN.replace('PromoteMirror', 'RecoverSegments') }, client());
  const a = await wf.start('RecoverSegments', { clusterId: 'prod', catalogVersion: 7 });
  const b = await wf.start('RecoverSegments', { clusterId: 'prod', catalogVersion: 7, mode: 'full' });
  expect(a.executionName).toMatch(/^recoverseg-prod-v7-[0-9a-f]{8}$/);
  expect(b.executionName).not.toBe(a.executionName);
  expect((await wf.start('RecoverSegments', { clusterId: 'prod', catalogVersion: 7 })).executionName).toBe(a.executionName);
});
