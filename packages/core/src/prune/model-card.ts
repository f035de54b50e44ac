import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { BiasReport } from '../bias/analyze.js';
import type { BehaviourResult } from '../bias/behaviour.js';
import { ARTIFACTS } from '../io/artifacts.js';
import { writeTextOutput } from '../io/output.js';
import type { PruningPlan } from './plan.js';

/**
 * The model card (`README.md`) of a pruned folder: Hugging Face YAML front matter and a body that says where the
 * model came from, what was removed, and the bias and task numbers before and after.
 */

/** One task's scores as the card shows them (from a `fairprune eval` run on the pruned folder). */
export interface CardEvalEntry {
  /** Task name, e.g. `boolq`. */
  task: string;
  /** Metric values and their standard errors, e.g. `{ acc: 0.63, acc_stderr: 0.008 }`; `"N/A"` when none. */
  metrics: Record<string, number | 'N/A'>;
  /** Documents evaluated. */
  documents: number;
  /** Documents in the task's split. */
  total: number;
  /** Whether a BOS token was prepended. */
  bos: boolean;
  /** ISO time of the evaluation. */
  date: string;
}

/** What {@link renderModelCard} needs. */
export interface ModelCardInput {
  /** The plan that was applied. */
  plan: PruningPlan;
  /** Bias of the original model. */
  before: BiasReport;
  /** Bias of the pruned model, when it was measured. */
  after?: BiasReport;
  /** The base model's hub id when known, else its folder name. */
  baseModel: string;
  /** The base model's license, when its card or config names one. */
  license?: string;
  /** Name of the pruned folder (the card's title). */
  name: string;
  /** Whether the folder holds safetensors weights (then transformers loads it; else only ONNX runtimes do). */
  safetensors: boolean;
  /** Task scores, when `fairprune eval` was run on the folder. */
  evaluation?: readonly CardEvalEntry[];
}

const EVAL_START = '<!-- fairprune:eval:start -->';
const EVAL_END = '<!-- fairprune:eval:end -->';
/** The section's data, kept in the card so a later eval of another task can add to it. */
const EVAL_DATA = /<!-- fairprune:eval-data (.*?) -->/s;

/** A YAML scalar: JSON strings are valid YAML and need no escaping rules of their own. */
const yamlString = (value: string) => JSON.stringify(value);
const fixed = (x: number | undefined, digits = 4) => (x === undefined ? 'n/a' : x.toFixed(digits));
const plain = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));
const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function behaviourTable(before: readonly BehaviourResult[], after: readonly BehaviourResult[] | undefined): string[] {
  if (before.length === 0) return ['No pair carried negative/positive continuations, so no behavioural gap was measured.'];
  const lines = [
    'Log-odds of the negative over the positive continuations after each prompt (natural log; higher = pushed more',
    'towards the negative ones), and the gap between the two sides:',
    '',
    '| prompt a | prompt b | side a before → after | side b before → after | gap before → after |',
    '|---|---|---|---|---|',
  ];
  before.forEach((b, i) => {
    const a = after?.[i];
    const arrow = (x: number, y: number | undefined) => `${fixed(x, 3)} → ${fixed(y, 3)}`;
    lines.push(`| ${cell(b.a)} | ${cell(b.b)} | ${arrow(b.logOddsA, a?.logOddsA)} | ${arrow(b.logOddsB, a?.logOddsB)} | ${arrow(b.gap, a?.gap)} |`);
  });
  return lines;
}

/** The eval section's body (between its markers): a table per task, or how to get one. */
export function renderCardEvalSection(entries: readonly CardEvalEntry[] | undefined, name: string): string {
  const lines = [EVAL_START, '## Evaluation', ''];
  if (!entries || entries.length === 0) {
    lines.push(
      'Not evaluated yet. `fairprune eval` on this folder fills this section in (0-shot, lm-evaluation-harness protocol):',
      '',
      '```sh',
      `fairprune eval ${name} --tasks boolq,lambada_openai --output-path results/`,
      '```',
    );
  } else {
    lines.push(
      'Scores of this folder with the lm-evaluation-harness protocol (0-shot log-likelihoods), from `fairprune eval`.',
      'Compare them with the base model evaluated the same way, not with numbers from other harness versions.',
      '',
      '| task | metric | value | ± stderr | documents | BOS | date |',
      '|---|---|---|---|---|---|---|',
    );
    for (const entry of [...entries].sort((x, y) => (x.task < y.task ? -1 : 1))) {
      for (const [metric, value] of Object.entries(entry.metrics)) {
        if (metric.endsWith('_stderr')) continue;
        const stderr = entry.metrics[`${metric}_stderr`];
        const docs = entry.documents === entry.total ? `${entry.documents}` : `${entry.documents} of ${entry.total}`;
        lines.push(
          `| ${entry.task} | ${metric} | ${typeof value === 'number' ? value.toFixed(4) : value} | ${typeof stderr === 'number' ? stderr.toFixed(4) : 'n/a'} | ${docs} | ${entry.bos ? 'yes' : 'no'} | ${entry.date} |`,
        );
      }
    }
    lines.push('', `<!-- fairprune:eval-data ${JSON.stringify(entries)} -->`);
  }
  lines.push(EVAL_END);
  return lines.join('\n');
}

