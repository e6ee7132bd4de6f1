// Opening a weights or checkpoint file for reading. A FIFO, a socket or a device opened the usual
// way can block forever (a FIFO's open waits for a writer) or never end (/dev/zero), so the file is
// opened non-blocking and refused unless fstat says it is a regular file: one descriptor, so a path
// swapped between a check and the open cannot slip through. (libuv adds O_CLOEXEC itself.)
import { closeSync, constants, fstatSync, openSync } from 'node:fs';

/** Opens path read-only; throws `${what}: ${path} is not a regular file` for FIFOs, devices, directories. */
export function openRegular(path: string, what: string): { fd: number; size: number } {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${what}: ${path} is not a regular file (${kind(st)}); weights are read from regular files only`);
    return { fd, size: st.size };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function kind(st: { isFIFO(): boolean; isDirectory(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return st.isSocket() ? 'a socket' : 'not a file';
}
