import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  ARTIFACTS,
  ModelSession,
  jsonText,
  openOutput,
  readMarker,
  analyzeBias,
  generate,
  loadPairs,
  openModelFolder,
  readGenerationDefaults,
  requireOnnxPath,
  runFairnessPruning,
  type BehaviourResult,
  type BiasReport,
  type PromptPair,
} from '@fairprune/core';
import { evaluate, type EvalResults, type TaskName } from '@fairprune/eval';
import { readAbilityGuard, readCalibration } from '../calibration.js';
import { behaviourShift, loadReportData, renderReport, type BehaviourShift } from '../report/index.js';
import { demoRoot } from './root.js';

export { demoRoot };

/**
 * The settings the demo prunes with, and why. The article's fraction (0.002) would prune nothing here: the tiny model
 * has 256 MLP neurons per layer and floor(0.002 · 256) = 0. `node tools/demo/settings-sweep.mjs` compares fractions
 * 0.02–0.2 and both importance methods: 0.1 gives the largest drop of the bias metric that leaves mini-LAMBADA at
 * 1.000 and keeps BoolQ within one standard error.
 */
export const demoSettings = {
  importance: 'ppm',
  biasWeight: 0.5,
  fraction: 0.1,
  estimator: 'positionwise',
  mode: 'remove',
} as const;

const settingsReason =
  'ppm importance and bias weight 0.5 are what the article\'s notebook ran; the fraction is 0.1 instead of 0.002 because ' +
  'this model has 256 MLP neurons per layer (0.002 would prune none), and 0.1 is the largest drop of the bias metric ' +
  'that keeps mini-LAMBADA unchanged (tools/demo/settings-sweep.mjs). Neurons are selected on the seed pair only, as ' +
  'in the article; the behaviour is measured on the other, held-out pairs.';

/** The article's generation settings. */
const articleGeneration = { numBeams: 5, maxLength: 50, noRepeatNgramSize: 2, earlyStopping: true } as const;

const evalTasks: ReadonlyArray<{ task: TaskName; file: string }> = [
  { task: 'lambada_openai', file: 'lambada-mini.jsonl' },
  { task: 'boolq', file: 'boolq-mini.jsonl' },
];

/** `--method behaviour` in the demo: chosen on the selection pairs, measured on the disjoint held-out set; defaults otherwise. */
const behaviourFiles = {
  selection: 'behaviour-selection.json',
  heldOut: 'behaviour-heldout.json',
  calibration: 'lambada-mini.jsonl',
  // BoolQ-format, disjoint from boolq-mini.jsonl (the evaluated set): the answer-margin guard.
  abilityGuard: 'boolq-calibration.jsonl',
} as const;

export interface DemoOptions {
  /** Output folder; replaced if it holds an earlier demo's output (without `force`); a folder fairprune did not write is refused. */
  outDir: string;
  /** Replace any earlier fairprune output at `outDir`, not only a demo's. */
  force?: boolean;
  threads?: number;
  /**
   * Also run `--method behaviour` and compare it with the article's method on 24 held-out pairs (several minutes on a
   * laptop: it measures each neuron's effect by ablation). Default false.
   */
  compareMethods?: boolean;
  onProgress?: (message: string) => void;
}

interface SideValues {
  before: number;
  after: number;
}

export interface DemoSummary {
  format: 'fairprune.demo';
  version: 1;
  model: string;
  settings: typeof demoSettings & { selectionPairs: string[]; heldOutPairs: string[]; why: string };
  prunedNeurons: { perLayer: number[]; total: number; of: number };
  parameters: { before: number; after: number };
  biasMetric: { overall: SideValues; excludingGateUp: SideValues };
  behaviour: {
    pairs: Array<{ a: string; b: string; logOddsA: SideValues; logOddsB: SideValues; gap: SideValues }>;
    shift: BehaviourShift | null;
  };
  evaluation: Record<string, { acc: SideValues; accStderr: SideValues }>;
  generations: Array<{ prompt: string; before: string; after: string }>;
  /** With `compareMethods`: the article's method and `--method behaviour` side by side, measured on the same held-out pairs. */
  comparison?: {
    selectionPairs: string;
    heldOutPairs: string;
    heldOutCount: number;
    methods: MethodOutcome[];
  };
  notes: string[];
  files: { report: string; summary: string; prunedModel: string; baseline: string; behaviourModel?: string; behaviourReport?: string };
  seconds: number;
}

