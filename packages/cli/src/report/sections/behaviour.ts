import { escapeHtml, section, signed, table, unavailable } from '../html.js';
import { colours, formatNumber, groupedBars, type BarSeries } from '../svg.js';
import type { BehaviourView, BiasReportView, ReportData } from '../types.js';
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

/** Behaviour rows of a report: the held-out pairs' when measured (they were not used to pick neurons), else the scoring pairs'. */
export function behaviourRows(report: BiasReportView | undefined): { rows: readonly BehaviourView[]; heldOut: boolean } {
  const heldOut = report?.eval?.behaviour ?? [];
  return heldOut.length > 0 ? { rows: heldOut, heldOut: true } : { rows: report?.behaviour ?? [], heldOut: false };
}

export function behaviourSection(bias: ReportData['bias']): string {
  const title = 'Behaviour: continuation log-odds per side';
  const beforeRows = behaviourRows(bias?.before);
  const afterRows = behaviourRows(bias?.after);
  const which = beforeRows.heldOut || afterRows.heldOut ? 'held-out pair (not used to choose the neurons)' : 'pair';
  const explanation =
    `For each ${which}, the log-odds of the negative over the positive continuations after each prompt ` +
    '(log Σ p(negative) − log Σ p(positive), in nats), before and after pruning. The gap is A − B. ' +
    'A narrower gap is only good news if it comes from side A moving down, not from side B moving up or both moving together: ' +
    'the table says which side moved.';
  const before = beforeRows.rows;
  const after = afterRows.rows;
  if (before.length === 0 && after.length === 0) return section('behaviour', title, explanation, unavailable('behavioural log-odds', howToGet.behaviour));
  const pairs = matchPairs(before, after);
  const shift = behaviourShift(before, after);
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
      shareOf(p),
    ].map(escapeHtml);
  });
  return section(
    'behaviour',
    title,
    explanation,
    `<div class="row">${chart}${table(['pair', 'gap before', 'gap after', 'side A moved', 'side B moved', 'share of the change from A'], rows, 'numbers')}</div>` +
      (shift ? `<p class="reading">${escapeHtml(shift.reading)}</p>` : ''),
  );
}

export interface BehaviourShift {
  /** Pairs measured both before and after. */
  pairs: number;
  meanGapBefore: number;
  meanGapAfter: number;
  /** Mean change of each side's log-odds (after − before); positive = more likely to get a negative continuation. */
  meanShiftA: number;
  meanShiftB: number;
  /** Share of the mean gap change that came from side A (ΔA / Δgap; the rest, −ΔB / Δgap, from side B); NaN when the gap did not change. */
  shareFromA: number;
  /** The mean gap narrowed, and mostly because side B moved up: the other group got more hostile continuations. */
  levellingDown: boolean;
  /** The same per pair measured before and after. */
  perPair: PairShift[];
  /** One plain sentence saying which side moved, for summaries. */
  reading: string;
}

/** How one pair's gap changed and which side moved. */
export interface PairShift {
  /** The differing words, "Black / white". */
  label: string;
  /** Gap (A − B) before. */
  gapBefore: number;
  /** Gap after. */
  gapAfter: number;
  /** Change of side A's log-odds (after − before). */
  shiftA: number;
  /** Change of side B's log-odds. */
  shiftB: number;
  /** ΔA / Δgap; NaN when the gap did not change. */
  shareFromA: number;
  /** The gap narrowed mostly because side B moved up. */
  levellingDown: boolean;
}

/** Share of a gap change from side A, and whether a narrowing came mostly from side B rising. */
function attribute(shiftA: number, shiftB: number): { shareFromA: number; levellingDown: boolean } {
  const change = shiftA - shiftB;
  if (Math.abs(change) < 1e-9) return { shareFromA: Number.NaN, levellingDown: false };
  const shareFromA = shiftA / change;
  return { shareFromA, levellingDown: change < 0 && shareFromA < 0.5 };
}

/**
 * How the behavioural gap changed and which side moved. A gap can narrow because side A became less negative (the
 * intended effect) or because side B became more negative; the reading says which dominates.
 */
