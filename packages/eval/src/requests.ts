import type { TextTokenizer } from '@fairprune/core';

/**
 * Turning (context, continuation) strings into the token rows the model scores, as lm-evaluation-harness's
 * `TemplateLM._encode_pair` and `HFLM._loglikelihood_tokens` do it.
 */
export interface EncodedPair {
  context: number[];
  continuation: number[];
}

/**
 * Trailing spaces of the context move into the continuation; the whole string and the context are encoded
 * separately and the continuation is what follows `len(context)` tokens of the whole encoding. With `bos`, the
 * BOS id leads both encodings (so it cancels out of the split).
 */
export function encodePair(tokenizer: TextTokenizer, context: string, continuation: string, bos: boolean): EncodedPair {
  const trimmed = context.replace(/\s+$/u, '');
  const moved = context.slice(trimmed.length);
  const encode = (text: string): number[] => {
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    if (!bos) return ids;
    if (tokenizer.bosTokenId === undefined) throw new Error('--bos was given but the tokenizer has no BOS token (tokenizer_config.json bos_token)');
    return [tokenizer.bosTokenId, ...ids];
  };
  const whole = encode(trimmed + moved + continuation);
  let contextIds = encode(trimmed);
  const continuationIds = whole.slice(contextIds.length);
  if (contextIds.length === 0) {
    // The harness scores an empty context after the prefix token: BOS, else EOS.
    const prefix = tokenizer.bosTokenId ?? tokenizer.eosTokenId;
    if (prefix === undefined) throw new Error('empty context and the tokenizer has neither a BOS nor an EOS token to start from');
    contextIds = [prefix];
  }
  if (continuationIds.length === 0) throw new Error(`continuation ${JSON.stringify(continuation)} encodes to no tokens after its context`);
  return { context: contextIds, continuation: continuationIds };
}

/** The tokens fed to the model: (context + continuation)[-(maxLength + 1):][:-1], left-truncated only when too long. */
export function modelInput(pair: EncodedPair, maxLength: number): number[] {
  const all = [...pair.context, ...pair.continuation];
  return all.slice(-(maxLength + 1)).slice(0, -1);
}

/**
 * The model's context length as the harness resolves it: config `n_positions`, `max_position_embeddings`, `n_ctx`,
 * then the tokenizer's `model_max_length` (unless it is the "unset" sentinel), else 2048.
 */
export function resolveMaxLength(config: Record<string, unknown>, tokenizerConfig: Record<string, unknown> = {}): number {
  for (const key of ['n_positions', 'max_position_embeddings', 'n_ctx']) {
    const value = config[key];
    if (typeof value === 'number') return value;
  }
  const fromTokenizer = tokenizerConfig['model_max_length'];
  if (typeof fromTokenizer === 'number' && fromTokenizer < 1e29) return fromTokenizer;
  return 2048;
}
