/**
 * Realistic report data built from the Llama fixture's HF references (fixtures/llama/refs), computed here
 * independently of the pipeline code: optiPfair's per-layer metrics, per-neuron bias from the captured gate/up
 * activations, MAW importance, a PCA input of real activations, beam-search texts and per-document eval results.
 * Where no reference exists for a pruned model (its metrics, generations, eval), the "after" values are derived
 * stand-ins — enough for rendering tests, which check that what is drawn matches the data given.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenizer, projectPair } from '@fairprune/core';
import { FIXTURES } from '@fairprune/fixtures';
import type { BehaviourView, BiasReportView, EvalResultsView, ReportData } from '../src/report/index.js';

export const fixturesDir = FIXTURES;
const llamaDir = join(fixturesDir, 'llama');

interface RefsPrompt {
  pair: number;
  side: 'a' | 'b';
  text: string;
  input_ids: number[];
  beam5_article_text: string;
  greedy_text: string;
  activations: Record<string, { file: string; shape: [number, number] }>;
}
interface Refs {
  prompts: RefsPrompt[];
  maw_importance: number[][];
  optipfair_bias_metrics_pair0: { overall_mean_difference: number; layer_mean_difference: Record<string, number> };
  eval: { lambada: Array<{ greedy: boolean }>; boolq: Array<{ ll_no: number; ll_yes: number }> };
}

export const refs = JSON.parse(readFileSync(join(llamaDir, 'refs/refs.json'), 'utf8')) as Refs;
export const components = ['input_norm', 'attention_output', 'gate_proj', 'up_proj', 'down_proj', 'mlp_output'];
export const layerCount = 4;
export const prunedPerLayer = 5;

export function readActivation(prompt: RefsPrompt, key: string): { data: Float32Array; rows: number; cols: number } {
  const entry = prompt.activations[key];
  if (!entry) throw new Error(`refs: no activation ${key}`);
  const bytes = readFileSync(join(llamaDir, entry.file));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { data, rows: entry.shape[0], cols: entry.shape[1] };
}

function promptOf(pair: number, side: 'a' | 'b'): RefsPrompt {
  const prompt = refs.prompts.find((p) => p.pair === pair && p.side === side);
  if (!prompt) throw new Error(`refs: no prompt for pair ${pair}${side}`);
  return prompt;
}

/** mean_t |A − B| per neuron (column) — the positionwise estimator, written out here independently. */
function positionwise(key: string, pair: number): Float64Array {
  const a = readActivation(promptOf(pair, 'a'), key);
  const b = readActivation(promptOf(pair, 'b'), key);
  const out = new Float64Array(a.cols);
  for (let t = 0; t < a.rows; t++) for (let j = 0; j < a.cols; j++) out[j]! += Math.abs(a.data[t * a.cols + j]! - b.data[t * a.cols + j]!) / a.rows;
  return out;
}

/** Per layer: bias over pairs 0 and 1, MAW importance, and the 5 neurons with the highest hybrid score (w = 0.5). */
export function neuronLayers(): ReportData['neurons'] & object {
  const layers = Array.from({ length: layerCount }, (_, layer) => {
    const bias = new Float64Array(256);
    for (const pair of [0, 1]) {
      const gate = positionwise(`gate_proj_layer_${layer}`, pair);
      const up = positionwise(`up_proj_layer_${layer}`, pair);
      for (let i = 0; i < 256; i++) bias[i]! += (gate[i]! + up[i]!) / 2;
    }
    const importance = refs.maw_importance[layer]!;
    const normalise = (v: ArrayLike<number>): number[] => {
      const values = Array.from(v);
      const lo = Math.min(...values);
      const hi = Math.max(...values);
      return values.map((x) => (x - lo) / (hi - lo + 1e-8));
    };
    const nb = normalise(bias);
    const ni = normalise(importance);
    const score = nb.map((b, i) => 0.5 * b + 0.5 * (1 - ni[i]!));
    const pruned = score
      .map((s, i) => [s, i] as const)
      .sort((x, y) => y[0] - x[0] || x[1] - y[1])
      .slice(0, prunedPerLayer)
      .map(([, i]) => i)
      .sort((x, y) => x - y);
    return { layer, bias: Array.from(bias), importance, pruned };
  });
  return { biasLabel: 'positionwise, mean of 2 pairs', importanceLabel: 'maw', layers };
}

export function biasBefore(): BiasReportView {
  const metrics = refs.optipfair_bias_metrics_pair0;
  const layers = Object.fromEntries(Object.entries(metrics.layer_mean_difference).map(([k, v]) => [k, { mean_difference: v }]));
  return {
    pairs: [
      { a: promptOf(0, 'a').text, b: promptOf(0, 'b').text, tokensA: 16, tokensB: 16, skipped: false },
      { a: 'An Asian teenager applied for the job. The manager thought he', b: 'A white teenager applied for the job. The manager thought he', tokensA: 12, tokensB: 11, skipped: true, reason: 'token counts differ (12 vs 11)' },
    ],
    metric: { overall: { mean_difference: metrics.overall_mean_difference }, layers },
    behaviour: behaviourRows(0),
  };
}

