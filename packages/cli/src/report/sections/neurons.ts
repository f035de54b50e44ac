import { escapeHtml, section, unavailable } from '../html.js';
import { colours, formatNumber, scatter } from '../svg.js';
import type { NeuronScatterData } from '../types.js';
import { howToGet } from './commands.js';

/** Above this many kept neurons per layer the chart shows a sample (all pruned neurons are always drawn). */
export const maxKeptPointsPerLayer = 1000;

/** Kept neurons to draw: the highest-bias half of the budget (the ones near the cut) plus an even sample of the rest. */
export function sampleKept(kept: readonly number[], bias: ArrayLike<number>, budget: number): number[] {
  if (kept.length <= budget) return [...kept];
  const byBias = [...kept].sort((x, y) => (bias[y] ?? 0) - (bias[x] ?? 0));
  const top = byBias.slice(0, Math.floor(budget / 2));
  const rest = byBias.slice(top.length);
  const stride = rest.length / (budget - top.length);
  const sampled = Array.from({ length: budget - top.length }, (_, i) => rest[Math.floor(i * stride)]!);
  return [...top, ...sampled].sort((x, y) => x - y);
}

export function neuronsSection(neurons: NeuronScatterData | undefined): string {
  const title = 'Neuron bias against importance';
  const explanation =
    'Each point is one MLP neuron of a layer: how differently it reacts to the two prompts of each pair (bias), ' +
    'against how much the model relies on it (importance from its weights). Fairness pruning removes neurons with high ' +
    'bias and low importance (top left), marked as crosses.';
  if (!neurons || neurons.layers.length === 0) return section('neurons', title, explanation, unavailable('per-neuron scores and the pruning plan', howToGet.neurons));
  const notes: string[] = [];
  const charts = neurons.layers.map(({ layer, bias, importance, pruned }) => {
    if (bias.length !== importance.length) {
      throw new Error(`report: layer ${layer} has ${bias.length} bias scores but ${importance.length} importance scores`);
    }
    const prunedSet = new Set(pruned);
    const kept = Array.from({ length: bias.length }, (_, i) => i).filter((i) => !prunedSet.has(i));
    const shownKept = sampleKept(kept, bias, maxKeptPointsPerLayer);
    if (shownKept.length < kept.length) notes.push(`layer ${layer}: ${shownKept.length} of ${kept.length} kept neurons shown`);
    const point = (i: number) => ({
      x: importance[i] ?? 0,
      y: bias[i] ?? 0,
      label: `neuron ${i}: bias ${formatNumber(bias[i] ?? 0)}, importance ${formatNumber(importance[i] ?? 0)}`,
    });
    return scatter({
      id: `neurons-layer-${layer}`,
      title: `Layer ${layer} (${pruned.length} of ${bias.length} pruned)`,
      groups: [
        { name: 'kept', colour: colours.kept, shape: 'circle', className: 'kept', points: shownKept.map(point) },
        { name: 'pruned', colour: colours.pruned, shape: 'cross', className: 'pruned', points: [...prunedSet].sort((x, y) => x - y).map(point) },
      ],
      xLabel: `importance${neurons.importanceLabel ? ` (${neurons.importanceLabel})` : ''}`,
      yLabel: `bias${neurons.biasLabel ? ` (${neurons.biasLabel})` : ''}`,
      width: 380,
      height: 300,
    });
  });
  const sampled = notes.length > 0 ? `<p class="note">Sampled for size: ${escapeHtml(notes.join('; '))}.</p>` : '';
  return section('neurons', title, explanation, `<div class="grid">${charts.join('')}</div>${sampled}`);
}
