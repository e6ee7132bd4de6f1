// The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a magic number naming the element type
// and rank, big-endian dimension sizes, then the raw elements. Files may be gzipped.
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** A parsed IDX file: its dimensions and unsigned-byte elements. */
export interface Idx {
  dims: number[];
  data: Uint8Array;
}

/** Parses an IDX buffer (plain or gzipped) of unsigned bytes; `name` goes into error messages. */
export function parseIdx(buf: Uint8Array, name = 'IDX file'): Idx {
  let b = buf;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) {
    try {
      b = gunzipSync(b);
    } catch (e) {
      throw new Error(`${name}: corrupt gzip data (${(e as Error).message})`);
    }
  }
  if (b.length < 4) throw new Error(`${name}: too short for an IDX header (${b.length} bytes)`);
  if (b[0] !== 0 || b[1] !== 0) throw new Error(`${name}: not an IDX file (magic ${Buffer.from(b.subarray(0, 4)).toString('hex')})`);
  if (b[2] !== 0x08) throw new Error(`${name}: element type 0x${b[2]!.toString(16)} is not unsigned byte (0x08)`);
  const rank = b[3]!;
  if (rank < 1 || rank > 4) throw new Error(`${name}: rank ${rank} is outside 1..4`);
  const header = 4 + 4 * rank;
  if (b.length < header) throw new Error(`${name}: truncated header`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, d) => a * d, 1);
  if (b.length - header !== count) {
    throw new Error(`${name}: header declares ${dims.join('x')} = ${count} bytes of data but the file holds ${b.length - header}`);
  }
  return { dims, data: b.subarray(header) };
}

/** Reads `base` or `base.gz` from dir and parses it; says which file is missing. */
export function readIdx(dir: string, base: string): Idx {
  for (const name of [base, `${base}.gz`]) {
    const path = `${dir}/${name}`;
    if (existsSync(path)) return parseIdx(readFileSync(path), path);
  }
  throw new Error(`missing ${dir}/${base} (or ${base}.gz)`);
}
