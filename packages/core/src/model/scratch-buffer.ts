/**
 * A grow-only buffer reused across reads, chunks and tensors: first touches of fresh large allocations (zero fill and
 * page faults) cost more than the copying itself, and a reused buffer reads several times faster.
 */
export class ScratchBuffer {
  private buffer = new Uint8Array(0);

  /** The first `size` bytes of the buffer, grown when needed; the previous contents are not kept. */
  get(size: number): Uint8Array {
    if (this.buffer.byteLength < size) this.buffer = new Uint8Array(size);
    return this.buffer.subarray(0, size);
  }
}
