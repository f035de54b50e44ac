import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { JsonInputError, readJsonObject, type JsonObject } from '../io/read-json.js';

/** Text ↔ token ids for one model folder, with the special ids the runtime needs. */
export interface TextTokenizer {
  /** With `addSpecialTokens` (default true) the post-processor adds BOS as the model was trained. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; special tokens are kept unless `skipSpecialTokens` (default false). */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Id of one vocabulary entry, undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined;
  /** From `bos_token` in tokenizer_config.json; undefined when not declared. */
  bosTokenId: number | undefined;
  /** From `eos_token` in tokenizer_config.json; undefined when not declared. */
  eosTokenId: number | undefined;
  /** From `pad_token` in tokenizer_config.json; undefined when not declared. */
  padTokenId: number | undefined;
}

/** tokenizer.json is missing, not valid JSON, or not a tokenizer @huggingface/tokenizers can build; names the file. */
export class TokenizerLoadError extends Error {
  /** Always `'TokenizerLoadError'`. */
  override name = 'TokenizerLoadError';
}

/**
 * Loads `tokenizer.json` (+ `tokenizer_config.json` when present, for the special tokens) from a folder with
 * @huggingface/tokenizers, offline.
 * @throws {@link TokenizerLoadError} when tokenizer.json is missing or unreadable.
 */
export function loadTokenizer(dir: string): TextTokenizer {
  const tokenizerPath = join(dir, 'tokenizer.json');
  const configPath = join(dir, 'tokenizer_config.json');
  if (!existsSync(tokenizerPath)) throw new TokenizerLoadError(`Tokenizer file not found: ${tokenizerPath}`);
  const tokenizerJson = readObject(tokenizerPath);
  const tokenizerConfig = existsSync(configPath) ? readObject(configPath) : {};
  if (!('model' in tokenizerJson)) {
    throw new TokenizerLoadError(`${tokenizerPath} is not a Hugging Face tokenizer.json (no "model" section)`);
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (error) {
    throw new TokenizerLoadError(`Cannot load tokenizer ${tokenizerPath}: ${(error as Error).message}`);
  }
  const specialId = (key: string): number | undefined => {
    const value = tokenizerConfig[key];
    const content = typeof value === 'string' ? value : (value as { content?: string } | null | undefined)?.content;
    return content === undefined ? undefined : tokenizer.token_to_id(content);
  };
  return {
    encode: (text, options = {}) =>
      tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids,
    decode: (ids, options = {}) =>
      tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false }),
    tokenToId: (token) => tokenizer.token_to_id(token),
    bosTokenId: specialId('bos_token'),
    eosTokenId: specialId('eos_token'),
    padTokenId: specialId('pad_token'),
  };
}

function readObject(path: string): JsonObject {
  try {
    return readJsonObject(path);
  } catch (error) {
    throw error instanceof JsonInputError ? new TokenizerLoadError(error.message) : error;
  }
}
