// The .safetensors format (8-byte little-endian header length, a JSON header, then raw little-endian
// tensor bytes), read with every header field checked before any tensor memory is allocated, and
// written atomically in the layout of the reference implementation (huggingface/safetensors).
import { closeSync } from 'node:fs';
import { native } from '../native.ts';
import { Tensor, dtypeOf, type DType } from '../tensor.ts';
import { writeAtomically } from './atomic.ts';
import { readFully, writeAll } from './fd.ts';
import { openRegular } from './open.ts';

/** One tensor's entry in a safetensors header. */
export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** Byte range [begin, end) relative to the start of the data section. */
  dataOffsets: [number, number];
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  tensors: Record<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** File offset of the data section (8 + header length). */
  dataStart: number;
}

// Format dtype name -> our dtype and element size; the rank is the order of the reference's Dtype
// enum, by which its writer sorts tensors (largest first) so every tensor stays aligned.
const FORMAT: Record<string, { dtype: DType; size: number; rank: number }> = {
  BOOL: { dtype: 'bool', size: 1, rank: 0 },
  U8: { dtype: 'uint8', size: 1, rank: 1 },
  I8: { dtype: 'int8', size: 1, rank: 2 },
  I16: { dtype: 'int16', size: 2, rank: 3 },
  F16: { dtype: 'float16', size: 2, rank: 4 },
  BF16: { dtype: 'bfloat16', size: 2, rank: 5 },
  I32: { dtype: 'int32', size: 4, rank: 6 },
  F32: { dtype: 'float32', size: 4, rank: 7 },
  F64: { dtype: 'float64', size: 8, rank: 8 },
  I64: { dtype: 'int64', size: 8, rank: 9 },
};
const NAME_OF = new Map<DType, string>(Object.entries(FORMAT).map(([k, v]) => [v.dtype, k]));
// Defined by the format but with no DType here: named in the error so it is not called "unknown".
const UNSUPPORTED = new Set(['U16', 'U32', 'U64', 'C64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4']);
// The reference refuses headers over 100 MB; so do we, whatever the file size.
const MAX_HEADER = 100_000_000;

function fail(path: string, msg: string): never {
  throw new Error(`safetensors: ${path}: ${msg}`);
}

function readExactly(fd: number, buf: Buffer, position: number): void {
  if (readFully(fd, buf, position) < buf.length) throw new Error('unexpected end of file');
}

