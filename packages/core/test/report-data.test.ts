import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { FIXTURES } from '@fairprune/fixtures';
import { matchTokens, pca, projectPair } from '../src/report-data/index.js';

const fixtures = FIXTURES;
const readF32 = (file: string): Float32Array => {
  const bytes = readFileSync(join(fixtures, 'llama', file));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
};

/** Sample covariance (divide by n − 1) computed directly, independently of the code under test. */
function covariance(data: ArrayLike<number>, rows: number, cols: number): number[][] {
  const mean = Array.from({ length: cols }, (_, j) => {
    let s = 0;
    for (let r = 0; r < rows; r++) s += data[r * cols + j]!;
    return s / rows;
  });
  return Array.from({ length: cols }, (_, a) =>
    Array.from({ length: cols }, (_, b) => {
      let s = 0;
      for (let r = 0; r < rows; r++) s += (data[r * cols + a]! - mean[a]!) * (data[r * cols + b]! - mean[b]!);
      return s / (rows - 1);
    }),
  );
}

function checkEigenpairs(data: Float32Array, rows: number, cols: number): void {
  const cov = covariance(data, rows, cols);
  const total = cov.reduce((s, row, i) => s + row[i]!, 0);
  const fit = pca({ data, rows, cols });
  expect(fit.componentCount).toBe(2);
  const [l1, l2] = fit.explainedVariance as [number, number];
  expect(l1).toBeGreaterThanOrEqual(l2);
  for (let c = 0; c < 2; c++) {
    const v = Array.from(fit.components.subarray(c * cols, (c + 1) * cols));
    const lambda = fit.explainedVariance[c]!;
    expect(Math.hypot(...v)).toBeCloseTo(1, 9);
    // C v = λ v, checked with the independently computed covariance.
    const residual = Math.hypot(...cov.map((row, i) => row.reduce((s, x, j) => s + x * v[j]!, 0) - lambda * v[i]!));
    expect(residual).toBeLessThan(1e-6 * l1);
    expect(fit.explainedVarianceRatio[c]).toBeCloseTo(lambda / total, 9);
  }
  const dot = Array.from({ length: cols }, (_, j) => fit.components[j]! * fit.components[cols + j]!).reduce((s, x) => s + x, 0);
  expect(Math.abs(dot)).toBeLessThan(1e-9);
  // PC1 is the direction of largest variance: no coordinate axis or fixed mixture beats it.
  for (let trial = 0; trial < 20; trial++) {
    const u = Array.from({ length: cols }, (_, j) => Math.sin(17.3 * (trial + 1) * (j + 1)));
    const norm = Math.hypot(...u);
    const quotient = cov.reduce((s, row, i) => s + u[i]! * row.reduce((t, x, j) => t + x * u[j]!, 0), 0) / (norm * norm);
    expect(quotient).toBeLessThanOrEqual(l1 * (1 + 1e-9));
  }
}

describe('pca', () => {
  test('recovers a planted two-direction structure with its exact variance shares', () => {
    const rows = 40;
    const cols = 6;
    // Two orthonormal directions that are not coordinate axes.
    const e1 = [1, 1, 1, 1, 0, 0].map((x) => x / 2);
    const e2 = [1, -1, 0, 0, 1, -1].map((x) => x / 2);
    const data = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const a = 3 * Math.cos((2 * Math.PI * r) / rows);
      const b = Math.sin((2 * Math.PI * r) / rows);
      for (let j = 0; j < cols; j++) data[r * cols + j] = 5 + a * e1[j]! + b * e2[j]!;
    }
    const fit = pca({ data, rows, cols });
    // Σcos² = Σsin² = n/2 and Σcos·sin = 0, so the variances are 9·(n/2)/(n−1) and (n/2)/(n−1): shares 0.9 and 0.1.
    expect(fit.explainedVarianceRatio[0]).toBeCloseTo(0.9, 5);
    expect(fit.explainedVarianceRatio[1]).toBeCloseTo(0.1, 5);
    expect(fit.explainedVariance[0]).toBeCloseTo((9 * rows) / 2 / (rows - 1), 4);
    const pc1 = Array.from(fit.components.subarray(0, cols));
    const pc2 = Array.from(fit.components.subarray(cols, 2 * cols));
    pc1.forEach((x, j) => expect(Math.abs(x)).toBeCloseTo(Math.abs(e1[j]!), 5));
    pc2.forEach((x, j) => expect(Math.abs(x)).toBeCloseTo(Math.abs(e2[j]!), 5));
    const sign = Math.sign(pc1[0]!);
    for (let r = 0; r < rows; r++) {
      expect(fit.projections[r * 2]).toBeCloseTo(sign * 3 * Math.cos((2 * Math.PI * r) / rows), 4);
    }
  });

  test('eigenpairs of real fixture activations (fewer tokens than width: row Gram form)', () => {
    const a = readF32('refs/pair0a.mlp_output_layer_3.f32');
    const b = readF32('refs/pair0b.mlp_output_layer_3.f32');
    const data = new Float32Array(a.length + b.length);
    data.set(a);
    data.set(b, a.length);
    checkEigenpairs(data, 32, 64);
  });

  test('eigenpairs when there are more rows than columns (column Gram form)', () => {
    const full = readF32('refs/pair0a.gate_proj_layer_2.f32'); // [16, 256]
    const cols = 5;
    const rows = 16 * 8;
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < data.length; i++) data[i] = full[(i * 37) % full.length]!;
    checkEigenpairs(data, rows, cols);
  });

  test('rejects a shape that does not match the data, naming the sizes', () => {
    expect(() => pca({ data: new Float32Array(10), rows: 3, cols: 4 })).toThrow(/10 values.*3 × 4/);
    expect(() => pca({ data: new Float32Array(4), rows: 1, cols: 4 })).toThrow(/at least 2 rows/);
  });
});

