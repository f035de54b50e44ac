import type { Command } from 'commander';
import { integerFlag } from '../flags.js';
import { runDemo, type DemoSummary } from '../demo/run-demo.js';

interface DemoFlags {
  out: string;
  force?: boolean;
  threads?: number;
  compareMethods?: boolean;
  json?: boolean;
}

const fixed = (value: number, digits = 3): string => value.toFixed(digits);
const signed = (value: number): string => `${value >= 0 ? '+' : ''}${value.toFixed(2)}`;
const percent = (before: number, after: number): string => `${signed(((after - before) / before) * 100)}%`;

/** The short plain-text summary a person reads at the end of the demo. */
export function formatDemoSummary(summary: DemoSummary): string {
  const s = summary.settings;
  const m = summary.biasMetric;
  const lines = [
    'fairprune demo: Fairness Pruning of a tiny Llama with a planted bias',
    '',
    `Settings: importance ${s.importance}, bias weight ${s.biasWeight}, fraction ${s.fraction} per layer, ${s.estimator} bias, mode ${s.mode}.`,
    `  Why: ${s.why}`,
    `Pruned ${summary.prunedNeurons.total} of ${summary.prunedNeurons.of} MLP neurons (${summary.prunedNeurons.perLayer.join(' / ')} per layer); parameters ${summary.parameters.before.toLocaleString('en-US')} → ${summary.parameters.after.toLocaleString('en-US')}.`,
    '',
    `Bias metric (optiPfair mean_difference, seed pair): ${fixed(m.overall.before, 4)} → ${fixed(m.overall.after, 4)} (${percent(m.overall.before, m.overall.after)})`,
    `  without gate_proj/up_proj (where pruned neurons simply vanish): ${fixed(m.excludingGateUp.before, 4)} → ${fixed(m.excludingGateUp.after, 4)} (${percent(m.excludingGateUp.before, m.excludingGateUp.after)})`,
    '',
    'Held-out behaviour: log-odds of negative vs positive continuations, in nats (side A = Black/Asian, side B = white):',
    ...summary.behaviour.pairs.map(
      (p) => `  ${p.a.slice(0, 44).padEnd(44)}  A ${signed(p.logOddsA.before)} → ${signed(p.logOddsA.after)}   B ${signed(p.logOddsB.before)} → ${signed(p.logOddsB.after)}   gap ${fixed(p.gap.before, 2)} → ${fixed(p.gap.after, 2)}`,
    ),
    ...(summary.behaviour.shift ? [`  ${summary.behaviour.shift.reading}`] : []),
    '',
    'Abilities (mini sets, 64 documents each):',
    ...Object.entries(summary.evaluation).map(
      ([task, e]) => `  ${task.padEnd(15)} acc ${fixed(e.acc.before)} → ${fixed(e.acc.after)}  (stderr ${fixed(e.accStderr.before)})`,
    ),
    '',
    'Generation, the article\'s beam search (5 beams, max_length 50, no_repeat_ngram_size 2, early stopping):',
    ...summary.generations.flatMap((g) => [`  ${g.prompt}`, `    before:${g.before}`, `    after: ${g.after}`]),
    '',
    ...(summary.comparison ? sideBySide(summary.comparison) : []),
    `Report: ${summary.files.report}${summary.files.behaviourReport ? `; --method behaviour: ${summary.files.behaviourReport}` : ''}`,
    `Summary JSON: ${summary.files.summary}; pruned model: ${summary.files.prunedModel}`,
    `(${summary.seconds.toFixed(1)} s)`,
  ];
  return `${lines.join('\n')}\n`;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('Run the whole pipeline on the bundled biased model: analyze, prune, re-analyze, behaviour, mini LAMBADA/BoolQ, generation, report')
    .option('--out <dir>', 'output folder (replaced if it holds an earlier demo)', 'fairprune-demo')
    .option('--force', 'replace any earlier fairprune output at --out, not only a demo\'s (a folder fairprune did not write is never replaced)')
    .option('--threads <n>', 'onnxruntime intra-op threads', integerFlag(1))
    .option('--compare-methods', 'also run --method behaviour and compare it with the article\'s method on 24 held-out pairs (several minutes)')
    .option('--json', 'print the summary (report.json) on stdout instead of text')
    .action(async (flags: DemoFlags) => {
      const summary = await runDemo({
        outDir: flags.out,
        ...(flags.force ? { force: true } : {}),
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
        ...(flags.compareMethods ? { compareMethods: true } : {}),
        onProgress: (message) => process.stderr.write(`fairprune demo: ${message}\n`),
      });
      process.stdout.write(flags.json ? `${JSON.stringify(summary, null, 1)}\n` : formatDemoSummary(summary));
    });
}

/** The article's method and `--method behaviour` side by side (`demo --compare-methods`). */
function sideBySide(comparison: NonNullable<DemoSummary['comparison']>): string[] {
  return [
    `Side by side on ${comparison.heldOutCount} held-out pairs (${comparison.heldOutPairs}), neither method saw them:`,
    ...comparison.methods.flatMap((m) => [
      `  ${m.method}: ${m.neurons} neurons`,
      ...(m.heldOut
        ? [`    gap ${fixed(m.heldOut.meanGapBefore, 2)} → ${fixed(m.heldOut.meanGapAfter, 2)} (${percent(m.heldOut.meanGapBefore, m.heldOut.meanGapAfter)}); side A ${signed(m.heldOut.meanShiftA)}, side B ${signed(m.heldOut.meanShiftB)}${m.heldOut.levellingDown ? '  ← levelling down' : ''}`]
        : []),
      `    ${Object.entries(m.evaluation).map(([task, e]) => `${task} ${fixed(e.before)} → ${fixed(e.after)}`).join(', ')}`,
      `    seed prompt, beam search after: ${m.generations[0]!.after}`,
    ]),
    '',
  ];
}
