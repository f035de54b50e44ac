import { resolveModelSource } from '@fairprune/core';
import type { Command } from 'commander';

/** The positional model argument every model command takes, and its help text. */
export const MODEL_ARGUMENT = ['<model>', 'model folder (config.json, tokenizer.json, ONNX export), or a Hugging Face hub id org/name[@revision]'] as const;

/** Help of `--onnx-file`, shared by the model commands: how the graph is chosen when the flag is absent. */
export const ONNX_FILE_HELP = 'ONNX file inside the model folder (default onnx/model.onnx, else model.onnx, else the only .onnx file)';

/** `--offline`, shared by the model commands. */
export function addOfflineOption(command: Command): Command {
  return command.option('--offline', 'never download: a hub id must already be in the Hugging Face cache (also HF_HUB_OFFLINE=1)');
}

/**
 * The local folder of the model argument: a path as given, or a hub id resolved in the Hugging Face cache and
 * downloaded into it when online (progress on stderr). Called once per command, before any model work.
 */
export function resolveModelArgument(model: string, flags: { offline?: boolean; onnxFile?: string }, options: { safetensors?: boolean } = {}): Promise<string> {
  return resolveModelSource(model, {
    ...(flags.offline ? { offline: true } : {}),
    ...(flags.onnxFile !== undefined ? { onnxFile: flags.onnxFile } : {}),
    ...options,
    onProgress: (message) => process.stderr.write(`fairprune: ${message}\n`),
  });
}
