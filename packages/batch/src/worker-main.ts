import { parseArgs } from 'node:util';
import { runLocalWorker } from './worker.js';

/**
 * The worker process {@link runBatch} starts by default: `worker-main.js --dir DIR --id ID --device DEV [--threads N]`.
 * SIGTERM hands the current task back (the output protocol removes its temp and lock) and exits 143.
 */
const { values } = parseArgs({ options: { dir: { type: 'string' }, id: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' } } });
if (!values.dir || !values.id || !values.device) {
  process.stderr.write('usage: worker-main.js --dir DIR --id ID --device cpu|cuda:N [--threads N]\n');
  process.exit(2);
}
await runLocalWorker({
  dir: values.dir,
  id: values.id,
  device: values.device,
  ...(values.threads !== undefined ? { threads: Number(values.threads) } : {}),
  onProgress: (message) => process.stderr.write(`${values.id}: ${message}\n`),
});
