/** Which command produces each optional part of the report; shown when a part is missing. */
export const howToGet = {
  bias: 'fairprune analyze <model> --out <dir>',
  biasAfter: 'fairprune analyze <pruned model> --out <after dir>',
  neurons: 'fairprune prune <model> --out <pruned model>',
  pca: 'fairprune report --model <model folder> ...',
  generations: 'fairprune generate <model> (before and after)',
  evaluation: 'fairprune eval <model> (before and after)',
  behaviour: 'fairprune analyze with behaviour pairs (before and after)',
} as const;
