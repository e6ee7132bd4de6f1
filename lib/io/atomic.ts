// Crash-safe file replacement: readers see the old file or the complete new one, never a partial write.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Writes through a temporary file in the same directory, fsyncs it and renames it over path. */
export function writeAtomically(path: string, write: (fd: number) => void): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    write(fd);
    pauseForCrashTests();
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  // The rename itself is durable only once the directory entry is flushed.
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * RESNET_TS_TEST_WRITE_PAUSE_MS holds every atomic write between writing the temporary file and
 * renaming it, so the crash-safety tests can SIGKILL a process in the middle of a checkpoint write.
 */
function pauseForCrashTests(): void {
  const ms = Number(process.env.RESNET_TS_TEST_WRITE_PAUSE_MS ?? 0);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
