import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * Writes a file so that readers see either the old content or the whole new one: the text goes to a temporary
 * sibling, is flushed to disk, and is renamed over the target.
 * @throws when the folder is not writable; the temporary file is removed first.
 */
export function writeFileAtomic(path: string, text: string): void {
  const temp = `${path}.${process.pid}.partial`;
  try {
    const fd = openSync(temp, 'w');
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw new Error(`cannot write ${path}: ${(error as Error).message}`);
  }
}