/** Reads and validates the header of a .safetensors file without touching the tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  if (typeof path !== 'string') throw new TypeError(`safetensors: path must be a string; got ${typeof path}`);
  const { fd, size: fileSize } = openRegular(path, 'safetensors');
  let json: Buffer;
  try {
    if (fileSize < 8) fail(path, `file of ${fileSize} bytes is too short for the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readExactly(fd, lenBuf, 0);
    const declared = lenBuf.readBigUInt64LE(0);
    if (declared > BigInt(fileSize - 8)) fail(path, `header length ${declared} exceeds the ${fileSize - 8} bytes after it`);
    if (declared > BigInt(MAX_HEADER)) fail(path, `header length ${declared} exceeds the format's limit of ${MAX_HEADER}`);
    json = Buffer.alloc(Number(declared));
    readExactly(fd, json, 8);
  } finally {
    closeSync(fd);
  }
  return parseHeader(path, json, fileSize);
}

function parseHeader(path: string, json: Buffer, fileSize: number): SafetensorsHeader {
  if (json.length === 0 || json[0] !== 0x7b) fail(path, 'header is not a JSON object');
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    fail(path, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(raw)) fail(path, 'header is not a JSON object');
  const dataStart = 8 + json.length;
  const dataLength = fileSize - dataStart;
  const tensors: Record<string, SafetensorsEntry> = {};
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (name === '__metadata__') {
      if (!isPlainObject(value)) fail(path, '__metadata__ must be a map of strings');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') fail(path, `__metadata__ value of "${k}" is not a string`);
        define(metadata, k, v);
      }
      continue;
    }
    define(tensors, name, parseEntry(path, name, value, dataLength));
  }
  // Like the reference: entries tile the data section exactly, from 0 to its end, with no overlap or hole.
  const sorted = Object.entries(tensors).sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let end = 0;
  for (const [name, e] of sorted) {
    const [b] = e.dataOffsets;
    if (b < end) fail(path, `tensor "${name}" overlaps the previous tensor (begins at ${b}, previous ends at ${end})`);
    if (b > end) fail(path, `hole in the data section before tensor "${name}" (bytes ${end}..${b} unused)`);
    end = e.dataOffsets[1];
  }
  if (end !== dataLength) fail(path, `data section holds ${dataLength} bytes but the tensors cover ${end}`);
  return { tensors, metadata, dataStart };
}

function parseEntry(path: string, name: string, value: unknown, dataLength: number): SafetensorsEntry {
  if (!isPlainObject(value)) fail(path, `entry "${name}" is not an object`);
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string') fail(path, `tensor "${name}" has no dtype`);
  const fmt = Object.hasOwn(FORMAT, dtype) ? FORMAT[dtype] : undefined;
  if (!fmt) fail(path, `tensor "${name}" has ${UNSUPPORTED.has(dtype) ? 'unsupported' : 'unknown'} dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    fail(path, `tensor "${name}" shape must be a list of non-negative integers; got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0))
    fail(path, `tensor "${name}" data_offsets must be two non-negative integers; got ${JSON.stringify(offsets)}`);
  const [b, e] = offsets as [number, number];
  if (b > e) fail(path, `tensor "${name}" data_offsets [${b}, ${e}] begin after they end`);
  if (e > dataLength) fail(path, `tensor "${name}" data_offsets [${b}, ${e}] run past the ${dataLength}-byte data section`);
  // Every partial product is bounded by the byte length, so a huge shape fails here, never in an allocation.
  let bytes = (shape as number[]).includes(0) ? 0 : fmt.size;
  for (const d of shape as number[]) {
    bytes *= d;
    if (bytes > e - b) break;
  }
  if (bytes !== e - b) fail(path, `tensor "${name}" of ${dtype} ${JSON.stringify(shape)} needs ${bytesOf(fmt.size, shape as number[])} bytes but data_offsets span ${e - b}`);
  return { dtype: fmt.dtype, shape: shape as number[], dataOffsets: [b, e] };
}

function bytesOf(size: number, shape: number[]): string {
  return shape.reduce((acc, d) => acc * BigInt(d), BigInt(size)).toString();
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// Keys come from files: define them so a name like "__proto__" is an ordinary key, not a prototype.
function define<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Loads every tensor of a .safetensors file onto the CPU; the caller owns the returned tensors. */
export function loadSafetensors(path: string): Record<string, Tensor> {
  const header = readSafetensorsHeader(path);
  const out: Record<string, Tensor> = {};
  try {
    for (const [name, e] of Object.entries(header.tensors)) {
      define(out, name, new Tensor(native.fromFile(path, header.dataStart + e.dataOffsets[0], e.shape, dtypeOf(e.dtype)!)));
    }
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  }
  return out;
}

/** Writes tensors (and optional string metadata) to a .safetensors file, atomically. */
export function saveSafetensors(path: string, record: Record<string, Tensor>, metadata?: Record<string, string>): void {
  if (typeof path !== 'string') throw new TypeError(`saveSafetensors: path must be a string; got ${typeof path}`);
  if (!isPlainObject(record)) throw new TypeError('saveSafetensors: record must be an object of tensors');
  if (metadata !== undefined && !isPlainObject(metadata)) throw new TypeError('saveSafetensors: metadata must be an object of strings');
  const entries = Object.entries(record).map(([name, t]) => {
    if (!(t instanceof Tensor)) throw new TypeError(`saveSafetensors: "${name}" is not a Tensor`);
    if (name === '__metadata__') throw new Error('saveSafetensors: "__metadata__" is reserved and cannot name a tensor');
    if (t.isDisposed) throw new Error(`saveSafetensors: tensor "${name}" is disposed`);
    const format = NAME_OF.get(t.dtype)!;
    return { name, t, format, rank: FORMAT[format]!.rank, key: Buffer.from(name, 'utf8') };
  });
  // The reference's order: larger dtypes first (keeps each tensor aligned), then names byte-wise.
  entries.sort((a, b) => b.rank - a.rank || Buffer.compare(a.key, b.key));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new TypeError(`saveSafetensors: metadata "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const e of entries) {
    const nbytes = e.t.numel * FORMAT[e.format]!.size;
    define(header, e.name, { dtype: e.format, shape: e.t.shape, data_offsets: [offset, offset + nbytes] });
    offset += nbytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(padded.length));
  writeAtomically(path, (fd) => {
    writeAll(fd, len);
    writeAll(fd, padded);
    for (const e of entries) writeAll(fd, e.t.toBytes());
  });
}

