import type { ViteUserConfig } from 'vitest/config';
/** One vitest setup for every package: sources resolved through the `development` export condition, native
 *  state kept per process (forks), and generous timeouts because ORT sessions start slowly on 2 cores. */
export declare function fairpruneVitest(root: string): ViteUserConfig;
//# sourceMappingURL=vitest.shared.d.ts.map