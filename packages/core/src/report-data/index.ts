export { pca, type PcaResult, type RowMatrix } from './pca.js';
export {
  matchTokens,
  projectPair,
  type PairProjection,
  type PromptActivations,
  type ProjectedPrompt,
  type ProjectedToken,
  type ProjectPairOptions,
  type TokenLink,
} from './pair-projection.js';