/** One selection method's outcome in the side-by-side comparison. */
export interface MethodOutcome {
  method: string;
  neurons: number;
  /** Which side moved the held-out gap. */
  heldOut: BehaviourShift | null;
  evaluation: Record<string, SideValues>;
  generations: Array<{ prompt: string; before: string; after: string }>;
}

async function readBehaviourPairs(): Promise<PromptPair[]> {
  const file = join(demoRoot, 'data', 'behaviour.json');
  const pairs = await loadPairs(file);
  if (pairs.length < 2) throw new Error(`${file}: expected at least two prompt pairs`);
  return pairs;
}

async function generateAll(modelDir: string, prompts: readonly string[], threads?: number): Promise<string[]> {
  const folder = openModelFolder(modelDir);
  const session = await ModelSession.create(requireOnnxPath(folder), { config: folder.config, ...(threads ? { threads } : {}) });
  try {
    const ids = prompts.map((p) => folder.tokenizer.encode(p));
    const outputs = await generate(session, ids, { ...readGenerationDefaults(modelDir), ...articleGeneration });
    return outputs.map((sequences, i) => folder.tokenizer.decode(sequences[0]!.ids.slice(ids[i]!.length), { skipSpecialTokens: true }));
  } finally {
    await session.release();
  }
}

async function evaluateAll(modelDir: string, threads?: number): Promise<EvalResults[]> {
  const results: EvalResults[] = [];
  for (const { task, file } of evalTasks) {
    results.push(await evaluate({ model: modelDir, task, data: { file: join(demoRoot, 'data', file) }, batchSize: 8, ...(threads ? { threads } : {}) }));
  }
  return results;
}

function writeJson(file: string, value: unknown): void {
  writeFileSync(file, jsonText(value));
}

function heldOutBehaviour(report: BiasReport): readonly BehaviourResult[] {
  return report.eval?.behaviour ?? [];
}

/**
 * The whole Fairness Pruning story on the bundled biased model: analyze, prune, re-analyze, held-out behaviour,
 * mini LAMBADA/BoolQ and the article's beam search, before and after; writes report.html and report.json.
 */
