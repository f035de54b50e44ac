import { parseArgs } from 'node:util';
import { runQueueWorker } from './queue.js';
import { runLocalWorker } from './worker.js';

/**
 * The worker process {@link runBatch} starts by default: `worker-main.js --dir DIR --id ID --device DEV [--threads N]`
 * takes tasks from a batch folder until none is left; `--queue redis://… --id ID …` takes them from the BullMQ queue
 * until stopped. SIGTERM hands the current task back (the output protocol removes its temp and lock) and exits 143.
 */
const { values } = parseArgs({
  options: { dir: { type: 'string' }, queue: { type: 'string' }, id: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, 'lock-ms': { type: 'string' } },
});
if ((!values.dir && !values.queue) || !values.id || !values.device) {
  process.stderr.write('usage: worker-main.js (--dir DIR | --queue redis://HOST:PORT/DB) --id ID --device cpu|cuda:N [--threads N] [--lock-ms MS]\n');
  process.exit(2);
}
const placement = {
  device: values.device,
  ...(values.threads !== undefined ? { threads: Number(values.threads) } : {}),
  onProgress: (message: string) => process.stderr.write(`${values.id}: ${message}\n`),
};
if (values.queue !== undefined) await runQueueWorker({ ...placement, queue: values.queue, id: values.id, ...(values['lock-ms'] !== undefined ? { lockMs: Number(values['lock-ms']) } : {}) });
else await runLocalWorker({ ...placement, dir: values.dir!, id: values.id });
