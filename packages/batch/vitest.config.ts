import { defineConfig } from 'vitest/config';
import { fairpruneVitest } from '../../vitest.shared.js';

export default defineConfig(fairpruneVitest(import.meta.dirname));
