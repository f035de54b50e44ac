import { section, unavailable } from '../html.js';
import { colours, groupedBars, type BarSeries } from '../svg.js';
import type { BiasReportView, ReportData } from '../types.js';
import { howToGet } from './commands.js';

/** optiPfair's six hook types in the order the article shows them; other components follow alphabetically. */
export const componentOrder = ['input_norm', 'attention_output', 'gate_proj', 'up_proj', 'down_proj', 'mlp_output'];

const keyPattern = /^(.+)_layer_(\d+)$/;

/** component → layer → mean activation difference, from a bias report's per-key metrics. */
export function layerTable(report: BiasReportView | undefined): Map<string, Map<number, number>> {
  const table = new Map<string, Map<number, number>>();
  for (const [key, stats] of Object.entries(report?.metric?.layers ?? {})) {
    const match = keyPattern.exec(key);
    if (!match) continue;
    const component = match[1]!;
    const byLayer = table.get(component) ?? new Map<number, number>();
    byLayer.set(Number(match[2]), stats.mean_difference);
    table.set(component, byLayer);
  }
  return table;
}

export function orderedComponents(components: Iterable<string>): string[] {
  const rank = (c: string): number => (componentOrder.includes(c) ? componentOrder.indexOf(c) : componentOrder.length);
  return [...new Set(components)].sort((x, y) => rank(x) - rank(y) || x.localeCompare(y));
}

/** One grouped bar chart per component: layers on x, before and after side by side. */
export function layerDifferencesSection(bias: ReportData['bias']): string {
  const title = 'Mean activation difference per layer';
  const explanation =
    'For each layer and component, the mean absolute difference between the activations of the two prompts of each ' +
    'pair (averaged over tokens, neurons and pairs) — optiPfair’s per-layer value d. Higher means the component ' +
    'treats the two groups more differently. For Llama-style models down_proj and mlp_output are the same tensor.';
  const before = layerTable(bias?.before);
  const after = layerTable(bias?.after);
  if (before.size === 0 && after.size === 0) return section('layer-differences', title, explanation, unavailable('per-layer bias metrics', howToGet.bias));
  const charts = orderedComponents([...before.keys(), ...after.keys()]).map((component) => {
    const layers = [...new Set([...(before.get(component)?.keys() ?? []), ...(after.get(component)?.keys() ?? [])])].sort((a, b) => a - b);
    const series: BarSeries[] = [];
    if (before.has(component)) series.push({ name: 'before pruning', colour: colours.before, values: layers.map((l) => before.get(component)?.get(l) ?? null) });
    if (after.has(component)) series.push({ name: 'after pruning', colour: colours.after, values: layers.map((l) => after.get(component)?.get(l) ?? null) });
    return groupedBars({
      id: `layer-diff-${component}`,
      title: component,
      categories: layers.map(String),
      series,
      xLabel: 'decoder layer',
      yLabel: 'mean |A − B| (activation units)',
      width: 400,
      height: 250,
    });
  });
  const missing = after.size === 0 ? unavailable('the after-pruning values', howToGet.biasAfter) : before.size === 0 ? unavailable('the before-pruning values', howToGet.bias) : '';
  return section('layer-differences', title, explanation, `${missing}<div class="grid">${charts.join('')}</div>`);
}