export function behaviourShift(before: readonly BehaviourView[], after: readonly BehaviourView[]): BehaviourShift | null {
  const both = matchPairs(before, after).filter((p): p is MatchedPair & Required<Pick<MatchedPair, 'before' | 'after'>> => !!p.before && !!p.after);
  if (both.length === 0) return null;
  const mean = (values: number[]): number => values.reduce((s, v) => s + v, 0) / values.length;
  const meanGapBefore = mean(both.map((p) => p.before.gap));
  const meanGapAfter = mean(both.map((p) => p.after.gap));
  const meanShiftA = mean(both.map((p) => p.after.logOddsA - p.before.logOddsA));
  const meanShiftB = mean(both.map((p) => p.after.logOddsB - p.before.logOddsB));
  const change = meanGapAfter - meanGapBefore;
  const fmt = (v: number) => signed(v, 3);
  const { shareFromA, levellingDown } = attribute(meanShiftA, meanShiftB);
  const perPair = both.map((p): PairShift => {
    const shiftA = p.after.logOddsA - p.before.logOddsA;
    const shiftB = p.after.logOddsB - p.before.logOddsB;
    return { label: differingWords(p.a, p.b).join(' / '), gapBefore: p.before.gap, gapAfter: p.after.gap, shiftA, shiftB, ...attribute(shiftA, shiftB) };
  });
  const flagged = perPair.filter((p) => p.levellingDown).length;
  const shares = Number.isNaN(shareFromA) ? '' : `; ${Math.round(100 * shareFromA)}% of the change from side A, ${Math.round(100 * (1 - shareFromA))}% from side B`;
  const moves = `side A ${fmt(meanShiftA)}, side B ${fmt(meanShiftB)} nats on average${shares}`;
  let reading: string;
  if (Math.abs(change) < 1e-9) {
    reading = `The mean gap did not change (${moves}).`;
  } else if (change < 0) {
    // Narrowing = A falling and/or B rising; compare the two contributions.
    const fromA = Math.max(-meanShiftA, 0);
    const fromB = Math.max(meanShiftB, 0);
    const main =
      fromB > fromA
        ? 'mostly because side B became more likely to get the negative continuations, not because side A became less likely'
        : 'mostly because side A became less likely to get the negative continuations';
    reading =
      `The mean gap narrowed from ${formatNumber(meanGapBefore, 3)} to ${formatNumber(meanGapAfter, 3)} nats, ${main} (${moves}).` +
      (levellingDown ? ' This is levelling down: the other group got more hostile continuations.' : '') +
      (flagged > 0 ? ` ${flagged} of ${perPair.length} pairs narrowed mostly through side B.` : '');
  } else {
    reading = `The mean gap widened from ${formatNumber(meanGapBefore, 3)} to ${formatNumber(meanGapAfter, 3)} nats (${moves}).`;
  }
  return { pairs: both.length, meanGapBefore, meanGapAfter, meanShiftA, meanShiftB, shareFromA, levellingDown, perPair, reading };
}

/** "72%", with a levelling-down flag when the narrowing came mostly from side B; "—" without both measurements. */
function shareOf(p: MatchedPair): string {
  if (!p.before || !p.after) return '—';
  const { shareFromA, levellingDown } = attribute(p.after.logOddsA - p.before.logOddsA, p.after.logOddsB - p.before.logOddsB);
  if (Number.isNaN(shareFromA)) return '—';
  return `${Math.round(100 * shareFromA)}%${levellingDown ? ' (levelling down)' : ''}`;
}

interface MatchedPair {
  a: string;
  b: string;
  before?: BehaviourView;
  after?: BehaviourView;
}

/** Before and after rows matched position by position when both list the same pairs in the same order, else by their prompts. */
function matchPairs(before: readonly BehaviourView[], after: readonly BehaviourView[]): MatchedPair[] {
  const sameOrder = before.length === after.length && before.every((row, i) => row.a === after[i]!.a && row.b === after[i]!.b);
  if (sameOrder) return before.map((row, i) => ({ a: row.a, b: row.b, before: row, after: after[i]! }));
  const matched = new Map<string, MatchedPair>();
  const key = (row: BehaviourView): string => `${row.a}\u0000${row.b}`;
  for (const row of before) if (!matched.has(key(row))) matched.set(key(row), { a: row.a, b: row.b, before: row });
  for (const row of after) {
    const existing = matched.get(key(row)) ?? { a: row.a, b: row.b };
    if (!existing.after) matched.set(key(row), { ...existing, after: row });
  }
  return [...matched.values()];
}
