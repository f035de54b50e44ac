import { expect, test } from 'vitest';
import { PythonRandom, bootstrapPerplexityStderr, mean, meanStderr, perplexity } from '../src/index.js';

/** Expected values were printed by CPython 3 (`random`, and lm-eval's metric functions copied verbatim). */

test('PythonRandom reproduces CPython random.Random(seed): getrandbits(32), random(), choices()', () => {
  const cases: [number, number[], number, number[]][] = [
    [0, [3626764237, 1654615998, 3255389356], 0.890243920837131, [0, 9, 4, 9, 8, 9, 3, 8]],
    [1, [577090037, 2444712010, 3639700191], 0.8022650611681835, [0, 1, 7, 4, 3, 2, 4, 8]],
    [7, [1390851128, 4071050724, 647892279], 0.3948234964231735, [0, 8, 0, 5, 9, 2, 0, 4]],
    [123456789, [2754794679, 1899526012, 2328685183], 0.7099554463712503, [9, 9, 6, 9, 3, 4, 5, 7]],
  ];
  for (const [seed, words, random, choices] of cases) {
    const rng = new PythonRandom(seed);
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual(words);
    expect(rng.random()).toBe(random);
    expect(rng.choices([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 8)).toEqual(choices);
  }
});

// xs = [-0.5*((i*37)%11)/3.0 - 0.01*i for i in range(40)]
const xs = Array.from({ length: 40 }, (_, i) => (-0.5 * ((i * 37) % 11)) / 3.0 - 0.01 * i);

test('perplexity and its bootstrap stderr equal lm-eval bootstrap_stderr(perplexity, xs, iters)', () => {
  expect(perplexity(xs)).toBe(2.7273578862464656);
  expect(bootstrapPerplexityStderr(xs, 2000)).toBeCloseTo(0.2378542146238204, 13);
  expect(bootstrapPerplexityStderr(xs, 10)).toBeCloseTo(0.3357245364235786, 13);
  expect(bootstrapPerplexityStderr(xs, 100000)).toBeCloseTo(0.23796938983893343, 12);
});

test('acc and acc_stderr equal lm-eval mean / mean_stderr', () => {
  const accs = Array.from({ length: 33 }, (_, i) => ((i * 7) % 5 < 3 ? 1 : 0));
  expect(mean(accs)).toBe(0.6060606060606061);
  expect(meanStderr(accs)).toBeCloseTo(0.08637692614387409, 15);
  // the protocol's check: p = 0.63425, n = 3270 → 0.008424
  const boolq = Array.from({ length: 3270 }, (_, i) => (i < 2074 ? 1 : 0));
  expect(meanStderr(boolq)).toBeCloseTo(Math.sqrt((mean(boolq) * (1 - mean(boolq))) / 3269), 12);
  expect(meanStderr(boolq)).toBeCloseTo(0.008424, 5);
});
