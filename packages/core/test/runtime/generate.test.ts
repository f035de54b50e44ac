import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelSession } from '../../src/runtime/session.js';
import { openModelFolder } from '../../src/model/folder.js';
import { generate, readGenerationDefaults } from '../../src/runtime/generate.js';
import { openDecoder } from '../../src/runtime/kv-cache.js';
import { ARCHITECTURES, fixtureDir } from '@fairprune/fixtures';

/** HF transformers' `generate()` outputs for pairs 0 and 1 (refs.json), compared token for token. */
interface GenerationRef {
  text: string;
  input_ids: number[];
  greedy_ids: number[];
  beam5_ids: number[];
  beam5_article_ids: number[];
}

const FORMS = [
  ['plain', 'onnx/model.onnx'],
  ['kv', 'onnx/model_kv.onnx'],
] as const;

describe.each(ARCHITECTURES.flatMap((arch) => FORMS.map(([form, file]) => [arch, form, file] as const)))('%s %s', (arch, form, file) => {
  const refs = (JSON.parse(readFileSync(join(fixtureDir(arch), 'refs/refs.json'), 'utf8')) as { prompts: GenerationRef[] }).prompts;
  const folder = openModelFolder(fixtureDir(arch));
  const defaults = readGenerationDefaults(fixtureDir(arch));
  let session: ModelSession;
  beforeAll(async () => {
    session = await ModelSession.create(join(fixtureDir(arch), file), { threads: 1, config: folder.config });
  });
  afterAll(async () => session?.release());

  test('uses the KV cache only for the KV form', () => {
    expect(openDecoder(session).usesCache).toBe(form === 'kv');
  });

  test('prompt ids equal the reference input_ids', () => {
    for (const ref of refs) expect(folder.tokenizer.encode(ref.text)).toEqual(ref.input_ids);
  });

  test('greedy, max_new_tokens 24 = HF greedy_ids', async () => {
    const out = await generate(session, refs.map((r) => r.input_ids), { ...defaults, maxNewTokens: 24 });
    expect(out.map((seqs) => seqs[0]!.ids)).toEqual(refs.map((r) => r.greedy_ids));
  });

  test('5 beams, max_length 50 = HF beam5_ids', async () => {
    const out = await generate(session, refs.map((r) => r.input_ids), { ...defaults, numBeams: 5, maxLength: 50 });
    expect(out.map((seqs) => seqs[0]!.ids)).toEqual(refs.map((r) => r.beam5_ids));
  });

  test('5 beams, early stopping, no_repeat_ngram_size 2 = HF beam5_article_ids', async () => {
    const out = await generate(session, refs.map((r) => r.input_ids), {
      ...defaults,
      numBeams: 5,
      maxLength: 50,
      earlyStopping: true,
      noRepeatNgramSize: 2,
    });
    expect(out.map((seqs) => seqs[0]!.ids)).toEqual(refs.map((r) => r.beam5_article_ids));
  });
});
