import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Application, Logger, LogLevel, TSConfigReader, TypeDocReader } from 'typedoc';
import { expect, test } from 'vitest';
import * as core from '@fairprune/core';

const root = join(import.meta.dirname, '../../..');

/** Keeps every message TypeDoc logs, so a failure lists the undocumented symbols instead of a bare count. */
class CollectingLogger extends Logger {
  readonly messages: string[] = [];
  override log(message: string, level: Exclude<LogLevel, LogLevel.None>): void {
    super.log(message, level);
    if (level >= LogLevel.Warn) this.messages.push(`${LogLevel[level]}: ${message}`);
  }
}

test('every exported symbol of @fairprune/core is documented, exported where referenced, and links resolve', async () => {
  // Explicit readers: the default ones would also parse vitest's own command line as TypeDoc arguments.
  const app = await Application.bootstrap(
    { options: join(root, 'typedoc.json'), validation: { notDocumented: true, notExported: true, invalidLink: true } },
    [new TypeDocReader(), new TSConfigReader()],
  );
  const logger = new CollectingLogger();
  app.logger = logger;
  const project = await app.convert();
  expect(project, 'TypeDoc could not convert packages/core/src/index.ts').toBeDefined();
  app.validate(project!);
  expect(logger.messages).toEqual([]);
  // The documentation has content: the entry points of the pipeline are in it.
  expect(project!.getChildByName('runFairnessPruning')).toBeDefined();
  expect(project!.getChildByName('analyzeBias')).toBeDefined();
}, 60_000);

test('every name the plain-JavaScript tools, benches and examples import from @fairprune/core is exported', () => {
  // TypeScript users are checked by `tsc -b`; these .mjs files are not type-checked, so a dropped export would only
  // show when someone runs them.
  const files = [
    'packages/core/examples/analyze-and-prune.mjs',
    'packages/core/bench/fairness-pruning.mjs',
    'packages/eval/bench/throughput.mjs',
    'tools/synthetic-model/bench.mjs',
    'tools/synthetic-model/generate.mjs',
    'tools/demo/settings-sweep.mjs',
  ];
  const missing: string[] = [];
  let imported = 0;
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    const lists = [
      ...text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'@fairprune\/core'/g),
      ...text.matchAll(/const\s*\{([^}]*)\}\s*=\s*await import\('@fairprune\/core'\)/g),
    ];
    for (const [, list] of lists) {
      for (const name of list!.split(',').map((n) => n.trim().replace(/^type\s+/, '')).filter(Boolean)) {
        imported++;
        if (!(name in core)) missing.push(`${file}: ${name}`);
      }
    }
  }
  expect(imported).toBeGreaterThan(20);
  expect(missing).toEqual([]);
});
