// Lint is part of `npm test`. The rule that matters most: lambdas/core stays pure.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ioModules = ['fs', 'net', 'child_process', 'http', 'https', 'dgram', 'os', 'tls', 'dns'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'cdk.out/**', 'dist/**', '*.js', '*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['lambdas/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'pg', message: 'lambdas/core is pure: PostgreSQL access belongs in lambdas/adapters.' },
            ...ioModules.flatMap((m) => [
              { name: m, message: 'lambdas/core is pure: no Node I/O modules.' },
              { name: `node:${m}`, message: 'lambdas/core is pure: no Node I/O modules.' },
            ]),
          ],
          patterns: [
            { group: ['@aws-sdk/*', 'aws-sdk', 'aws-cdk-lib', 'aws-cdk-lib/*'], message: 'lambdas/core is pure: AWS access belongs in lambdas/adapters.' },
            { group: ['../adapters/*', '../handlers/*', '../ports/*'], message: 'lambdas/core depends on nothing but itself.' },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'lambdas/core reads no environment: pass values in.' },
        { name: 'setTimeout', message: 'lambdas/core has no clock: pass `now` in.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'lambdas/core has no clock: pass `now` in.' },
        { object: 'Math', property: 'random', message: 'lambdas/core is deterministic.' },
      ],
    },
  },
);
