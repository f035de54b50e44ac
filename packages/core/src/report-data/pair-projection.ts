import { pca } from './pca.js';

/** One prompt's captured activations at one tensor, with one label per row. */
export interface PromptActivations {
  /** The prompt text, for captions. */
  text?: string;
  /**
   * One label per activation row, in the same order — including special tokens such as BOS when the model saw them.
   * (optiPfair labels with `tokenizer.tokenize()`, which drops BOS, so its labels sit one token off on Llama.)
   */
  tokens: string[];
  /** `[tokens.length, width]` row-major. */
  activations: Float32Array;
}

/** One token of a prompt placed on the PCA plane. */
export interface ProjectedToken {
  /** Row index in the prompt's activations (0 = BOS when present). */
  index: number;
  /** The token's label, as given in {@link PromptActivations.tokens}. */
  token: string;
  /** Coordinate on the first principal component. */
  x: number;
  /** Coordinate on the second principal component. */
  y: number;
}

/** One prompt of a pair on the PCA plane. */
export interface ProjectedPrompt {
  /** The prompt text, when it was given. */
  text?: string;
  /** Its tokens in row order; `points[k].index` is the row, and with `omitLeading` the first rows are absent. */
  points: ProjectedToken[];
}

/** A token of prompt A matched to a token of prompt B. */
export interface TokenLink {
  /** Row index of the token in prompt A. */
  a: number;
  /** Row index of the matching token in prompt B. */
  b: number;
  /** The two tokens differ (the demographic word, usually). */
  differs: boolean;
}

/** Both prompts of a pair projected onto the first two principal components of their joint activations. */
export interface PairProjection {
  /** The captured tensor the activations come from, e.g. `mlp_output_layer_3`. */
  layerKey: string;
  /** Prompt A on the plane. */
  a: ProjectedPrompt;
  /** Prompt B on the plane. */
  b: ProjectedPrompt;
  /**
   * Matching positions: the common prefix and common suffix of the two token lists, plus the differing middle
   * position by position when both middles have the same length. Tokens in no link are the differing ones of
   * unequal-length middles.
   */
  links: TokenLink[];
  /** Share of the joint variance on PC1 and PC2. */
  explainedVarianceRatio: [number, number];
}

/** Options of {@link projectPair}. */
export interface ProjectPairOptions {
  /**
   * Leave out the first n tokens of both prompts (default 0). BOS activations are typically far larger than the rest
   * (an "attention sink") and take most of the variance, squeezing every other token into a dot; `omitLeading: 1`
   * drops BOS while the remaining points keep their true row indices.
   */
  omitLeading?: number;
}

/**
 * Projects the token activations of a prompt pair at one tensor (e.g. `mlp_output_layer_3`) onto their joint first
 * two principal components (one PCA over the rows of both prompts, as optiPfair's `visualize_pca` does) and matches
 * tokens across the prompts, so a chart can draw an arrow from each A token to its B counterpart.
 */
export function projectPair(
  layerKey: string,
  a: PromptActivations,
  b: PromptActivations,
  width: number,
  options: ProjectPairOptions = {},
): PairProjection {
  if (!Number.isInteger(width) || width < 1) throw new RangeError(`projectPair: width must be a positive integer, got ${width}`);
  checkRows('a', a, width, layerKey);
  checkRows('b', b, width, layerKey);
  const omit = options.omitLeading ?? 0;
  if (!Number.isInteger(omit) || omit < 0 || omit >= Math.min(a.tokens.length, b.tokens.length)) {
    throw new RangeError(`projectPair: omitLeading must be an integer from 0 to ${Math.min(a.tokens.length, b.tokens.length) - 1}, got ${omit}`);
  }
  const rowsA = a.tokens.length - omit;
  const rowsB = b.tokens.length - omit;
  const joint = new Float32Array((rowsA + rowsB) * width);
  joint.set(a.activations.subarray(omit * width), 0);
  joint.set(b.activations.subarray(omit * width), rowsA * width);
  const fit = pca({ data: joint, rows: rowsA + rowsB, cols: width }, 2);
  const coordinate = (row: number, component: number): number =>
    component < fit.componentCount ? fit.projections[row * fit.componentCount + component]! : 0;
  const points = (prompt: PromptActivations, rowOffset: number): ProjectedToken[] =>
    prompt.tokens.slice(omit).map((token, row) => ({
      index: row + omit,
      token,
      x: coordinate(rowOffset + row, 0),
      y: coordinate(rowOffset + row, 1),
    }));
  return {
    layerKey,
    a: { ...(a.text === undefined ? {} : { text: a.text }), points: points(a, 0) },
    b: { ...(b.text === undefined ? {} : { text: b.text }), points: points(b, rowsA) },
    links: matchTokens(a.tokens, b.tokens).filter((link) => link.a >= omit && link.b >= omit),
    explainedVarianceRatio: [fit.explainedVarianceRatio[0] ?? 0, fit.explainedVarianceRatio[1] ?? 0],
  };
}

/** Links the common prefix and suffix of two token lists, and the differing middles position by position when equal in length. */
export function matchTokens(tokensA: readonly string[], tokensB: readonly string[]): TokenLink[] {
  const shorter = Math.min(tokensA.length, tokensB.length);
  let prefix = 0;
  while (prefix < shorter && tokensA[prefix] === tokensB[prefix]) prefix++;
  let suffix = 0;
  while (
    suffix < shorter - prefix &&
    tokensA[tokensA.length - 1 - suffix] === tokensB[tokensB.length - 1 - suffix]
  ) {
    suffix++;
  }
  const links: TokenLink[] = [];
  for (let i = 0; i < prefix; i++) links.push({ a: i, b: i, differs: false });
  const middleA = tokensA.length - prefix - suffix;
  const middleB = tokensB.length - prefix - suffix;
  if (middleA === middleB) {
    for (let i = prefix; i < prefix + middleA; i++) links.push({ a: i, b: i, differs: tokensA[i] !== tokensB[i] });
  }
  for (let k = suffix; k >= 1; k--) links.push({ a: tokensA.length - k, b: tokensB.length - k, differs: false });
  return links;
}

function checkRows(side: 'a' | 'b', prompt: PromptActivations, width: number, layerKey: string): void {
  const rows = prompt.activations.length / width;
  if (!Number.isInteger(rows)) {
    throw new RangeError(
      `projectPair: prompt ${side} activations of ${layerKey} have ${prompt.activations.length} values, not a multiple of width ${width}`,
    );
  }
  if (rows !== prompt.tokens.length) {
    throw new RangeError(
      `projectPair: prompt ${side} has ${prompt.tokens.length} token labels but ${rows} activation rows at ${layerKey}; ` +
        'the labels must cover every row, including BOS when the model was given one',
    );
  }
  if (rows < 1) throw new RangeError(`projectPair: prompt ${side} has no tokens`);
}
