// Sums the vitest JSON reports that `npm test` leaves in packages/*/test-results/ and prints CI's closing line.
// Exits non-zero when a package produced no report or any test failed.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
let passed = 0;
let failed = 0;
let skipped = 0;
const missing = [];
for (const pkg of readdirSync(join(root, 'packages'))) {
  const file = join(root, 'packages', pkg, 'test-results', 'vitest.json');
  if (!existsSync(file)) {
    missing.push(pkg);
    continue;
  }
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests;
  // A test file that failed without a failing test (an import error, a crash) counts as one failure.
  const brokenFiles = report.testResults.filter((file) => file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed'));
  failed += report.numFailedTests + brokenFiles.length;
  skipped += report.numPendingTests + (report.numTodoTests ?? 0);
}
if (missing.length) console.log(`no vitest report from: ${missing.join(', ')}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || missing.length > 0 || passed === 0 ? 1 : 0);