/**
 * Renders the card: YAML front matter (`base_model`, `tags`, `license` when known, `pipeline_tag`, `library_name`)
 * and the method with every option, neurons removed per layer, parameters before/after, the bias metric and the
 * behavioural gaps on both sides before/after, the evaluation section, how to reproduce, and the limitations.
 */
export function renderModelCard(input: ModelCardInput): string {
  const { plan, before, after } = input;
  const removed = Object.entries(plan.layers).map(([layer, indices]) => [Number(layer), indices.length] as const).sort((x, y) => x[0] - y[0]);
  const total = removed.reduce((n, [, count]) => n + count, 0);
  const widthBefore = plan.model.intermediateSizes.reduce((n, w) => n + w, 0);
  const verb = plan.mode === 'remove' ? 'removed' : 'zeroed';
  const front = [
    '---',
    `base_model: ${yamlString(input.baseModel)}`,
    'tags:',
    ...['fairprune', 'pruned', 'fairness', 'bias-mitigation', 'onnx'].map((tag) => `- ${tag}`),
    ...(input.license !== undefined ? [`license: ${yamlString(input.license)}`] : []),
    'pipeline_tag: text-generation',
    `library_name: ${input.safetensors ? 'transformers' : 'onnx'}`,
    '---',
  ];
  const metricLine = (label: string, x: number | undefined, y: number | undefined) => `| ${label} | ${fixed(x, 6)} | ${fixed(y, 6)} |`;
  const body = [
    `# ${input.name}`,
    '',
    `\`${input.baseModel}\` with ${total} of ${widthBefore} MLP neurons ${verb} by Fairness Pruning (fairprune): the neurons`,
    'whose activations differed most between prompts that differ only in a demographic word, weighed against how',
    'important their weights are.',
    '',
    '## Method',
    '',
    'For every GLU MLP neuron, a bias score (how differently it activates on the two prompts of each pair) and a',
    'weight importance were computed; the neurons with the highest prunability',
    'P = w·bias + (1 − w)·(1 − importance) were ' + `${verb} (${plan.mode === 'remove' ? 'gate and up rows and the down column sliced out' : 'their weights set to zero, shapes unchanged'}).`,
    '',
    '| option | value |',
    '|---|---|',
    ...Object.entries(plan.options).map(([key, value]) => `| ${cell(key)} | ${cell(plain(value))} |`),
    `| weights scored | ${cell(plan.model.weightsFile)} (sha256 ${plan.model.weightsHash.slice(0, 16)}…) |`,
    `| made by | ${cell(plan.tool)}, ${plan.createdAt} |`,
    '',
    '## Neurons removed per layer',
    '',
    `| layer | ${verb} | width before → after |`,
    '|---|---|---|',
    ...removed.map(([layer, count]) => `| ${layer} | ${count} | ${plan.model.intermediateSizes[layer]} → ${plan.intermediateSizes[layer]} |`),
    '',
    `The exact neuron indices are in \`pruning-plan.json\`; per-neuron scores in \`neuron-scores.json\`.`,
    '',
    '## Parameters',
    '',
    `${plan.parameters.before.toLocaleString('en-US')} before, ${plan.parameters.after.toLocaleString('en-US')} after ` +
      `(${plan.parameters.affected.toLocaleString('en-US')} ${verb}, ${((100 * plan.parameters.affected) / plan.parameters.before).toFixed(3)}%).`,
    '',
    '## Bias before and after',
    '',
    'The activation-difference metric (optiPfair\'s `overall.mean_difference`: mean |A − B| of the activations of the',
    'two prompts of each pair, over layers and components; lower = treated more alike):',
    '',
    '| metric | before | after |',
    '|---|---|---|',
    metricLine('overall', before.metric?.overall.mean_difference, after?.metric?.overall.mean_difference),
    metricLine('without gate/up (not flattered by removed neurons)', before.metric?.overall_excluding_gate_up.mean_difference, after?.metric?.overall_excluding_gate_up.mean_difference),
    ...(before.eval
      ? [metricLine(`held-out pairs (${cell(before.eval.source)})`, before.eval.metric?.overall.mean_difference, after?.eval?.metric?.overall.mean_difference)]
      : []),
    '',
    `Behaviour on the pairs the neurons were selected with (${cell(before.source)}):`,
    '',
    ...behaviourTable(before.behaviour, after?.behaviour),
    ...(before.eval ? ['', `Behaviour on held-out pairs (${cell(before.eval.source)}):`, '', ...behaviourTable(before.eval.behaviour, after?.eval?.behaviour)] : []),
    ...(after ? [] : ['', 'The pruned model was not measured again (`analyzeAfter: false`); the "after" columns are empty.']),
    '',
    renderCardEvalSection(input.evaluation, input.name),
    '',
    '## How to reproduce',
    '',
    'Apply the same plan to the base model (the weights must hash the same, see `pruning-plan.json`):',
    '',
    '```sh',
    `fairprune prune ${input.baseModel} --out ${input.name} --plan pruning-plan.json`,
    '```',
    '',
    '`bias-report.before.json` and `bias-report.after.json` hold every number above, per layer and per component.',
    '',
    '## Limitations',
    '',
    '- The bias numbers come from the prompt pairs listed above only; they say nothing about other groups, phrasings',
    '  or languages, and a narrower gap can come from either side moving (check both columns).',
    '- The activation metric averages over every token position, including those before the demographic word.',
    '- Removing neurons can cost ability on tasks not measured here; evaluate on your own tasks before use.',
    '- This is the base model with neurons removed, nothing more: it keeps the base model\'s other biases, its',
    '  license and its intended uses.',
    ...(input.safetensors ? [] : ['- Only ONNX weights were written (uneven removal cannot be expressed in safetensors), so transformers cannot load it.']),
    '',
  ];
  return [...front, '', ...body].join('\n');
}

