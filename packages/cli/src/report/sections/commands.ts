/** Which command produces each optional part of the report; shown when a part is missing. */
export const howToGet = {
  bias: 'fairprune analyze <model> --out <before dir>',
  biasAfter: 'fairprune prune <model> --out <pruned model> (it re-analyses the pruned model), then pass it as --after',
  neurons: 'fairprune prune <model> --out <pruned model>, then pass it as --after',
  pca: 'fairprune prune <model> --out <pruned model> (its neuron-scores.json keeps one pair’s token activations)',
  generations: 'fairprune generate <model> --prompt "…" --json > <dir>/generations.json for the original (--before dir) and pruned model (--after dir)',
  evaluation: 'fairprune eval <model> --tasks boolq,lambada_openai --output-path <dir> for the original (--before dir) and pruned model (--after dir)',
  behaviour: 'fairprune analyze or prune with pairs that carry negative/positive continuations, e.g. --eval-pairs packages/cli/demo/data/behaviour.json',
} as const;
