// The pure-TypeScript references: they define what "correct" means for the native kernels and are the fallback
// when the addon is missing.
export { scanWeights } from './weightScan.js';
export { activationDiff, activationDiffBatched } from './activationDiff.js';
export { accumulateColumns, columnMeans, gatherColumns } from './columns.js';
export { bf16ToNumber, decodeElements, halfToNumber } from './elements.js';
