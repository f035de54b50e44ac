export const packageName = '@fairprune/core';
export * from './model/folder.js';
export * from './model/tokenizer.js';
export * from './model/dtype.js';
export * from './runtime/session.js';
export { pca, projectPair, matchTokens, type PcaResult, type RowMatrix, type PairProjection, type PromptActivations, type ProjectedToken, type TokenLink } from './report-data/index.js';
export * from './model/onnx-codec.js';
export * from './model/graph-map.js';
export * from './runtime/capture.js';
