import { readFileSync } from 'node:fs';
import { TRANSITIONS } from '../../lambdas/core/transitions';
import { TRANSITIONS_DOC_PATH, describeState, renderTransitionsDoc } from '../../scripts/transitions-doc';

describe('docs/transitions.md', () => {
  it('is what scripts/transitions-doc.ts renders (run it with --write after changing TRANSITIONS)', () => {
    expect(readFileSync(TRANSITIONS_DOC_PATH, 'utf8')).toBe(renderTransitionsDoc());
  });

  it('has one table row per transition, with its reason', () => {
    const page = renderTransitionsDoc();
    const rows = page.split('\n').filter((line) => line.startsWith('| `'));
    expect(rows).toHaveLength(TRANSITIONS.length);
    TRANSITIONS.forEach((t, i) => {
      expect(rows[i]).toBe(`| ${describeState(t.from)} | ${describeState(t.to)} | ${t.why} |`);
    });
    expect(page).toContain('| From | To | When |');
  });

  it('spells out the letters and keeps odd reasons inside their cell', () => {
    expect(describeState('m/d/n')).toBe('`m/d/n` mirror, down, not in sync');
    expect(describeState('p/u/s')).toBe('`p/u/s` primary, up, in sync');
    const page = renderTransitionsDoc([{ from: 'p/u/s', to: 'p/u/n', why: 'a | b\nc' }]);
    expect(page).toContain('| a \\| b c |');
  });
});
