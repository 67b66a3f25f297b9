/**
 * cdk-nag's AwsSolutions and Serverless packs on the FtsStack, in every shape a
 * deployment can take (each client endpoint kind, with and without a secret, e-mail
 * subscriptions, no EC2 host events): zero findings that are not acknowledged. Each
 * acknowledgement sits in lib/ next to what it is about, with its reason
 * (`Validations.of(construct).acknowledge`; test/cdk/hardening.test.ts checks the reasons).
 */
import { App, type Stack } from 'aws-cdk-lib';
import { AwsSolutionsChecks, ServerlessChecks } from 'cdk-nag';
import { FtsStack, type FtsStackProps } from '../../lib/fts-stack';

const props: FtsStackProps = {
  clusterId: 'prod-1',
  vpcId: 'vpc-0a1b2c3d4e5f67890',
  availabilityZones: ['us-east-1a', 'us-east-1b'],
  privateSubnetIds: ['subnet-0aaa1111bbbb2222c', 'subnet-0ddd3333eeee4444f'],
  segmentSecurityGroupId: 'sg-0123abcd4567ef890',
  pgSecretArn: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:fts/prod/pg-AbCdEf',
  notificationEmails: ['ops@example.com', 'dba@example.com'],
};

/** Findings of both packs that nothing acknowledges: `rule at construct path`. */
function findings(stack: Stack): string[] {
  return [new AwsSolutionsChecks(), new ServerlessChecks()].flatMap((pack) =>
    pack.validateScope(stack).violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.constructPath}: ${v.description}`)),
  );
}

test.each<[string, Partial<FtsStackProps>]>([
  ['the default stack', {}],
  ['a secondary-IP client endpoint', { clientEndpoint: { kind: 'secondary-ip', address: '10.0.1.50', subnetId: 'subnet-0aaa1111bbbb2222c' } }],
  ['an Elastic IP client endpoint', { clientEndpoint: { kind: 'elastic-ip', allocationId: 'eipalloc-0abc1234' } }],
  ['a Route 53 client endpoint', { clientEndpoint: { kind: 'route53', hostedZoneId: 'Z0ABCDEF123456', recordName: 'coordinator.prod.internal' } }],
  ['no secret, no e-mail, no EC2 host events, schedule off', { pgSecretArn: undefined, notificationEmails: undefined, hostEvents: false, scheduleEnabled: false }],
  ['segment hosts on systemd, ingress managed elsewhere', { segmentHosts: { pgDistro: 'debian', pgMajor: 16, serviceManager: 'systemd:postgresql@16-%i.service' }, manageSegmentIngress: false }],
])('%s: no unacknowledged AwsSolutions or Serverless finding', (_, overrides) => {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new FtsStack(app, 'Fts-prod-1', { ...props, ...overrides });
  app.synth();
  expect(findings(stack)).toEqual([]);
});
