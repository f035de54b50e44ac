import { Command } from 'commander';
import { version } from './version.js';
import { registerAnalyze } from './commands/analyze.js';
import { registerPrune } from './commands/prune.js';
import { registerReport } from './commands/report.js';
import { registerDoctor } from './commands/doctor.js';
import { registerInspect } from './commands/inspect.js';
import { registerEval } from './commands/eval.js';
import { registerGenerate } from './commands/generate.js';
import { registerDemo } from './commands/demo.js';
import { registerBatch } from './commands/batch.js';

/** Each command lives in its own file under commands/ and registers itself here. */
const commandRegistrations: Array<(program: Command) => void> = [
  registerDemo,
  registerAnalyze,
  registerPrune,
  registerReport,
  registerDoctor,
  registerInspect,
  registerEval,
  registerGenerate,
  registerBatch,
];

export function buildProgram(): Command {
  const program = new Command('fairprune')
    .description('Fairness Pruning for large language models: measure and remove demographic bias in MLP neurons.')
    .version(version)
    .showHelpAfterError()
    .exitOverride();
  for (const register of commandRegistrations) register(program);
  return program;
}
