// A synchronous, read-only zip reader for torch.save archives: the central directory (zip64 too),
// stored entries read at their offsets with the CRC checked. Hand-written because loadPth is
// synchronous (yauzl is callback-only) and a state dict's storages should be read one at a time
// rather than the whole archive loaded into memory; every offset is bounds-checked against the file.
import { closeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { readFully } from './fd.ts';
import { openRegular } from './open.ts';

/** One file in the archive's central directory. */
export interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  headerOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const LOCATOR64 = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/** An open zip archive; close() it when done. */
export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  /** The archive's size in bytes. */
  readonly size: number;
  private readonly fd: number;
  private readonly what: string;

  constructor(path: string, what = path) {
    this.what = what;
    ({ fd: this.fd, size: this.size } = openRegular(path, 'zip'));
    try {
      this.readDirectory();
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
  }

  /** Releases the file descriptor. */
  close(): void {
    closeSync(this.fd);
  }

  /** The bytes of a stored entry, checked against its CRC-32. */
  read(name: string): Buffer {
    const e = this.entries.get(name);
    if (!e) this.fail(`entry ${name} is missing`);
    if (e.method !== 0) this.fail(`entry ${name} is compressed (method ${e.method}); torch.save writes stored entries only`);
    if (e.compressedSize !== e.size) this.fail(`entry ${name} is stored but its sizes differ (${e.compressedSize} vs ${e.size})`);
    const local = this.bytes(e.headerOffset, 30, `local header of ${name}`);
    if (local.readUInt32LE(0) !== LOCAL) this.fail(`entry ${name} has no local header at offset ${e.headerOffset}`);
    const start = e.headerOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    const data = this.bytes(start, e.size, `data of ${name}`);
    // torch.serialization.set_crc32_options(False) writes 0; any other value must match.
    if (e.crc !== 0 && crc32(data) >>> 0 !== e.crc) this.fail(`entry ${name} fails its CRC-32 check (the file is corrupt)`);
    return data;
  }

  private fail(msg: string): never {
    throw new Error(`zip: ${this.what}: ${msg}`);
  }

  // Reads length bytes at offset after checking they lie inside the file, so no length read from the
  // archive can allocate more than the file holds.
  private bytes(offset: number, length: number, what: string): Buffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size)
      this.fail(`${what} (${length} bytes at offset ${offset}) lies outside the ${this.size}-byte file`);
    const buf = Buffer.alloc(length);
    if (readFully(this.fd, buf, offset) < length) this.fail(`unexpected end of file reading ${what}`);
    return buf;
  }

  private readDirectory(): void {
    if (this.size < 22) this.fail(`file of ${this.size} bytes is too short to be a zip archive`);
    const tailLen = Math.min(this.size, 22 + 0xffff);
    const tail = this.bytes(this.size - tailLen, tailLen, 'end of central directory');
    let at = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD && i + 22 + tail.readUInt16LE(i + 20) === tailLen) {
        at = i;
        break;
      }
    }
    if (at < 0) this.fail('no end-of-central-directory record (not a zip archive, or truncated)');
    const eocdPos = this.size - tailLen + at;
    let count = tail.readUInt16LE(at + 10);
    let cdSize = tail.readUInt32LE(at + 12);
    let cdOffset = tail.readUInt32LE(at + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = this.bytes(eocdPos - 20, 20, 'zip64 locator');
      if (loc.readUInt32LE(0) !== LOCATOR64) this.fail('zip64 fields without a zip64 locator');
      const rec = this.bytes(this.u64(loc, 8), 56, 'zip64 end of central directory');
      if (rec.readUInt32LE(0) !== EOCD64) this.fail('zip64 locator does not point at a zip64 record');
      count = this.u64(rec, 32);
      cdSize = this.u64(rec, 40);
      cdOffset = this.u64(rec, 48);
    }
    // Each central record is at least 46 bytes: a count the directory cannot hold is corrupt.
    if (count > cdSize / 46) this.fail(`central directory of ${cdSize} bytes cannot hold ${count} entries`);
    const cd = this.bytes(cdOffset, cdSize, 'central directory');
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) this.fail(`central directory record ${i} is corrupt`);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cd.length) this.fail(`central directory record ${i} runs past the directory`);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      const e: ZipEntry = {
        name,
        method: cd.readUInt16LE(p + 10),
        crc: cd.readUInt32LE(p + 16),
        compressedSize: cd.readUInt32LE(p + 20),
        size: cd.readUInt32LE(p + 24),
        headerOffset: cd.readUInt32LE(p + 42),
      };
      this.applyZip64(e, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen));
      if (this.entries.has(name)) this.fail(`entry ${name} appears twice`);
      this.entries.set(name, e);
      p = end;
    }
  }

  // Sizes and offsets that overflow 32 bits live in the zip64 extra field (id 1), in this order.
  private applyZip64(e: ZipEntry, extra: Buffer): void {
    const fields = (['size', 'compressedSize', 'headerOffset'] as const).filter((k) => e[k] === 0xffffffff);
    if (!fields.length) return;
    for (let q = 0; q + 4 <= extra.length; ) {
      const id = extra.readUInt16LE(q);
      const len = extra.readUInt16LE(q + 2);
      if (id === 1) {
        if (len < fields.length * 8 || q + 4 + len > extra.length) break;
        fields.forEach((k, j) => (e[k] = this.u64(extra, q + 4 + 8 * j)));
        return;
      }
      q += 4 + len;
    }
    this.fail(`entry ${e.name} needs a zip64 extra field it does not have`);
  }

  private u64(buf: Buffer, offset: number): number {
    const v = buf.readBigUInt64LE(offset);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`64-bit field ${v} is out of range`);
    return Number(v);
  }
}
