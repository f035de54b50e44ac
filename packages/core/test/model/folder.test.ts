import { expect, test, describe } from 'vitest';
import { mkdtempSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModelFolder } from '../../src/model/folder.js';
import { ARCHITECTURES, EXTRA_ARCHITECTURES, fixtureDir, readRefs } from '@fairprune/fixtures';

describe.each([...ARCHITECTURES, ...EXTRA_ARCHITECTURES])('%s folder', (arch) => {
  const folder = openModelFolder(fixtureDir(arch));
  test('config, weight files and default ONNX file', () => {
    expect(folder.config.numHiddenLayers).toBe(4);
    expect(folder.config.hiddenSize).toBe(64);
    expect(folder.onnxPath).toBe(join(fixtureDir(arch), 'onnx/model.onnx'));
    expect(folder.onnxFiles).toContain('onnx/model_kv.onnx');
    expect(folder.safetensorsFiles).toEqual([join(fixtureDir(arch), 'model.safetensors')]);
  });
  test('tokenizer ids equal the HF reference input_ids (BOS included)', () => {
    for (const prompt of readRefs(arch).prompts) {
      expect(folder.tokenizer.encode(prompt.text)).toEqual(prompt.input_ids);
    }
    expect(folder.tokenizer.bosTokenId).toBe(folder.config.bosTokenId);
    const ids = folder.tokenizer.encode('The police officer thought he', { addSpecialTokens: false });
    expect(ids[0]).not.toBe(folder.tokenizer.bosTokenId);
    expect(folder.tokenizer.decode(ids)).toBe('The police officer thought he');
  });
});

test('--onnx-file picks a file relative to the folder', () => {
  const folder = openModelFolder(fixtureDir('llama'), { onnxFile: 'onnx/model_kv.onnx' });
  expect(folder.onnxPath).toBe(join(fixtureDir('llama'), 'onnx/model_kv.onnx'));
  expect(() => openModelFolder(fixtureDir('llama'), { onnxFile: 'onnx/nope.onnx' })).toThrow(/ONNX file not found: .*nope\.onnx/);
});

test('real Llama 3 tokenizer adds BOS 128000', async () => {
  const { loadTokenizer } = await import('../../src/model/tokenizer.js');
  const tok = loadTokenizer(join(fixtureDir('llama3-tokenizer')));
  expect(tok.encode('A Black man walked at night through the neighborhood. The police officer thought he')).toEqual([
    128000, 32, 5348, 893, 15203, 520, 3814, 1555, 279, 12818, 13, 578, 4379, 9640, 3463, 568,
  ]);
});

describe('bad folders', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fp-folder-'));
  test('missing config.json names the file', () => {
    expect(() => openModelFolder(dir)).toThrow(/config\.json not found: .*fp-folder-/);
  });
  test('wrong tokenizer file names the file', () => {
    copyFileSync(join(fixtureDir('llama'), 'config.json'), join(dir, 'config.json'));
    expect(() => openModelFolder(dir)).toThrow(/Tokenizer file not found: .*tokenizer\.json/);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ vocab: { a: 1 } }));
    // the tokenizer is built on first use, and that is where a wrong file is reported
    expect(() => openModelFolder(dir).tokenizer).toThrow(/tokenizer\.json is not a Hugging Face tokenizer\.json/);
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
    expect(() => openModelFolder(dir).tokenizer.encode('x')).toThrow(/tokenizer\.json is not valid JSON/);
  });
  test('config missing a field names the field', () => {
    mkdirSync(join(dir, 'b'));
    writeFileSync(join(dir, 'b/config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 8 }));
    expect(() => openModelFolder(join(dir, 'b'))).toThrow(/config\.json: field "num_attention_heads" is missing/);
  });
});

describe('a folder whose ONNX graph has another name', () => {
  const llama = fixtureDir('llama');
  /** A copy of the llama fixture holding only the given ONNX files under onnx/. */
  function folderWith(...onnxFiles: string[]): string {
    const dir = mkdtempSync(join(tmpdir(), 'fp-onnx-name-'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(llama, f), join(dir, f));
    mkdirSync(join(dir, 'onnx'));
    for (const f of onnxFiles) copyFileSync(join(llama, 'onnx', f), join(dir, 'onnx', f));
    return dir;
  }

  test('its only .onnx file is chosen without --onnx-file', () => {
    const dir = folderWith('model_kv.onnx');
    expect(openModelFolder(dir).onnxPath).toBe(join(dir, 'onnx/model_kv.onnx'));
  });

  test('with two graphs and neither named model.onnx, none is guessed and the error lists both', async () => {
    const dir = folderWith('model_kv.onnx', 'model_dynamo.onnx');
    const folder = openModelFolder(dir);
    expect(folder.onnxPath).toBeUndefined();
    const { requireOnnxPath } = await import('../../src/model/folder.js');
    expect(() => requireOnnxPath(folder)).toThrow(/found: onnx\/model_dynamo.onnx, onnx\/model_kv.onnx; pass --onnx-file/);
  });

  test('the pruned copy keeps the name, and is found again without --onnx-file', async () => {
    const { writePrunedFolder } = await import('../../src/prune/apply.js');
    const dir = folderWith('model_kv.onnx');
    const out = join(mkdtempSync(join(tmpdir(), 'fp-onnx-name-out-')), 'pruned');
    const written = writePrunedFolder(dir, out, { selection: new Map([[0, [1, 2]]]), mode: 'remove' });
    expect(written.onnxFiles).toEqual(['onnx/model_kv.onnx']);
    expect(openModelFolder(out).onnxFiles).toEqual(['onnx/model_kv.onnx']);
    expect(openModelFolder(out).onnxPath).toBe(join(out, 'onnx/model_kv.onnx'));
  });
});

test('a tokenizer given is used instead of loading the folder\'s (one load for a model and its pruned copy)', () => {
  const original = openModelFolder(fixtureDir('llama'));
  const shared = openModelFolder(fixtureDir('llama'), { tokenizer: original.tokenizer });
  expect(shared.tokenizer).toBe(original.tokenizer);
  expect(openModelFolder(fixtureDir('llama')).tokenizer).not.toBe(original.tokenizer);
});
