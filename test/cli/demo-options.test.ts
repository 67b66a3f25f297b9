/** `ftsctl demo` options: `--coordinator` and `--auto` are parsed, and `--auto` alone is refused before anything starts. */
import { InvalidArgumentError } from 'commander';
import { buildProgram } from '../../bin/ftsctl';
import { checkDemoOptions } from '../../cli/demo';

const parse = (argv: string[]) => {
  const cmd = buildProgram().commands.find((c) => c.name() === 'demo')!;
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  cmd.parseOptions(argv);
  return cmd.opts();
};

test('without flags: the segment demo on 2 hosts', () => {
  expect(parse([])).toEqual({ hosts: 2 });
});

test('--coordinator, with or without --auto', () => {
  expect(parse(['--coordinator'])).toEqual({ hosts: 2, coordinator: true });
  expect(parse(['--coordinator', '--auto', '--hosts', '3'])).toEqual({ hosts: 3, coordinator: true, auto: true });
  expect(() => checkDemoOptions({ coordinator: true })).not.toThrow();
  expect(() => checkDemoOptions({ coordinator: true, auto: true })).not.toThrow();
});

test('--auto without --coordinator is refused', () => {
  expect(() => checkDemoOptions(parse(['--auto']))).toThrow(InvalidArgumentError);
  expect(() => checkDemoOptions({ auto: true })).toThrow(/--auto goes with --coordinator/);
});
