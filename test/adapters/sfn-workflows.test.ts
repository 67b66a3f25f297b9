import { mockClient } from 'aws-sdk-client-mock';
import { ExecutionAlreadyExists, InvalidExecutionInput, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SfnWorkflows } from '../../lambdas/adapters/aws/sfn-workflows';
import type { PromoteMirrorInput } from '../../lambdas/ports/workflows';

const sfn = mockClient(SFNClient);
beforeEach(() => sfn.reset());

/** A client that never reaches AWS: the mock intercepts every send. */
const client = (): SFNClient => new SFNClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:PromoteMirror-prod';
const input: PromoteMirrorInput = { clusterId: 'prod', content: 3, failedPrimaryDbid: 5, mirrorDbid: 9, catalogVersion: 42, reason: 'primary dbid 5 does not answer' };

test('StartExecution with the derived name and the input as JSON', async () => {
  sfn.on(StartExecutionCommand).resolves({ executionArn: `${ARN}:promote-prod-c3-v42`, startDate: new Date() });
  const started = await new SfnWorkflows(ARN, client()).startPromotion(input);
  expect(started).toEqual({ executionName: 'promote-prod-c3-v42-a1', started: true });
  const calls = sfn.commandCalls(StartExecutionCommand);
  expect(calls).toHaveLength(1);
  expect(calls[0].args[0].input).toEqual({ stateMachineArn: ARN, name: 'promote-prod-c3-v42-a1', input: JSON.stringify(input) });
});

test('ExecutionAlreadyExists means the promotion was already started', async () => {
  sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'Execution Already Exists', $metadata: {} }));
  expect(await new SfnWorkflows(ARN, client()).startPromotion(input)).toEqual({ executionName: 'promote-prod-c3-v42-a1', started: false });
});

test('an error named ExecutionAlreadyExists from another SDK copy counts too', async () => {
  sfn.on(StartExecutionCommand).rejects(Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' }));
  expect((await new SfnWorkflows(ARN, client()).startPromotion(input)).started).toBe(false);
});

test('other errors propagate', async () => {
  sfn.on(StartExecutionCommand).rejects(new InvalidExecutionInput({ message: 'bad input', $metadata: {} }));
  await expect(new SfnWorkflows(ARN, client()).startPromotion(input)).rejects.toThrow('bad input');
});

test('the state machine ARN is checked up front', () => {
  expect(() => new SfnWorkflows('', client())).toThrow(/promoteStateMachineArn/);
  expect(() => new SfnWorkflows('arn:aws:lambda:us-east-1:123456789012:function:x', client())).toThrow(/promoteStateMachineArn/);
});
