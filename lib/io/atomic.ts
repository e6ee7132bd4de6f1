// Crash-safe file replacement: readers see the old file or the complete new one, never a partial write.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeAll } from './fd.ts';

/** Writes through a temporary file in the same directory, fsyncs it and renames it over path. */
export function writeAtomically(path: string, write: (fd: number) => void): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    write(fd);
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

/** Replaces path with text or bytes atomically (a full disk leaves the old file, not a truncated one). */
export function writeFileAtomically(path: string, data: string | Uint8Array): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  writeAtomically(path, (fd) => writeAll(fd, buf));
}