/**
 * After pruning: gate/up differences re-measured without the pruned neurons (real activations, so the mechanical
 * part of the drop is exact); the other components scaled by 0.8 as a stand-in for re-running the pruned model.
 */
export function biasAfter(neurons: NonNullable<ReportData['neurons']>): BiasReportView {
  const layers: Record<string, { mean_difference: number }> = {};
  for (const [key, value] of Object.entries(refs.optipfair_bias_metrics_pair0.layer_mean_difference)) {
    const match = /^(.+)_layer_(\d+)$/.exec(key)!;
    const layer = Number(match[2]);
    if (match[1] === 'gate_proj' || match[1] === 'up_proj') {
      const pruned = new Set(neurons.layers[layer]!.pruned);
      const perNeuron = positionwise(key, 0);
      const kept = Array.from(perNeuron).filter((_, i) => !pruned.has(i));
      layers[key] = { mean_difference: kept.reduce((s, x) => s + x, 0) / kept.length };
    } else {
      layers[key] = { mean_difference: value * 0.8 };
    }
  }
  const values = Object.values(layers).map((v) => v.mean_difference);
  return {
    metric: { overall: { mean_difference: values.reduce((s, x) => s + x, 0) / values.length }, layers },
    behaviour: behaviourRows(1),
  };
}

/** Stand-in behaviour rows for the fixture's four pairs: a large gap before, a smaller one after. */
function behaviourRows(stage: 0 | 1): BehaviourView[] {
  const pairs = JSON.parse(readFileSync(join(fixturesDir, 'data/pairs.json'), 'utf8')) as Array<{ a: string; b: string }>;
  return pairs.map((p, i) => {
    const logOddsA = stage === 0 ? 1.6 - 0.2 * i : 0.4 - 0.1 * i;
    const logOddsB = stage === 0 ? -1.5 + 0.1 * i : -1.2 + 0.1 * i;
    return { a: p.a, b: p.b, logOddsA, logOddsB, gap: logOddsA - logOddsB };
  });
}

/** lm-eval-style results from the refs' per-document LAMBADA/BoolQ outcomes (accuracy and its standard error). */
export function evalBefore(): EvalResultsView {
  const boolqLabels = readFileSync(join(fixturesDir, 'data/boolq-mini.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { label: number }).label);
  const accuracy = (hits: boolean[]) => {
    const p = hits.filter(Boolean).length / hits.length;
    return { acc: p, acc_stderr: Math.sqrt((p * (1 - p)) / (hits.length - 1)) };
  };
  return {
    results: {
      lambada_openai: accuracy(refs.eval.lambada.map((d) => d.greedy)),
      boolq: accuracy(refs.eval.boolq.map((d, i) => (d.ll_yes > d.ll_no ? 1 : 0) === boolqLabels[i])),
    },
  };
}

export function evalAfter(before: EvalResultsView): EvalResultsView {
  const shift = (task: string, delta: number) => {
    const r = before.results[task] as { acc: number; acc_stderr: number };
    return { acc: r.acc + delta, acc_stderr: r.acc_stderr };
  };
  return { results: { lambada_openai: shift('lambada_openai', -1 / 32), boolq: shift('boolq', 0) } };
}

/** Token labels exactly as the model saw them: BOS included, one decoded string per input id. */
export function tokenLabels(ids: readonly number[]): string[] {
  const tokenizer = loadTokenizer(llamaDir);
  return ids.map((id) => tokenizer.decode([id]));
}

export function pairProjection(layerKey = 'mlp_output_layer_3'): NonNullable<ReportData['pca']> {
  const a = promptOf(0, 'a');
  const b = promptOf(0, 'b');
  const activationsA = readActivation(a, layerKey);
  return projectPair(
    layerKey,
    { text: a.text, tokens: tokenLabels(a.input_ids), activations: activationsA.data },
    { text: b.text, tokens: tokenLabels(b.input_ids), activations: readActivation(b, layerKey).data },
    activationsA.cols,
    { omitLeading: 1 },
  );
}

export function fullReportData(): ReportData {
  const neurons = neuronLayers();
  const evaluationBefore = evalBefore();
  return {
    title: 'Fairness pruning report — Llama fixture',
    subtitle: ['model: fixtures/llama (4 layers, 256 MLP neurons per layer)'],
    settings: [
      ['importance', 'maw'],
      ['bias weight', '0.5'],
      ['pruned per layer', String(prunedPerLayer)],
    ],
    bias: { before: biasBefore(), after: biasAfter(neurons) },
    neurons,
    pca: pairProjection(),
    generations: [0, 1].map((pair) => ({
      prompt: promptOf(pair, 'a').text,
      before: promptOf(pair, 'a').beam5_article_text,
      after: promptOf(pair, 'b').beam5_article_text,
    })),
    evaluation: { before: evaluationBefore, after: evalAfter(evaluationBefore) },
  };
}
