import { readFileSync } from 'node:fs';
import { TRANSITIONS } from '../../lambdas/core/transitions';
import { ACTORS, TRANSITIONS_DOC_PATH, describeState, renderTransitionsDoc, transitionsByActor } from '../../scripts/transitions-doc';

describe('docs/transitions.md', () => {
  it('is what scripts/transitions-doc.ts renders (run it with --write after changing TRANSITIONS)', () => {
    expect(readFileSync(TRANSITIONS_DOC_PATH, 'utf8')).toBe(renderTransitionsDoc());
  });

  it('has one section per actor and one table row per transition, with its reason, in table order', () => {
    const page = renderTransitionsDoc();
    const rows = page.split('\n').filter((line) => line.startsWith('| `'));
    expect(rows).toHaveLength(TRANSITIONS.length);
    // TRANSITIONS is grouped by actor, so grouping keeps its order.
    expect(transitionsByActor().flatMap(([, ts]) => ts)).toEqual(TRANSITIONS);
    TRANSITIONS.forEach((t, i) => {
      expect(rows[i]).toBe(`| ${describeState(t.from)} | ${describeState(t.to)} | ${t.why} |`);
    });
    const headings = page.split('\n').filter((line) => line.startsWith('## '));
    expect(headings.slice(0, 4)).toEqual(['## The prober: mirror health, and contents that cannot fail over', '## PromoteMirror: failover', '## RecoverSegments: gprecoverseg', '## Rebalance: gprecoverseg -r']);
    expect(headings).toEqual(Object.values(ACTORS).map((title) => `## ${title}`));
    expect(page.split('\n').filter((line) => line === '| From | To | When |')).toHaveLength(Object.keys(ACTORS).length);
  });

  it('spells out the letters and keeps odd reasons inside their cell', () => {
    expect(describeState('m/d/n')).toBe('`m/d/n` mirror, down, not in sync');
    expect(describeState('p/u/s')).toBe('`p/u/s` primary, up, in sync');
    const page = renderTransitionsDoc([{ from: 'p/u/s', to: 'p/u/n', by: 'prober', why: 'a | b\nc' }]);
    expect(page).toContain('| a \\| b c |');
  });
});
