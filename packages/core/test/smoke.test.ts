import { expect, test } from 'vitest';
import { packageName } from '@fairprune/core';
test('imports', () => { expect(packageName).toBe('@fairprune/core'); });
