import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtureDir } from '@fairprune/fixtures';

/** The llama fixture's safetensors as header object + data bytes, parsed here (not by the code under test). */
export interface RawSafetensors {
  header: Record<string, unknown>;
  data: Uint8Array;
}

export function readRawSafetensors(path = join(fixtureDir('llama'), 'model.safetensors')): RawSafetensors {
  const bytes = readFileSync(path);
  const size = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + size).toString('utf8')) as Record<string, unknown>, data: bytes.subarray(8 + size) };
}

/** Header length field + header text + data, with no padding or checks: mutated files are written exactly as given. */
export function encodeSafetensors(header: unknown, data: Uint8Array, headerText = JSON.stringify(header)): Buffer {
  const json = Buffer.from(headerText, 'utf8');
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([size, json, data]);
}

/**
 * A copy of fixtures/llama under `root/name` (config, tokenizer, onnx/model.onnx, model.safetensors), with
 * `files` (path → content) written over it. The fixture folder is only read.
 */
export function llamaCopy(root: string, name: string, files: Record<string, string | Uint8Array> = {}, onnx = 'model.onnx'): string {
  const source = fixtureDir('llama');
  const dir = join(root, name);
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'model.safetensors']) {
    copyFileSync(join(source, f), join(dir, f));
  }
  copyFileSync(join(source, 'onnx', onnx), join(dir, 'onnx/model.onnx'));
  if (onnx === 'model_external.onnx') copyFileSync(join(source, 'onnx/model_external.onnx_data'), join(dir, 'onnx/model_external.onnx_data'));
  for (const [path, content] of Object.entries(files)) writeFileSync(join(dir, path), content);
  return dir;
}

/** The llama config.json with `changes` applied (a value of `undefined` deletes the field). */
export function llamaConfig(changes: Record<string, unknown>): string {
  const config = JSON.parse(readFileSync(join(fixtureDir('llama'), 'config.json'), 'utf8')) as Record<string, unknown>;
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete config[key];
    else config[key] = value;
  }
  return JSON.stringify(config);
}