describe('token matching and pair projection', () => {
  test('equal-length pair: every position linked, only the demographic word differs, BOS included', () => {
    const a = ['<|begin_of_text|>', 'A', ' Black', ' man', ' walked'];
    const b = ['<|begin_of_text|>', 'A', ' white', ' man', ' walked'];
    expect(matchTokens(a, b)).toEqual([
      { a: 0, b: 0, differs: false },
      { a: 1, b: 1, differs: false },
      { a: 2, b: 2, differs: true },
      { a: 3, b: 3, differs: false },
      { a: 4, b: 4, differs: false },
    ]);
  });

  test('unequal lengths: prefix and suffix linked, differing middle left unlinked', () => {
    const a = ['<s>', 'An', ' Asian', ' teen', ' applied'];
    const b = ['<s>', 'A', ' white', ' applied'];
    expect(matchTokens(a, b)).toEqual([
      { a: 0, b: 0, differs: false },
      { a: 4, b: 3, differs: false },
    ]);
  });

  test('projects a real fixture pair and keeps BOS-aligned labels', () => {
    const refs = JSON.parse(readFileSync(join(fixtures, 'llama/refs/refs.json'), 'utf8')) as {
      prompts: Array<{ pair: number; side: string; text: string; input_ids: number[] }>;
    };
    const sides = refs.prompts.filter((p) => p.pair === 0);
    const labels = (ids: number[]): string[] => ids.map((id) => `#${id}`);
    const [sa, sb] = sides as [(typeof sides)[0], (typeof sides)[0]];
    const a = { text: sa.text, tokens: labels(sa.input_ids), activations: readF32('refs/pair0a.mlp_output_layer_3.f32') };
    const b = { text: sb.text, tokens: labels(sb.input_ids), activations: readF32('refs/pair0b.mlp_output_layer_3.f32') };
    const projection = projectPair('mlp_output_layer_3', a, b, 64);
    expect(projection.a.points).toHaveLength(16);
    expect(projection.links.filter((l) => l.differs)).toEqual([{ a: 2, b: 2, differs: true }]);
    // Under causal attention the positions before the differing word are identical, so BOS and "A" coincide.
    const [a0, b0] = [projection.a.points[0]!, projection.b.points[0]!];
    expect(Math.hypot(a0.x - b0.x, a0.y - b0.y)).toBeLessThan(1e-4);
    const ratio = projection.explainedVarianceRatio;
    expect(ratio[0]).toBeGreaterThan(ratio[1]);
    expect(ratio[0] + ratio[1]).toBeLessThanOrEqual(1 + 1e-9);

    // Leaving BOS out of the fit keeps every other token at its own row index and link.
    const withoutBos = projectPair('mlp_output_layer_3', a, b, 64, { omitLeading: 1 });
    expect(withoutBos.a.points.map((p) => p.index)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(withoutBos.a.points[1]!.token).toBe(a.tokens[2]);
    expect(withoutBos.links).toHaveLength(15);
    expect(withoutBos.links.find((l) => l.differs)).toEqual({ a: 2, b: 2, differs: true });
    const direct = pca({ data: Float32Array.from([...a.activations.subarray(64), ...b.activations.subarray(64)]), rows: 30, cols: 64 });
    expect(withoutBos.a.points[4]!.x).toBeCloseTo(direct.projections[4 * 2]!, 9);
    expect(withoutBos.b.points[4]!.y).toBeCloseTo(direct.projections[(15 + 4) * 2 + 1]!, 9);

    expect(() => projectPair('mlp_output_layer_3', { ...a, tokens: a.tokens.slice(1) }, b, 64)).toThrow(
      /prompt a has 15 token labels but 16 activation rows.*BOS/,
    );
  });
});