export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const started = performance.now();
  const progress = options.onProgress ?? (() => {});
  const outDir = resolve(options.outDir);
  const modelDir = join(demoRoot, 'model');
  // Everything is written under the output's temp folder and renamed at the end: an interrupted demo leaves no half
  // folder. An earlier demo's output is replaced without --force, as a second demo run is expected to.
  const output = openOutput(outDir, { kind: 'dir', command: 'demo', force: options.force === true || readMarker(outDir)?.command === 'demo' });
  const work = output.tempPath;
  try {
    mkdirSync(join(work, 'baseline'));
    const [seed, ...heldOut] = await readBehaviourPairs();
    const prunedDir = join(work, 'pruned-model');

    progress('analyzing the original model and pruning it');
    const pruning = await runFairnessPruning(modelDir, {
      outDir: prunedDir,
      pairs: [seed!],
      pairsSource: 'demo/data/behaviour.json pair 0 (the seed pair)',
      evalPairs: heldOut,
      evalPairsSource: 'demo/data/behaviour.json pairs 1-3 (held out)',
      tokenActivations: { pair: 0 },
      ...demoSettings,
      ...(options.threads ? { threads: options.threads } : {}),
      onProgress: progress,
    });
    const after = pruning.after;
    if (!after?.metric || !pruning.before.metric) throw new Error('demo: the bias metric could not be computed (no pair with equal token counts)');

    const prompts = [seed!.a, seed!.b, heldOut[0]!.a, heldOut[0]!.b];
    progress('generating with the article\'s beam search, before and after');
    const generationsBefore = await generateAll(modelDir, prompts, options.threads);
    const generationsAfter = await generateAll(prunedDir, prompts, options.threads);
    writeJson(join(work, 'baseline', 'generations.json'), prompts.map((prompt, i) => ({ prompt, text: generationsBefore[i] })));
    writeJson(join(prunedDir, 'generations.json'), prompts.map((prompt, i) => ({ prompt, text: generationsAfter[i] })));

    progress('evaluating mini LAMBADA and BoolQ, before and after');
    const evalBefore = await evaluateAll(modelDir, options.threads);
    const evalAfter = await evaluateAll(prunedDir, options.threads);
    evalTasks.forEach(({ task }, i) => {
      writeJson(join(work, 'baseline', `eval-${task}.json`), evalBefore[i]);
      writeJson(join(prunedDir, `eval-${task}.json`), evalAfter[i]);
    });

    const comparison = options.compareMethods
      ? await (async (): Promise<NonNullable<DemoSummary['comparison']>> => {
        progress('choosing neurons by their measured effect on the behaviour (--method behaviour)');
        const behaviourDir = join(work, 'behaviour-model');
        const selectionPairs = await loadPairs(join(demoRoot, 'data', behaviourFiles.selection));
        const heldOutSet = await loadPairs(join(demoRoot, 'data', behaviourFiles.heldOut));
        const calibrationTexts = readCalibration(join(demoRoot, 'data', behaviourFiles.calibration));
        const ability = await readAbilityGuard(join(demoRoot, 'data', behaviourFiles.abilityGuard), `demo/data/${behaviourFiles.abilityGuard}`);
        const byBehaviour = await runFairnessPruning(modelDir, {
          outDir: behaviourDir,
          pairs: selectionPairs,
          pairsSource: `demo/data/${behaviourFiles.selection}`,
          evalPairs: heldOutSet,
          evalPairsSource: `demo/data/${behaviourFiles.heldOut} (held out)`,
          method: 'behaviour',
          behaviour: { ability },
          calibrationTexts,
          calibrationSource: `demo/data/${behaviourFiles.calibration}`,
          tokenActivations: false,
          ...(options.threads ? { threads: options.threads } : {}),
          onProgress: progress,
        });
        const behaviourGenerations = await generateAll(behaviourDir, prompts, options.threads);
        writeJson(join(behaviourDir, 'generations.json'), prompts.map((prompt, i) => ({ prompt, text: behaviourGenerations[i] })));
        const evalBehaviour = await evaluateAll(behaviourDir, options.threads);
        evalTasks.forEach(({ task }, i) => writeJson(join(behaviourDir, `eval-${task}.json`), evalBehaviour[i]));
        // The article's pruned model measured on the same held-out set, so the two methods compare like for like.
        const articleOnHeldOut = (await analyzeBias(prunedDir, { pairs: [seed!], evalPairs: heldOutSet, tokenActivations: false, ...(options.threads ? { threads: options.threads } : {}) })).report;
        const baseOnHeldOut = heldOutBehaviour(byBehaviour.before);
        const outcome = (method: string, neurons: number, afterRows: readonly BehaviourResult[], evalAfterResults: EvalResults[], texts: string[]): MethodOutcome => ({
          method,
          neurons,
          heldOut: behaviourShift(baseOnHeldOut, afterRows),
          evaluation: Object.fromEntries(evalTasks.map(({ task }, i) => [task, { before: evalBefore[i]!.results[task]!.acc, after: evalAfterResults[i]!.results[task]!.acc }])),
          generations: prompts.map((prompt, i) => ({ prompt, before: generationsBefore[i]!, after: texts[i]! })),
        });
        const countOf = (layers: Record<string, number[]>) => Object.values(layers).reduce((n, l) => n + l.length, 0);
        return {
          selectionPairs: `demo/data/${behaviourFiles.selection} (${selectionPairs.length} pairs; the article's method uses the seed pair, its first)`,
          heldOutPairs: `demo/data/${behaviourFiles.heldOut}`,
          heldOutCount: heldOutSet.length,
          methods: [
            outcome(`article: ${demoSettings.importance}, bias weight ${demoSettings.biasWeight}, fraction ${demoSettings.fraction} per layer, seed pair`, countOf(pruning.plan.layers), heldOutBehaviour(articleOnHeldOut), evalAfter, generationsAfter),
            outcome('behaviour: --method behaviour with its defaults, selection pairs', countOf(byBehaviour.plan.layers), heldOutBehaviour(byBehaviour.after!), evalBehaviour, behaviourGenerations),
          ],
        };
        })()
      : undefined;

    const behaviourBefore = heldOutBehaviour(pruning.before);
    const behaviourAfter = heldOutBehaviour(after);
    const shift = behaviourShift(behaviourBefore, behaviourAfter);
    const perLayer = Object.values(pruning.plan.layers).map((indices) => indices.length);
    const widths = pruning.plan.model.intermediateSizes;
    const notes = [
      `Settings: ${settingsReason}`,
      ...(shift ? [`Held-out behaviour: ${shift.reading}`] : []),
      'This model was trained on a synthetic corpus with the bias planted on purpose; its numbers show that the pipeline works, not how a real model behaves.',
    ];

    const evaluation: DemoSummary['evaluation'] = {};
    evalTasks.forEach(({ task }, i) => {
      const b = evalBefore[i]!.results[task]!;
      const a = evalAfter[i]!.results[task]!;
      evaluation[task] = {
        acc: { before: b.acc, after: a.acc },
        accStderr: { before: Number(b.acc_stderr), after: Number(a.acc_stderr) },
      };
    });

    const summary: DemoSummary = {
      format: 'fairprune.demo',
      version: 1,
      model: modelDir,
      settings: { ...demoSettings, selectionPairs: [`${seed!.a} / ${seed!.b}`], heldOutPairs: heldOut.map((p) => `${p.a} / ${p.b}`), why: settingsReason },
      prunedNeurons: { perLayer, total: perLayer.reduce((s, n) => s + n, 0), of: widths.reduce((s, n) => s + n, 0) },
      parameters: { before: pruning.plan.parameters.before, after: pruning.plan.parameters.after },
      biasMetric: {
        overall: { before: pruning.before.metric.overall.mean_difference, after: after.metric.overall.mean_difference },
        excludingGateUp: {
          before: pruning.before.metric.overall_excluding_gate_up.mean_difference,
          after: after.metric.overall_excluding_gate_up.mean_difference,
        },
      },
      behaviour: {
        pairs: behaviourBefore.map((b, i) => {
          const a = behaviourAfter[i]!;
          return {
            a: b.a,
            b: b.b,
            logOddsA: { before: b.logOddsA, after: a.logOddsA },
            logOddsB: { before: b.logOddsB, after: a.logOddsB },
            gap: { before: b.gap, after: a.gap },
          };
        }),
        shift,
      },
      evaluation,
      generations: prompts.map((prompt, i) => ({ prompt, before: generationsBefore[i]!, after: generationsAfter[i]! })),
      ...(comparison ? { comparison } : {}),
      notes,
      files: {
        report: join(outDir, ARTIFACTS.report),
        summary: join(outDir, ARTIFACTS.demoSummary),
        prunedModel: join(outDir, 'pruned-model'),
        baseline: join(outDir, 'baseline'),
        ...(comparison ? { behaviourModel: join(outDir, 'behaviour-model'), behaviourReport: join(outDir, 'report-behaviour.html') } : {}),
      },
      seconds: 0,
    };

    // Rendered from the temp folder before the rename; the report cites the paths the user keeps.
    progress('writing the report');
    const { data } = loadReportData(
      { before: join(work, 'baseline'), after: prunedDir },
      { title: 'fairprune demo: Fairness Pruning of a tiny Llama with a planted bias', renamed: { from: work, to: outDir } },
    );
    // The report states the behavioural reading itself; it gets the notes it cannot know.
    const reportNotes = notes.filter((note) => !note.startsWith('Held-out behaviour'));
    writeFileSync(join(work, ARTIFACTS.report), renderReport({ ...data, notes: [...(data.notes ?? []), ...reportNotes] }));
    if (comparison) {
      const behaviourReport = loadReportData(
        { before: join(work, 'baseline'), after: join(work, 'behaviour-model') },
        { title: 'fairprune demo: --method behaviour on a tiny Llama with a planted bias', renamed: { from: work, to: outDir } },
      ).data;
      writeFileSync(join(work, 'report-behaviour.html'), renderReport(behaviourReport));
    }
    summary.seconds = (performance.now() - started) / 1000;
    writeJson(join(work, ARTIFACTS.demoSummary), summary);
    output.commit();
    return summary;
  } catch (error) {
    throw output.fail(error);
  }
}
