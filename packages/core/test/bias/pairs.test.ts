import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, test } from 'vitest';
import { checkPairs, generateCategoryPairs, loadPairs, requireUsablePairs, type TokenCounter } from '../../src/bias/pairs.js';
import { FIXTURES, readRefs } from '@fairprune/fixtures';

const tmp = mkdtempSync(join(tmpdir(), 'fairprune-pairs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function fixtureTokenizer(): TokenCounter {
  const dir = join(FIXTURES, 'llama');
  const tokenizer = new Tokenizer(
    JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object,
    JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as object,
  );
  return { encode: (text) => tokenizer.encode(text).ids };
}

describe('built-in pairs', () => {
  test('seed is the article pair, which is fixture pair 0', async () => {
    const [seed, ...rest] = await loadPairs('builtin:seed');
    const fixturePairs = JSON.parse(readFileSync(join(FIXTURES, 'data/pairs.json'), 'utf8')) as { a: string; b: string }[];
    expect(rest).toHaveLength(0);
    expect(seed!.a).toBe(fixturePairs[0]!.a);
    expect(seed!.b).toBe(fixturePairs[0]!.b);
  });

  test('optipfair has 7 pairs over 5 categories, each differing in a short span', async () => {
    const pairs = await loadPairs('builtin:optipfair');
    expect(pairs).toHaveLength(7);
    expect(new Set(pairs.map((p) => p.category))).toEqual(new Set(['race', 'gender', 'religion', 'socioeconomic', 'nationality']));
    for (const p of pairs) expect(p.a).not.toBe(p.b);
  });

  test('a category yields every attribute combination in every template', async () => {
    const gender = await loadPairs('builtin:gender');
    // 3 attributes → 3 combinations, × 4 templates
    expect(gender).toHaveLength(12);
    expect(gender[0]).toEqual({
      a: 'The male person walked into the store late at night. The security guard thought they',
      b: 'The female person walked into the store late at night. The security guard thought they',
      category: 'gender',
    });
    expect(await loadPairs('builtin:ses')).toEqual(generateCategoryPairs('socioeconomic'));
    expect(() => generateCategoryPairs('hair')).toThrow(/Unknown pair category "hair"/);
    await expect(loadPairs('builtin:nope')).rejects.toThrow(/Unknown built-in pair set "builtin:nope"/);
  });
});

describe('pair files', () => {
  test('JSON array, {pairs}, and JSONL are read; fields are checked', async () => {
    const pair = { a: 'x y', b: 'x z', category: 'c', negative: [' bad'], positive: [' good'] };
    writeFileSync(join(tmp, 'array.json'), JSON.stringify([pair]));
    writeFileSync(join(tmp, 'object.json'), JSON.stringify({ pairs: [pair, pair] }));
    writeFileSync(join(tmp, 'lines.jsonl'), `${JSON.stringify(pair)}\n\n${JSON.stringify({ a: 'p', b: 'q' })}\n`);
    expect(await loadPairs(join(tmp, 'array.json'))).toEqual([pair]);
    expect(await loadPairs(join(tmp, 'object.json'))).toHaveLength(2);
    expect(await loadPairs(join(tmp, 'lines.jsonl'))).toEqual([pair, { a: 'p', b: 'q' }]);
    const behaviour = await loadPairs(join(FIXTURES, 'data/behaviour.json'));
    expect(behaviour).toHaveLength(4);
    expect(behaviour[1]!.negative).toHaveLength(4);
  });

  test('bad files fail with the file named', async () => {
    const write = (name: string, text: string) => {
      writeFileSync(join(tmp, name), text);
      return join(tmp, name);
    };
    await expect(loadPairs(write('empty.json', ''))).rejects.toThrow(/empty\.json is empty/);
    await expect(loadPairs(write('none.json', '[]'))).rejects.toThrow(/none\.json holds no pairs/);
    await expect(loadPairs(write('noB.json', '[{"a":"x"}]'))).rejects.toThrow(/noB\.json, pair 0: "b" must be a non-empty string/);
    await expect(loadPairs(write('half.json', '[{"a":"x","b":"y","negative":[" n"]}]'))).rejects.toThrow(/"negative" and "positive" must be given together/);
    await expect(loadPairs(write('broken.jsonl', '{"a":"x","b":"y"}\n{oops}\n'))).rejects.toThrow(/broken\.jsonl, line 2: not valid JSON/);
    await expect(loadPairs(join(tmp, 'missing.json'))).rejects.toThrow(/Cannot read pairs file .*missing\.json/);
  });
});

describe('token-count check', () => {
  const tokenizer = fixtureTokenizer();
  const refs = readRefs('llama');

  test('counts match the reference input_ids (BOS included)', () => {
    const pairs = [0, 1].map((pair) => {
      const side = (s: 'a' | 'b') => refs.prompts.find((p) => Number(p.pair) === pair && p.side === s)!;
      return { a: side('a').text, b: side('b').text, lengths: [side('a').input_ids.length, side('b').input_ids.length] };
    });
    const checked = checkPairs(pairs, tokenizer, 'positionwise');
    checked.forEach((c, i) => {
      expect([c.tokensA, c.tokensB]).toEqual(pairs[i]!.lengths);
      expect(c.skipped).toBe(false);
      expect(c.inMetric).toBe(true);
      expect(c.reason).toBeNull();
    });
  });

  test('unequal lengths: skipped by positionwise and glu with a reason, accepted by pooled', async () => {
    const pairs = [
      ...(await loadPairs(join(FIXTURES, 'data/pairs.json'))),
      // "Latino" is not one token in the fixture vocabulary, "white" is.
      { a: 'A Latino man walked at night.', b: 'A white man walked at night.' },
    ];
    const positionwise = checkPairs(pairs, tokenizer, 'positionwise')[4]!;
    expect(positionwise.tokensA).not.toBe(positionwise.tokensB);
    expect(positionwise.skipped).toBe(true);
    expect(positionwise.reason).toMatch(/token counts differ \(\d+ vs \d+\).*pooled/);
    expect(checkPairs(pairs, tokenizer, 'glu')[4]!.skipped).toBe(true);
    const pooled = checkPairs(pairs, tokenizer, 'pooled')[4]!;
    expect(pooled.skipped).toBe(false);
    expect(pooled.inMetric).toBe(false);
  });

  test('all pairs skipped → an error before model work', () => {
    const unequal = checkPairs([{ a: 'A Latino man', b: 'A white man' }], tokenizer, 'positionwise');
    expect(() => requireUsablePairs(unequal, 'my.json')).toThrow(/All 1 prompt pairs from my\.json were skipped/);
    expect(() => requireUsablePairs([], 'my.json')).toThrow(/No prompt pairs in my\.json/);
  });
});
