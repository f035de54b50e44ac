/** Principal component analysis of a small set of rows (tokens), enough for a 2-D picture of activations. */

/** Rows of a row-major matrix: `data.length === rows * cols`. */
export interface RowMatrix {
  /** The values, row after row. */
  data: Float32Array | Float64Array;
  /** Observations (e.g. tokens). */
  rows: number;
  /** Variables (e.g. neurons or hidden units). */
  cols: number;
}

/** A fitted PCA: the components, the variance along each, and every row projected onto them. */
export interface PcaResult {
  /** `[rows, components]` row-major: each input row projected onto the components (after centring). */
  projections: Float64Array;
  /** `[components, cols]` row-major unit vectors, sign fixed so the largest-magnitude loading is positive. */
  components: Float64Array;
  /** Variance (divided by rows − 1, like sklearn) along each component. */
  explainedVariance: number[];
  /** Share of the total variance along each component, in [0, 1]. */
  explainedVarianceRatio: number[];
  /** Components actually fitted: the requested count, capped at rows − 1 and cols. */
  componentCount: number;
}

const maxIterations = 1000;
const tolerance = 1e-12;

/**
 * Fits a PCA with `componentCount` components (default 2) to the rows of `matrix`.
 *
 * Works on the smaller of the two Gram forms — `X Xᵀ` (rows × rows) when there are fewer rows than columns, which is
 * the usual case for a prompt's tokens — and finds the top eigenvectors by orthogonal (subspace) iteration with a
 * Rayleigh–Ritz step, so nearly equal leading eigenvalues still converge. Deterministic: no random start.
 */
export function pca(matrix: RowMatrix, componentCount = 2): PcaResult {
  const { data, rows, cols } = matrix;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 2 || cols < 1) {
    throw new RangeError(`pca: need at least 2 rows and 1 column, got ${rows} × ${cols}`);
  }
  if (data.length !== rows * cols) {
    throw new RangeError(`pca: data has ${data.length} values, expected rows × cols = ${rows} × ${cols}`);
  }
  const k = Math.min(componentCount, rows - 1, cols);
  if (!Number.isInteger(componentCount) || componentCount < 1) {
    throw new RangeError(`pca: componentCount must be a positive integer, got ${componentCount}`);
  }

  const centred = centreColumns(data, rows, cols);
  const useRowGram = rows <= cols;
  const m = useRowGram ? rows : cols;
  const gram = useRowGram ? rowGram(centred, rows, cols) : columnGram(centred, rows, cols);
  let trace = 0;
  for (let i = 0; i < m; i++) trace += gram[i * m + i]!;

  const { vectors, values } = topEigenpairs(gram, m, k);

  const components = new Float64Array(k * cols);
  for (let c = 0; c < k; c++) {
    const component = components.subarray(c * cols, (c + 1) * cols);
    if (useRowGram) {
      // Right singular vector from the left one: v = Xᵀu / ‖Xᵀu‖.
      for (let r = 0; r < rows; r++) {
        const u = vectors[c * m + r]!;
        if (u === 0) continue;
        for (let j = 0; j < cols; j++) component[j]! += u * centred[r * cols + j]!;
      }
    } else {
      component.set(vectors.subarray(c * m, (c + 1) * m));
    }
    normaliseWithSign(component);
  }

  const projections = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < k; c++) {
      let dot = 0;
      for (let j = 0; j < cols; j++) dot += centred[r * cols + j]! * components[c * cols + j]!;
      projections[r * k + c] = dot;
    }
  }

  const explainedVariance = values.map((value) => Math.max(value, 0) / (rows - 1));
  const totalVariance = trace / (rows - 1);
  const explainedVarianceRatio = explainedVariance.map((v) => (totalVariance > 0 ? v / totalVariance : 0));
  return { projections, components, explainedVariance, explainedVarianceRatio, componentCount: k };
}

function centreColumns(data: Float32Array | Float64Array, rows: number, cols: number): Float64Array {
  const centred = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    let sum = 0;
    for (let r = 0; r < rows; r++) sum += data[r * cols + j]!;
    const mean = sum / rows;
    for (let r = 0; r < rows; r++) centred[r * cols + j] = data[r * cols + j]! - mean;
  }
  return centred;
}

function rowGram(x: Float64Array, rows: number, cols: number): Float64Array {
  const gram = new Float64Array(rows * rows);
  for (let a = 0; a < rows; a++) {
    for (let b = a; b < rows; b++) {
      let dot = 0;
      for (let j = 0; j < cols; j++) dot += x[a * cols + j]! * x[b * cols + j]!;
      gram[a * rows + b] = dot;
      gram[b * rows + a] = dot;
    }
  }
  return gram;
}

function columnGram(x: Float64Array, rows: number, cols: number): Float64Array {
  const gram = new Float64Array(cols * cols);
  for (let r = 0; r < rows; r++) {
    for (let a = 0; a < cols; a++) {
      const xa = x[r * cols + a]!;
      if (xa === 0) continue;
      for (let b = a; b < cols; b++) gram[a * cols + b]! += xa * x[r * cols + b]!;
    }
  }
  for (let a = 0; a < cols; a++) for (let b = 0; b < a; b++) gram[a * cols + b] = gram[b * cols + a]!;
  return gram;
}

