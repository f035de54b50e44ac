/** NaN or ±Infinity in captured activations or logits; the message names the layer, component, tensor or position. */
export class NonFiniteError extends Error {
  /** Always `'NonFiniteError'`. */
  override name = 'NonFiniteError';
}

/** Index of the first NaN or ±Infinity in `values`, −1 when all are finite. One pass, no allocation: runs on every capture. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    // x − x is 0 for finite x and NaN for NaN and ±Infinity.
    const x = values[i]!;
    if (x - x !== 0) return i;
  }
  return -1;
}

/**
 * Throws when `values` (row-major, last dimension `width`) holds a NaN or ±Infinity, naming `what` and the position.
 * @throws {@link NonFiniteError} ending with how to proceed anyway when `flag` is given.
 */
export function requireFinite(values: ArrayLike<number>, width: number, what: string, flag?: string): void {
  const index = firstNonFinite(values);
  if (index < 0) return;
  const row = Math.floor(index / width);
  throw new NonFiniteError(
    `${values[index]} in ${what} at row ${row}, column ${index - row * width}: the model overflowed or its weights hold NaN/Inf.` +
      (flag ? ` Pass ${flag} to proceed anyway (the output records it).` : ''),
  );
}
