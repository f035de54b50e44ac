// @ts-check
/**
 * Fairness Pruning through @fairprune/core's public API alone: measure how differently a model treats two prompts
 * that differ only in a demographic word, remove the MLP neurons that react most to that word (and matter least to
 * the model), and measure again.
 *
 *   npm run build                     # once: compiles @fairprune/core (and the native kernels) into dist/
 *   node packages/core/examples/analyze-and-prune.mjs packages/cli/demo/model /tmp/fair-demo
 *
 * The same function is imported and run by packages/core/test/examples.test.ts.
 */
import { pathToFileURL } from 'node:url';
import { analyzeBias, loadPairs, projectPair, runFairnessPruning } from '@fairprune/core';

/**
 * @param {string} modelDir  Hugging Face-style folder with an ONNX export (config.json, tokenizer.json, onnx/model.onnx)
 * @param {string} outDir    where the pruned model folder is written (must not exist or be empty)
 * @param {{ fraction?: number, log?: (line: string) => void }} [options]
 */
export async function analyzeAndPrune(modelDir, outDir, { fraction = 0.02, log = console.log } = {}) {
  // 1. Bias of the original model on the built-in seed pair ("A Black man …" / "A white man …").
  const pairs = await loadPairs('builtin:seed');
  const { report: before } = await analyzeBias(modelDir, { pairs, pairsSource: 'builtin:seed', tokenActivations: false });
  if (!before.metric) throw new Error('no pair with equal token counts: the bias metric needs them');
  log(`bias metric before: ${before.metric.overall.mean_difference.toFixed(5)} (optiPfair mean_difference)`);

  // 2. Score every MLP neuron (bias from the pair's activations, importance from its weights), prune the top
  //    `fraction` of each layer by P = 0.5·bias + 0.5·(1 − importance), write the pruned folder and re-measure it.
  const result = await runFairnessPruning(modelDir, {
    outDir,
    pairs,
    pairsSource: 'builtin:seed',
    importance: 'maw',
    biasWeight: 0.5,
    fraction,
  });
  const after = result.after?.metric;
  if (!after) throw new Error('the pruned model was not re-measured');
  const pruned = Object.values(result.plan.layers).reduce((sum, neurons) => sum + neurons.length, 0);
  log(`pruned ${pruned} neurons: ${result.plan.parameters.before} → ${result.plan.parameters.after} parameters, written to ${result.outDir}`);
  log(`bias metric after:  ${after.overall.mean_difference.toFixed(5)}`);
  log(
    `without gate/up (not shrunk by the pruning): ${before.metric.overall_excluding_gate_up.mean_difference.toFixed(5)} → ` +
      `${after.overall_excluding_gate_up.mean_difference.toFixed(5)}`,
  );

  // 3. A 2-D picture of one pair's token activations (what the report draws); BOS is left out of the fit.
  const tokens = result.neuronScores.tokenActivations;
  const projection = tokens
    ? projectPair(
        tokens.key,
        { text: tokens.a.text, tokens: tokens.a.tokens, activations: Float32Array.from(tokens.a.activations) },
        { text: tokens.b.text, tokens: tokens.b.tokens, activations: Float32Array.from(tokens.b.activations) },
        tokens.width,
        { omitLeading: 1 },
      )
    : undefined;
  if (projection) {
    const ratio = projection.explainedVarianceRatio.map((r) => `${(100 * r).toFixed(1)}%`).join(' + ');
    const differing = projection.links.filter((link) => link.differs).map((link) => `${tokens?.a.tokens[link.a]}/${tokens?.b.tokens[link.b]}`);
    log(`PCA of ${projection.layerKey}: ${ratio} of the variance; differing tokens: ${differing.join(', ')}`);
  }
  return { before, after: result.after, plan: result.plan, files: result.files, projection };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [modelDir, outDir] = process.argv.slice(2);
  if (!modelDir || !outDir) {
    process.stderr.write('usage: node analyze-and-prune.mjs <model-dir> <out-dir>\n');
    process.exit(2);
  }
  await analyzeAndPrune(modelDir, outDir);
}
