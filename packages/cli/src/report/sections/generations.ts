import { escapeHtml, section, table, unavailable } from '../html.js';
import type { GenerationComparison } from '../types.js';
import { howToGet } from './commands.js';

export function generationsSection(generations: readonly GenerationComparison[] | undefined, settings?: string): string {
  const title = 'Generations before and after';
  const explanation = `The same prompts continued by the model before and after pruning${settings ? ` (${escapeHtml(settings)})` : ''}.`;
  if (!generations || generations.length === 0) return section('generations', title, explanation, unavailable('generations', howToGet.generations));
  const text = (value: string | undefined): string => (value === undefined ? '<span class="missing">not generated</span>' : escapeHtml(value));
  const rows = generations.map((g) => [
    escapeHtml(g.prompt),
    text(g.before),
    `${text(g.after)}${g.before !== undefined && g.before === g.after ? ' <span class="same">(unchanged)</span>' : ''}`,
  ]);
  return section('generations', title, explanation, table(['prompt', 'before pruning', 'after pruning'], rows, 'generations'));
}