/** Top-k eigenpairs of a symmetric positive semi-definite m × m matrix, by subspace iteration + Rayleigh–Ritz. */
function topEigenpairs(matrix: Float64Array, m: number, k: number): { vectors: Float64Array; values: number[] } {
  // Work with a slightly larger block than asked: convergence then goes with λ(k+block)/λ(k), not λ(k+1)/λ(k).
  const block = Math.min(m, k + 2);
  let basis: Float64Array = new Float64Array(block * m);
  for (let b = 0; b < block; b++) {
    // A fixed, non-symmetric start that is unlikely to be orthogonal to any eigenvector.
    for (let i = 0; i < m; i++) basis[b * m + i] = Math.cos((i + 1) * (b + 1) * 0.7390851) + (i === b ? 1 : 0);
  }
  orthonormalise(basis, block, m);
  let values = new Array<number>(block).fill(0);
  for (let iteration = 0; iteration < maxIterations; iteration++) {
    const product = multiplyBlock(matrix, basis, block, m);
    orthonormalise(product, block, m);
    const { rotated, ritzValues } = rayleighRitz(matrix, product, block, m);
    const scale = Math.max(Math.abs(ritzValues[0] ?? 0), Number.MIN_VALUE);
    const change = Math.max(...ritzValues.slice(0, k).map((v, i) => Math.abs(v - (values[i] ?? 0)) / scale));
    basis = rotated;
    values = ritzValues;
    if (change < tolerance && iteration > 2) break;
  }
  return { vectors: basis.subarray(0, k * m), values: values.slice(0, k) };
}

function multiplyBlock(matrix: Float64Array, basis: Float64Array, block: number, m: number): Float64Array {
  const out = new Float64Array(block * m);
  for (let b = 0; b < block; b++) {
    for (let i = 0; i < m; i++) {
      let dot = 0;
      for (let j = 0; j < m; j++) dot += matrix[i * m + j]! * basis[b * m + j]!;
      out[b * m + i] = dot;
    }
  }
  return out;
}

/** Modified Gram–Schmidt on `block` vectors of length m; a vector that collapses is replaced by a unit axis. */
function orthonormalise(vectors: Float64Array, block: number, m: number): void {
  for (let b = 0; b < block; b++) {
    const v = vectors.subarray(b * m, (b + 1) * m);
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < b; p++) {
        const u = vectors.subarray(p * m, (p + 1) * m);
        let dot = 0;
        for (let i = 0; i < m; i++) dot += u[i]! * v[i]!;
        for (let i = 0; i < m; i++) v[i]! -= dot * u[i]!;
      }
    }
    let norm = 0;
    for (let i = 0; i < m; i++) norm += v[i]! * v[i]!;
    norm = Math.sqrt(norm);
    if (norm < 1e-300) {
      v.fill(0);
      v[b % m] = 1;
      norm = 1;
    }
    for (let i = 0; i < m; i++) v[i]! /= norm;
  }
}

/** Diagonalises the block's projected matrix QᵀAQ (Jacobi) and rotates Q so its vectors are sorted Ritz vectors. */
function rayleighRitz(
  matrix: Float64Array,
  q: Float64Array,
  block: number,
  m: number,
): { rotated: Float64Array; ritzValues: number[] } {
  const aq = multiplyBlock(matrix, q, block, m);
  const small = new Float64Array(block * block);
  for (let a = 0; a < block; a++) {
    for (let b = 0; b < block; b++) {
      let dot = 0;
      for (let i = 0; i < m; i++) dot += q[a * m + i]! * aq[b * m + i]!;
      small[a * block + b] = dot;
    }
  }
  const { eigenvalues, eigenvectors } = jacobiEigen(small, block);
  const order = eigenvalues.map((_, i) => i).sort((x, y) => eigenvalues[y]! - eigenvalues[x]!);
  const rotated = new Float64Array(block * m);
  order.forEach((source, target) => {
    for (let b = 0; b < block; b++) {
      const weight = eigenvectors[b * block + source]!;
      for (let i = 0; i < m; i++) rotated[target * m + i]! += weight * q[b * m + i]!;
    }
  });
  return { rotated, ritzValues: order.map((i) => eigenvalues[i]!) };
}

/** Cyclic Jacobi eigen-decomposition of a small symmetric n × n matrix; eigenvectors are the columns. */
function jacobiEigen(input: Float64Array, n: number): { eigenvalues: number[]; eigenvectors: Float64Array } {
  const a = Float64Array.from(input);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let offDiagonal = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) offDiagonal += a[p * n + q]! ** 2;
    if (offDiagonal < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { eigenvalues: Array.from({ length: n }, (_, i) => a[i * n + i]!), eigenvectors: v };
}

function normaliseWithSign(vector: Float64Array): void {
  let norm = 0;
  let largest = 0;
  for (const x of vector) {
    norm += x * x;
    if (Math.abs(x) > Math.abs(largest)) largest = x;
  }
  const scale = (largest < 0 ? -1 : 1) / Math.sqrt(norm || 1);
  for (let i = 0; i < vector.length; i++) vector[i]! *= scale;
}
