// Whole reads and writes on a file descriptor: the kernel may transfer fewer bytes than asked, so both loop.
import { readSync, writeSync } from 'node:fs';

/** Reads buf.length bytes at position; returns how many it got before the end of the file. */
export function readFully(fd: number, buf: Uint8Array, position: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n <= 0) break;
    done += n;
  }
  return done;
}

/** Writes all of buf at the file's current position. */
export function writeAll(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}
