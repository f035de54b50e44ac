/** Element types the model layer handles, with ONNX TensorProto.DataType codes and byte sizes. */
export type WeightDType = 'f32' | 'f16' | 'bf16';

export const ONNX_FLOAT = 1;
export const ONNX_FLOAT16 = 10;
export const ONNX_BFLOAT16 = 16;

export function dtypeFromOnnx(code: number): WeightDType | undefined {
  return code === ONNX_FLOAT ? 'f32' : code === ONNX_FLOAT16 ? 'f16' : code === ONNX_BFLOAT16 ? 'bf16' : undefined;
}

export function onnxFromDtype(dtype: WeightDType): number {
  return dtype === 'f32' ? ONNX_FLOAT : dtype === 'f16' ? ONNX_FLOAT16 : ONNX_BFLOAT16;
}

export function bytesPerElement(dtype: WeightDType): number {
  return dtype === 'f32' ? 4 : 2;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** IEEE half-precision bits (as an unsigned 16-bit number) of `value`, rounded to nearest even; overflow gives ±Infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}

export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Decodes little-endian raw bytes of `dtype` into a new Float32Array (handles any byte offset). */
export function decodeToFloat32(bytes: Uint8Array, dtype: WeightDType): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / bytesPerElement(dtype);
  const out = new Float32Array(n);
  if (dtype === 'f32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  else if (dtype === 'f16') for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
  else for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(i * 2, true));
  return out;
}

/** Encodes float32 values as little-endian raw bytes of `dtype`. */
export function encodeFromFloat32(values: Float32Array, dtype: WeightDType): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint16Array(values.length);
  const convert = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < values.length; i++) out[i] = convert(values[i]!);
  return new Uint8Array(out.buffer);
}