/** The eval entries a card holds (empty when it has none or is not a fairprune card). */
export function readCardEval(card: string): CardEvalEntry[] {
  const match = EVAL_DATA.exec(card);
  return match ? (JSON.parse(match[1]!) as CardEvalEntry[]) : [];
}

/**
 * Replaces the card's evaluation section with one holding `entries` merged over the entries it had (a task
 * evaluated again replaces its row). Everything outside the section is kept byte for byte.
 * @throws when the card has no fairprune evaluation section.
 */
export function updateCardEval(card: string, entries: readonly CardEvalEntry[], name: string): string {
  const start = card.indexOf(EVAL_START);
  const end = card.indexOf(EVAL_END);
  if (start < 0 || end < start) throw new Error(`the card has no fairprune evaluation section (${EVAL_START} … ${EVAL_END})`);
  const merged = new Map(readCardEval(card).map((e) => [e.task, e]));
  for (const entry of entries) merged.set(entry.task, entry);
  return card.slice(0, start) + renderCardEvalSection([...merged.values()], name) + card.slice(end + EVAL_END.length);
}

/**
 * Updates the evaluation section of `dir/README.md` in place (atomically) when it is a fairprune card and a plain
 * file (not a link into a Hugging Face cache).
 * @returns the card's path, or undefined when nothing was written.
 */
export async function updateModelCardEval(dir: string, entries: readonly CardEvalEntry[]): Promise<string | undefined> {
  const path = join(dir, ARTIFACTS.modelCard);
  // A symlink is a Hugging Face cache snapshot pointing into its blobs, which must not change.
  if (!existsSync(path) || lstatSync(path).isSymbolicLink()) return undefined;
  const card = readFileSync(path, 'utf8');
  if (!card.includes(EVAL_START)) return undefined;
  return writeTextOutput(path, updateCardEval(card, entries, basename(dir)), 'eval');
}

/** A card's YAML front matter, parsed; empty when it has none or it does not parse. */
function frontMatter(card: string): Record<string, unknown> {
  const match = /^---\r?\n([\s\S]*?)\r?\n---\r?\n/.exec(card);
  if (!match) return {};
  try {
    const value = parseYaml(match[1]!) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** What a base model folder says about itself, for the card's front matter. */
export interface BaseModelInfo {
  /** Its hub id, else its folder name. */
  baseModel: string;
  /** Its license, when its card or config names one. */
  license?: string;
}

/**
 * The base model's name and license as far as its folder tells: `_name_or_path` of config.json when it is a hub
 * id, else the folder name; `license` from its README.md front matter, else from config.json.
 */
export function baseModelInfo(dir: string): BaseModelInfo {
  const config = existsSync(join(dir, 'config.json')) ? (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>) : {};
  const card = existsSync(join(dir, 'README.md')) ? frontMatter(readFileSync(join(dir, 'README.md'), 'utf8')) : {};
  const nameOrPath = config['_name_or_path'];
  const hubId = typeof nameOrPath === 'string' && /^[\w.-]+\/[\w.-]+$/.test(nameOrPath) ? nameOrPath : undefined;
  const license = typeof card['license'] === 'string' ? card['license'] : typeof config['license'] === 'string' ? config['license'] : undefined;
  return { baseModel: hubId ?? basename(dir), ...(license !== undefined ? { license } : {}) };
}

/**
 * Writes the model card of a finished pruning run into `work` (the output's folder while it is being written; the
 * output protocol makes it visible with everything else) for the folder that will be named `outDir`.
 */
export function writeModelCard(work: string, outDir: string, inputDir: string, parts: { plan: PruningPlan; before: BiasReport; after?: BiasReport }): void {
  const safetensors = readdirSync(work).some((f) => f.endsWith('.safetensors'));
  writeFileSync(join(work, ARTIFACTS.modelCard), renderModelCard({ ...parts, ...baseModelInfo(inputDir), name: basename(outDir), safetensors }));
}
