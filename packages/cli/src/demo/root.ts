import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The bundled model and data, shipped inside this package (packages/cli/demo). */
export const demoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../demo');
