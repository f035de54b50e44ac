import type { ViteUserConfig } from 'vitest/config';

/** One vitest setup for every package: sources resolved through the `development` export condition, native
 *  state kept per process (forks), and generous timeouts because ORT sessions start slowly on 2 cores. */
export function fairpruneVitest(root: string): ViteUserConfig {
  return {
    root,
    resolve: { conditions: ['development'] },
    ssr: { resolve: { conditions: ['development'], externalConditions: ['development'] } },
    test: {
      include: ['test/**/*.test.ts'],
      pool: 'forks',
      testTimeout: 120_000,
      hookTimeout: 120_000,
      // The JSON report is how .ci/run counts passed and failed tests (Nx caches it with the target's outputs).
      reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
    },
  };
}
