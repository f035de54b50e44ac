import { expect, test } from 'vitest';
import { packageName } from '@fairprune/eval';
test('imports', () => { expect(packageName).toBe('@fairprune/eval'); });
