import { ModelSession, SESSION_DEVICES, checkGenerationInputs, generate, openModelFolder, readGenerationDefaults, requireOnnxPath, type GenerationOptions } from '@fairprune/core';
import { Command, InvalidArgumentError, Option } from 'commander';
import { integerFlag, numberFlag } from '../flags.js';
import { UsageError } from '../exit-codes.js';
import { addOfflineOption, MODEL_ARGUMENT, ONNX_FILE_HELP, resolveModelArgument } from '../model-source.js';

interface GenerateFlags {
  prompt: string[];
  numBeams: number;
  maxLength: number;
  maxNewTokens?: number;
  /** `--no-repeat-ngram-size`: commander reads a `--no-` prefix as negation and stores the value under this name. */
  repeatNgramSize: number;
  earlyStopping: boolean | 'never';
  lengthPenalty: number;
  numReturnSequences: number;
  onnxFile?: string;
  cache: boolean;
  device: 'cpu' | 'cuda';
  offline?: boolean;
  json?: boolean;
}

/** `--early-stopping` alone means true; with a value: true, false or never. */
function earlyStoppingMode(value: string): boolean | 'never' {
  if (value === 'true') return true;
  if (value === 'false') return false;
  if (value === 'never') return 'never';
  throw new InvalidArgumentError('expected true, false or never.');
}

export function registerGenerate(program: Command): void {
  addOfflineOption(
    program
      .command('generate')
      .description('Continue prompts with deterministic greedy or beam search (Hugging Face generate() semantics)')
      .argument(...MODEL_ARGUMENT),
  )
    .requiredOption('--prompt <text...>', 'one or more prompts')
    .option('--num-beams <n>', 'beams (1 = greedy)', integerFlag(1), 5)
    .option('--max-length <n>', 'total tokens including the prompt', integerFlag(1), 50)
    .option('--max-new-tokens <n>', 'generated tokens (overrides --max-length)', integerFlag(1))
    .option('--no-repeat-ngram-size <n>', 'never repeat an n-gram of this size (0 = off)', integerFlag(0), 0)
    .option('--early-stopping [mode]', 'beam search stop rule: true (flag alone), false, never', earlyStoppingMode, false)
    .option('--length-penalty <x>', 'beam scores are sum(logprob) / length ** x', numberFlag(), 1.0)
    .option('--num-return-sequences <n>', 'sequences per prompt (≤ --num-beams)', integerFlag(1), 1)
    .option('--onnx-file <file>', `${ONNX_FILE_HELP}; a KV-cache graph is used incrementally`)
    .option('--no-cache', 'recompute the whole prefix every step even when the graph has a KV cache')
    .addOption(new Option('--device <device>', 'execution provider').choices(SESSION_DEVICES).default('cpu'))
    .option('--json', 'print [{ prompt, ids, text, score }] on stdout; ids = the full sequence, text = the continuation without special tokens')
    .action(async (model: string, flags: GenerateFlags) => {
      if (flags.numReturnSequences > flags.numBeams) {
        throw new UsageError(`--num-return-sequences (${flags.numReturnSequences}) cannot exceed --num-beams (${flags.numBeams})`);
      }
      const folder = openModelFolder(await resolveModelArgument(model, flags), flags.onnxFile === undefined ? {} : { onnxFile: flags.onnxFile });
      const prompts = flags.prompt.map((text) => ({ text, ids: folder.tokenizer.encode(text) }));
      if (flags.maxNewTokens === undefined) {
        const longest = prompts.reduce((a, b) => (b.ids.length > a.ids.length ? b : a));
        if (flags.maxLength <= longest.ids.length) {
          throw new UsageError(`--max-length ${flags.maxLength} counts the prompt and leaves no room after the ${longest.ids.length}-token prompt "${longest.text}"; raise it or use --max-new-tokens`);
        }
      }
      const maxPositions = folder.config.maxPositionEmbeddings;
      const configLimit = maxPositions === undefined ? undefined : { tokens: maxPositions, source: 'config.json max_position_embeddings' };
      const options: GenerationOptions & { cache: boolean } = {
        ...readGenerationDefaults(folder.dir),
        numBeams: flags.numBeams,
        maxLength: flags.maxLength,
        ...(flags.maxNewTokens === undefined ? {} : { maxNewTokens: flags.maxNewTokens }),
        noRepeatNgramSize: flags.repeatNgramSize,
        earlyStopping: flags.earlyStopping,
        lengthPenalty: flags.lengthPenalty,
        numReturnSequences: flags.numReturnSequences,
        cache: flags.cache,
        ...(configLimit ? { contextLimit: configLimit } : {}),
      };
      // Prompts past the configured context are refused before the model loads; generate() checks again with the
      // graph's own limit, when it fixes the sequence length.
      checkGenerationInputs(prompts.map((p) => p.ids), options);
      const onnxPath = requireOnnxPath(folder);
      const session = await ModelSession.create(onnxPath, { device: flags.device, config: folder.config });
      const fixed = session.fixedSequenceLength;
      if (fixed !== undefined && (configLimit === undefined || fixed < configLimit.tokens)) {
        options.contextLimit = { tokens: fixed, source: `the fixed input_ids length of ${onnxPath}` };
      }
      try {
        const outputs = await generate(session, prompts.map((p) => p.ids), options);
        const rows = prompts.flatMap((prompt, i) =>
          outputs[i]!.map((sequence) => ({
            prompt: prompt.text,
            ids: sequence.ids,
            text: folder.tokenizer.decode(sequence.ids.slice(prompt.ids.length), { skipSpecialTokens: true }),
            score: sequence.score,
          })),
        );
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(rows, null, 1)}\n`);
          return;
        }
        const mode = flags.numBeams === 1 ? 'greedy' : `${flags.numBeams} beams`;
        process.stderr.write(`fairprune: ${mode}, ${session.kv && flags.cache ? 'KV cache' : 'no KV cache (prefix recomputed each step)'}, ${folder.onnxPath}\n`);
        for (const row of rows) process.stdout.write(`${row.prompt}\n  →${row.text}\n`);
      } finally {
        await session.release();
      }
    });
}
