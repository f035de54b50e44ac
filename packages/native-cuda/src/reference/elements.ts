import type { DType, ElementData } from '../types.js';

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bit pattern → number, exact for every pattern (subnormals, ±Inf, NaN). */
export function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 bit pattern → number: the upper half of a binary32. */
export function bf16ToNumber(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** Decodes `count` elements of `data` (any typed array kind, any byte offset) into numbers. */
export function decodeElements(data: ElementData, dtype: DType, count: number): Float64Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float64Array(count);
  if (dtype === 'f32') {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  } else {
    const convert = dtype === 'f16' ? halfToNumber : bf16ToNumber;
    for (let i = 0; i < count; i++) out[i] = convert(view.getUint16(i * 2, true));
  }
  return out;
}
