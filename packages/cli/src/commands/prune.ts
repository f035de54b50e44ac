import { ARTIFACTS, BEHAVIOUR_DEFAULTS, COMPENSATIONS, IMPORTANCE_METHODS, PRUNE_DEFAULTS, PRUNE_METHODS, PRUNE_MODES, readPlan, runFairnessPruning, type PruneOptions } from '@fairprune/core';
import { Command, Option } from 'commander';
import { DEFAULT_ABILITY_GUARD, DEFAULT_CALIBRATION, readAbilityGuard, readCalibration } from '../calibration.js';
import { integerFlag, integerListFlag, layerFractionsFlag, numberFlag } from '../flags.js';
import { MODEL_ARGUMENT, resolveModelArgument } from '../model-source.js';
import { behaviourShift } from '../report/index.js';
import { addBiasOptions, biasOptionsFromFlags, stderrProgress, summariseReport, type CommonBiasFlags } from './analyze.js';

interface PruneFlags extends CommonBiasFlags {
  out: string;
  fraction?: number;
  biasWeight: number;
  importance: 'maw' | 'ppm' | 'vow' | 'pon' | 'l2';
  method: 'hybrid' | 'bias' | 'behaviour';
  sideBTolerance?: number;
  maxNeurons?: number;
  targetGap?: number;
  maxNllIncrease?: number;
  maxMarginDrop?: number;
  abilityGuard?: string | false;
  greedy?: boolean;
  calibration?: string;
  compensate?: 'none' | 'mean';
  layers?: number[];
  layerFractions?: Record<number, number>;
  globalTopK?: number;
  divisor?: number;
  mode?: 'remove' | 'zero';
  plan?: string;
  force?: boolean;
  planMismatchOk?: boolean;
  safetensors: boolean;
}

/** A pruning fraction: strictly between 0 and 1. */
const fraction = numberFlag({ min: 0, max: 1, exclusive: true });


