import { ARTIFACTS } from '@fairprune/core';
import { Command } from 'commander';
import { loadReportData, renderReport, writeReport } from '../report/index.js';

interface ReportFlags {
  before?: string;
  after?: string;
  out: string;
  title?: string;
  json?: boolean;
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('Write one self-contained HTML report (charts inline, no network) from the files analyze and prune wrote')
    .option('--before <dir>', 'folder of the original model analysis (bias-report.json from fairprune analyze --out)')
    .option('--after <dir>', 'the pruned model folder from fairprune prune --out, or an analysis folder of the pruned model')
    .option('--out <file>', 'HTML file to write', ARTIFACTS.report)
    .option('--title <text>', 'title at the top of the report', 'Fairness pruning report')
    .option('--json', 'print { out, files } as JSON on stdout')
    .action(async (flags: ReportFlags) => {
      const { data, files } = loadReportData(
        {
          ...(flags.before !== undefined ? { before: flags.before } : {}),
          ...(flags.after !== undefined ? { after: flags.after } : {}),
        },
        flags.title !== undefined ? { title: flags.title } : {},
      );
      const out = await writeReport(flags.out, renderReport(data));
      if (flags.json) process.stdout.write(`${JSON.stringify({ out, files }, null, 1)}\n`);
      else process.stdout.write(`wrote ${out} (from ${files.length} file${files.length === 1 ? '' : 's'})\n`);
    });
}
