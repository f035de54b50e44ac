/**
 * onnxruntime-node ≥ 1.30 records telemetry by default (an events database under
 * ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and /tmp/mat-debug-<pid>.log). It reads ORT_DISABLE_TELEMETRY when
 * it loads, so this module sets it and every module of core that imports onnxruntime-node imports this one first.
 */

/** Set to `1` to leave onnxruntime's telemetry as the library ships it. */
export const ORT_TELEMETRY_OPT_IN = 'FAIRPRUNE_ORT_TELEMETRY';

if (process.env[ORT_TELEMETRY_OPT_IN] !== '1') process.env['ORT_DISABLE_TELEMETRY'] = '1';

/** Whether onnxruntime's telemetry is on in this process, and why. */
export interface OnnxruntimeTelemetry {
  /** True only when the user opted in with {@link ORT_TELEMETRY_OPT_IN}. */
  enabled: boolean;
  /** One line for `fairprune doctor`. */
  reason: string;
}

/** Whether onnxruntime's telemetry is off in this process, and why (for `fairprune doctor`). */
export function onnxruntimeTelemetry(): OnnxruntimeTelemetry {
  return process.env[ORT_TELEMETRY_OPT_IN] === '1'
    ? { enabled: true, reason: `${ORT_TELEMETRY_OPT_IN}=1 leaves onnxruntime's telemetry on` }
    : { enabled: false, reason: `ORT_DISABLE_TELEMETRY=1 set before onnxruntime-node loaded (${ORT_TELEMETRY_OPT_IN}=1 to opt in)` };
}
