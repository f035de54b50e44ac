/** Element type: 'f32' (IEEE binary32), 'f16' (IEEE binary16 bit patterns), 'bf16' (bfloat16 bit patterns). */
export type DType = 'f32' | 'f16' | 'bf16';
/** 'auto': CUDA when available and measured faster for the input size, else the threaded CPU kernels. */
export type Device = 'auto' | 'cpu' | 'cuda';
/** Where the neurons are: 'rows' → one result per row (HF safetensors [out, in]); 'cols' → one per column (ONNX [in, out]). */
export type Axis = 'rows' | 'cols';
/** How {@link accumulateColumns} folds each row into the totals. */
export type ColumnOp = 'sum' | 'max';

/** Raw element storage: Float32Array for f32, Uint16Array (bit patterns) for f16/bf16, or a Uint8Array of
 *  little-endian bytes at any byte offset (e.g. an ONNX raw_data view); no JS copy is made of it. */
export type ElementData = Float32Array | Uint16Array | Uint8Array;

/** A row-major matrix [rows, cols]. */
export interface MatrixView { data: ElementData; rows: number; cols: number; dtype: DType }

/** Row-major [pairs, tokens, width] activations, one [tokens, width] matrix per pair. */
export interface TensorView3 { data: ElementData; pairs: number; tokens: number; width: number; dtype: DType }

export interface ScanOptions { axis: Axis; device?: Device }

/** Per-neuron statistics, one entry per neuron. If any element of a neuron is NaN, all six are NaN for that neuron;
 *  ±Inf elements propagate by IEEE arithmetic (Inf max/maxAbs/sums; +Inf and −Inf together make the sum NaN). */
export interface WeightStats {
  max: Float32Array;
  min: Float32Array;
  maxAbs: Float32Array;
  sum: Float32Array;
  sumSquares: Float32Array;
  sumAbs: Float32Array;
  /** Elements reduced per neuron. */
  count: number;
}

/** Difference of two [tokens, width] activation matrices. NaN/Inf in the inputs propagate (Inf − Inf = NaN). */
export interface ActivationDiff {
  /** Per neuron: mean over tokens of |a − b|. */
  positionwise: Float32Array;
  /** Per neuron: |mean_t a − mean_t b|. */
  pooled: Float32Array;
  /** Tensor-wide mean |a − b| (optiPfair's d). */
  meanAbs: number;
}

/** Activation differences of many pairs at once: row-major [pairs, width] vectors and one meanAbs per pair. */
export interface ActivationDiffBatch {
  /** [pairs, width]: per pair and neuron, mean over tokens of |a − b|. */
  positionwise: Float32Array;
  /** [pairs, width]: per pair and neuron, |mean_t a − mean_t b|. */
  pooled: Float32Array;
  /** [pairs]: tensor-wide mean |a − b| of each pair. */
  meanAbs: Float64Array;
}

export interface BackendInfo {
  /** 'reference' = the pure-TS fallback because the native addon could not be loaded. */
  backend: 'native' | 'reference';
  /** Why the reference is used (load error and the fix). */
  reason?: string;
  cuda: { compiled: boolean; available: boolean; deviceCount: number; deviceName?: string; reason?: string };
  threads: number;
  addonPath?: string;
  /** The measurement behind device 'auto' (present once 'auto' has met an available GPU). */
  autoPolicy?: { cudaHostInputGBps: number; cpuGBps: number };
}
