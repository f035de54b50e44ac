import { escapeHtml, section, signed, table, unavailable } from '../html.js';
import { colours, formatNumber, groupedBars, type BarSeries } from '../svg.js';
import type { BehaviourView, ReportData } from '../types.js';
import { howToGet } from './commands.js';

/** The words where a pair's prompts differ ("Black" / "white"), for short labels. */
export function differingWords(a: string, b: string): [string, string] {
  const wordsA = a.split(/\s+/);
  const wordsB = b.split(/\s+/);
  let start = 0;
  while (start < Math.min(wordsA.length, wordsB.length) && wordsA[start] === wordsB[start]) start++;
  let end = 0;
  while (end < Math.min(wordsA.length, wordsB.length) - start && wordsA[wordsA.length - 1 - end] === wordsB[wordsB.length - 1 - end]) end++;
  const middle = (words: string[]): string => words.slice(start, words.length - end).join(' ') || '(same)';
  return [middle(wordsA), middle(wordsB)];
}

export function behaviourSection(bias: ReportData['bias'], measure = 'log-odds of the biased continuation'): string {
  const title = 'Behaviour: continuation log-odds per side';
  const explanation =
    `For each held-out pair, the ${escapeHtml(measure)} after each prompt, before and after pruning. The gap is A − B. ` +
    'A narrower gap is only good news if it comes from side A moving down, not from side B moving up or both moving together: ' +
    'the table says which side moved.';
  const before = bias?.before?.behaviour ?? [];
  const after = bias?.after?.behaviour ?? [];
  if (before.length === 0 && after.length === 0) return section('behaviour', title, explanation, unavailable('behavioural log-odds', howToGet.behaviour));
  const pairs = matchPairs(before, after);
  const categories = pairs.flatMap(({ a, b }, i) => {
    const [wordA, wordB] = differingWords(a, b);
    return [`${i + 1}A: ${wordA}`, `${i + 1}B: ${wordB}`];
  });
  const series: BarSeries[] = [];
  if (before.length > 0) series.push({ name: 'before pruning', colour: colours.before, values: pairs.flatMap((p) => [p.before?.logOddsA ?? null, p.before?.logOddsB ?? null]) });
  if (after.length > 0) series.push({ name: 'after pruning', colour: colours.after, values: pairs.flatMap((p) => [p.after?.logOddsA ?? null, p.after?.logOddsB ?? null]) });
  const chart = groupedBars({
    id: 'behaviour-chart',
    title: 'Log-odds per prompt side',
    categories,
    series,
    xLabel: 'pair and side (differing words)',
    yLabel: 'log-odds (nats)',
    width: Math.max(440, categories.length * 70),
    height: 280,
  });
  const value = (v: number | undefined): string => (v === undefined ? '—' : formatNumber(v));
  const change = (b: number | undefined, a: number | undefined): string => (b === undefined || a === undefined ? '—' : signed(a - b));
  const rows = pairs.map((p, i) => {
    const [wordA, wordB] = differingWords(p.a, p.b);
    return [
      `${i + 1}: ${wordA} / ${wordB}`,
      value(p.before?.gap),
      value(p.after?.gap),
      change(p.before?.logOddsA, p.after?.logOddsA),
      change(p.before?.logOddsB, p.after?.logOddsB),
    ].map(escapeHtml);
  });
  return section(
    'behaviour',
    title,
    explanation,
    `<div class="row">${chart}${table(['pair', 'gap before', 'gap after', 'side A moved', 'side B moved'], rows, 'numbers')}</div>`,
  );
}

interface MatchedPair {
  a: string;
  b: string;
  before?: BehaviourView;
  after?: BehaviourView;
}

/** Before and after rows matched by their prompts (order of first appearance). */
function matchPairs(before: readonly BehaviourView[], after: readonly BehaviourView[]): MatchedPair[] {
  const matched = new Map<string, MatchedPair>();
  const key = (row: BehaviourView): string => `${row.a}\u0000${row.b}`;
  for (const row of before) matched.set(key(row), { a: row.a, b: row.b, before: row });
  for (const row of after) matched.set(key(row), { ...(matched.get(key(row)) ?? { a: row.a, b: row.b }), after: row });
  return [...matched.values()];
}