function signedFixed(v: number): string {
  return `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;
}

export function registerPrune(program: Command): void {
  addBiasOptions(
    program
      .command('prune')
      .description('Remove (or zero) the MLP neurons that carry the most bias and matter least, and measure again')
      .argument(...MODEL_ARGUMENT),
  )
    .requiredOption('--out <dir>', `pruned model folder (new, empty, or an earlier output with --force); also gets ${ARTIFACTS.plan}, ${ARTIFACTS.biasBefore}, ${ARTIFACTS.biasAfter}, ${ARTIFACTS.neuronScores}, ${ARTIFACTS.modelCard}`)
    .addOption(new Option('--fraction <p>', `fraction of neurons pruned in every layer (default ${PRUNE_DEFAULTS.fraction}); with --method behaviour, of all neurons at most (default ${BEHAVIOUR_DEFAULTS.maxNeuronsFraction})`).argParser(fraction).conflicts(['layerFractions', 'globalTopK']))
    .option('--bias-weight <w>', 'w in P = w·bias_n + (1−w)·(1−importance_n)', numberFlag({ min: 0, max: 1 }), PRUNE_DEFAULTS.biasWeight)
    .addOption(new Option('--importance <method>', 'neuron importance from the weights').choices(IMPORTANCE_METHODS).default(PRUNE_DEFAULTS.importance))
    .addOption(
      new Option('--method <name>', 'hybrid (bias and importance), bias only, or behaviour (measured effect on the pairs\' continuations; needs pairs with negative/positive lists)')
        .choices(PRUNE_METHODS)
        .default(PRUNE_DEFAULTS.method),
    )
    .option('--side-b-tolerance <nats>', 'behaviour: how much more hostile side B may become, per neuron and in all (default 0.1)', numberFlag({ min: 0 }))
    .option('--max-neurons <n>', 'behaviour: most neurons removed in all (default: --fraction of all neurons)', integerFlag(1))
    .option('--target-gap <nats>', 'behaviour: stop once the selection pairs\' mean gap is at or below this (default 0)', numberFlag())
    .option('--max-nll-increase <nats>', 'behaviour: largest rise of the calibration next-token NLL (default 0.02)', numberFlag({ min: 0 }))
    .option('--max-margin-drop <nats>', `behaviour: largest fall of the answer margin on the --ability-guard items (default ${BEHAVIOUR_DEFAULTS.maxMarginDrop})`, numberFlag({ min: 0 }))
    .option('--ability-guard <file>', 'behaviour: BoolQ-format documents (.jsonl/.parquet: passage, question, label) whose answer margin guards the selection; never the documents you evaluate (default: the bundled boolq-calibration, disjoint from the bundled boolq-mini)')
    .option('--no-ability-guard', 'behaviour: no answer-margin guard (the calibration-NLL guard only)')
    .option('--greedy', 'behaviour: re-measure the best candidates with the chosen set after each choice (slower)')
    .option('--calibration <file>', 'calibration texts (.jsonl with "text", or one per line) for the NLL guard and --compensate mean (default: the bundled mini-LAMBADA)')
    .addOption(new Option('--compensate <how>', 'mean: removed neurons\' mean contribution becomes an MLP-output bias (default none; mean with --method behaviour)').choices(COMPENSATIONS))
    .addOption(new Option('--layers <list>', 'only prune these layers, e.g. 0,3,5').argParser(integerListFlag(0)).conflicts('layerFractions'))
    .addOption(new Option('--layer-fractions <list>', 'per-layer fractions instead of one, e.g. 13:0.1,14:0.15').argParser(layerFractionsFlag).conflicts('globalTopK'))
    .addOption(new Option('--global-top-k <k>', 'prune the k most prunable neurons across all layers').argParser(integerFlag(1)).conflicts('divisor'))
    .option('--divisor <d>', 'round each layer\'s kept size down to a multiple of d', integerFlag(1))
    .addOption(new Option('--mode <mode>', 'remove (smaller model) or zero (same shapes); default remove, zero with --method behaviour').choices(PRUNE_MODES))
    .option('--plan <file>', `re-apply a ${ARTIFACTS.plan} instead of selecting`)
    .option('--plan-mismatch-ok', 'apply --plan although it was made on other weights (the written plan records this model and the plan\'s origin)')
    .option('--no-safetensors', 'write only the pruned ONNX (needed to remove different counts per layer)')
    .option('--force', 'replace an earlier fairprune output at --out (a folder fairprune did not write is never replaced)')
    .action(async (model: string, flags: PruneFlags) => {
      const bias = await biasOptionsFromFlags(flags, stderrProgress);
      const options: PruneOptions = {
        ...bias,
        outDir: flags.out,
        biasWeight: flags.biasWeight,
        importance: flags.importance,
        method: flags.method,
        ...(flags.mode !== undefined ? { mode: flags.mode } : {}),
        ...(flags.compensate !== undefined ? { compensate: flags.compensate } : {}),
        ...(flags.method === 'behaviour' || flags.compensate === 'mean'
          ? { calibrationTexts: readCalibration(flags.calibration ?? DEFAULT_CALIBRATION.file), calibrationSource: flags.calibration ?? DEFAULT_CALIBRATION.source }
          : {}),
        ...(flags.method === 'behaviour'
          ? {
              behaviour: {
                ...(flags.sideBTolerance !== undefined ? { sideBTolerance: flags.sideBTolerance } : {}),
                ...(flags.maxNeurons !== undefined ? { maxNeurons: flags.maxNeurons } : {}),
                ...(flags.targetGap !== undefined ? { targetGap: flags.targetGap } : {}),
                ...(flags.maxNllIncrease !== undefined ? { maxNllIncrease: flags.maxNllIncrease } : {}),
                ...(flags.maxMarginDrop !== undefined ? { maxMarginDrop: flags.maxMarginDrop } : {}),
                ...(flags.abilityGuard === false
                  ? {}
                  : { ability: await (flags.abilityGuard === undefined ? readAbilityGuard(DEFAULT_ABILITY_GUARD.file, DEFAULT_ABILITY_GUARD.source) : readAbilityGuard(flags.abilityGuard)) }),
                ...(flags.greedy ? { greedy: true } : {}),
              },
            }
          : {}),
        ...(flags.fraction !== undefined ? { fraction: flags.fraction } : {}),
        ...(flags.layers !== undefined ? { layers: flags.layers } : {}),
        ...(flags.layerFractions !== undefined ? { layerFractions: flags.layerFractions } : {}),
        ...(flags.globalTopK !== undefined ? { globalTopK: flags.globalTopK } : {}),
        ...(flags.divisor !== undefined ? { divisor: flags.divisor } : {}),
        ...(flags.plan !== undefined ? { plan: await readPlan(flags.plan) } : {}),
        ...(flags.force ? { force: true } : {}),
        ...(flags.planMismatchOk ? { applyToOtherWeights: true } : {}),
        ...(flags.safetensors === false ? { safetensors: false } : {}),
      };
      // Pruned safetensors are written from the input's, so a hub model brings them along unless --no-safetensors.
      const modelDir = await resolveModelArgument(model, flags, { safetensors: flags.safetensors });
      const result = await runFairnessPruning(modelDir, options);
      const pruned = Object.values(result.plan.layers).reduce((n, l) => n + l.length, 0);
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify({ outDir: result.outDir, files: result.files, parameters: result.plan.parameters, layers: result.plan.layers, before: result.before, after: result.after, timings: result.timings }, null, 1)}\n`,
        );
        return;
      }
      const { before, after } = result;
      const lines = [
        `pruned ${pruned} neurons (${result.plan.mode}) → ${result.outDir}`,
        `  parameters ${result.plan.parameters.before.toLocaleString('en-US')} → ${result.plan.parameters.after.toLocaleString('en-US')}`,
      ];
      if (before.metric && after?.metric) {
        const b = before.metric.overall.mean_difference;
        const a = after.metric.overall.mean_difference;
        lines.push(`  bias metric ${b.toFixed(6)} → ${a.toFixed(6)} (${(((b - a) / b) * 100).toFixed(2)}% lower)`);
        const bx = before.metric.overall_excluding_gate_up.mean_difference;
        const ax = after.metric.overall_excluding_gate_up.mean_difference;
        lines.push(`  without gate/up (not flattered by removed neurons) ${bx.toFixed(6)} → ${ax.toFixed(6)}`);
      }
      const selected = result.plan.behaviour;
      if (selected) {
        const f = (v: number) => v.toFixed(3);
        lines.push(
          `  behaviour selection on ${result.plan.options['pairs']}: gap ${f(selected.before.gap)} → ${f(selected.after.gap)} nats ` +
            `(side A ${f(selected.before.meanA)} → ${f(selected.after.meanA)}, side B ${f(selected.before.meanB)} → ${f(selected.after.meanB)}; ` +
            `calibration NLL ${f(selected.before.nll)} → ${f(selected.after.nll)}` +
            (selected.before.margin !== null && selected.after.margin !== null ? `, answer margin ${f(selected.before.margin)} → ${f(selected.after.margin)}` : '') +
            `), ${selected.cost.forwards} forwards, ${selected.cost.tokens.toLocaleString('en-US')} tokens`,
        );
      }
      lines.push(summariseReport(before, 'before'));
      if (after) lines.push(summariseReport(after, 'after'));
      // The levelling-down guard: which side moved, on the held-out pairs when there are some.
      const rows = (r: typeof before) => (r.eval?.behaviour.length ? r.eval.behaviour : r.behaviour);
      const shift = after ? behaviourShift(rows(before), rows(after)) : null;
      if (shift) {
        lines.push(`  ${before.eval?.behaviour.length ? 'held-out ' : ''}behaviour: ${shift.reading}`);
        for (const p of shift.perPair) lines.push(`    ${p.label}: gap ${p.gapBefore.toFixed(3)} → ${p.gapAfter.toFixed(3)}, side A ${signedFixed(p.shiftA)}, side B ${signedFixed(p.shiftB)}${p.levellingDown ? '  ← narrowed mostly by side B (levelling down)' : ''}`);
      }
      lines.push(`  files: ${Object.values(result.files).join(', ')}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
