/**
 * A tiny ONNX model (`input_ids` int64 → Identity → `logits`), encoded by hand so `doctor` can open and run a real
 * onnxruntime session without any model file. Field numbers are those of onnx.proto (ModelProto, GraphProto, ...).
 */

const encoder = new TextEncoder();

function varint(value: number): number[] {
  const bytes: number[] = [];
  let v = value;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return bytes;
}

/** A varint field (wire type 0). */
const int = (field: number, value: number): number[] => [...varint(field << 3), ...varint(value)];
/** A length-delimited field (wire type 2): a string or a nested message. */
const bytes = (field: number, content: number[] | string): number[] => {
  const payload = typeof content === 'string' ? [...encoder.encode(content)] : content;
  return [...varint((field << 3) | 2), ...varint(payload.length), ...payload];
};

const INT64 = 7;

/** ValueInfoProto { name, type: TypeProto { tensor_type { elem_type, shape { dim { dim_param } ... } } } } */
function tensorValueInfo(name: string, elemType: number, dims: string[]): number[] {
  const shape = dims.flatMap((d) => bytes(1, bytes(2, d)));
  return [...bytes(1, name), ...bytes(2, bytes(1, [...int(1, elemType), ...bytes(2, shape)]))];
}

export function probeModelBytes(): Uint8Array {
  const node = [...bytes(1, 'input_ids'), ...bytes(2, 'logits'), ...bytes(4, 'Identity')];
  const graph = [
    ...bytes(1, node),
    ...bytes(2, 'fairprune-doctor-probe'),
    ...bytes(11, tensorValueInfo('input_ids', INT64, ['batch', 'sequence'])),
    ...bytes(12, tensorValueInfo('logits', INT64, ['batch', 'sequence'])),
  ];
  const model = [...int(1, 8), ...bytes(7, graph), ...bytes(8, [...bytes(1, ''), ...int(2, 17)])];
  return Uint8Array.from(model);
}
