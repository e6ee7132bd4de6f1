// Child process of fuzz-weights.test.ts: mutates real weights files (made by the torchvision oracle)
// with a seeded generator and loads every mutant in this process. Mutations: bit flips, byte sets,
// truncations, splices (from any base file), zip length and offset fields, the safetensors header
// length and JSON fields, and pickle opcode edits (replaced, deleted, duplicated or inserted opcodes,
// edited arguments and length fields), re-zipped with a correct CRC so they reach the unpickler.
// Each load must return or throw an Error; the peak RSS growth of each load (VmHWM, reset through
// /proc/self/clear_refs before it) must stay below 4 x the file size + 64 MiB. Before each load the
// mutant's number is written to a log file, so a hang or crash names it.
//
// Usage: node --import tsx test/fuzz-weights.child.ts <seed> <files> <baseDir> <logFile>
// Prints one line: FUZZW-RESULT {json}.
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { io, type Tensor } from '../lib/index.ts';

const [seedArg = '1', filesArg = '1000', baseDir = '.', logPath = '/dev/null'] = process.argv.slice(2);
const log = openSync(logPath, 'w');

let seed = Number(seedArg) >>> 0;
function rand(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T,>(xs: readonly T[]): T => xs[int(xs.length)]!;

interface Base { name: string; kind: 'pth' | 'safetensors'; bytes: Buffer }
const bases: Base[] = readdirSync(baseDir).sort().map((f) => ({
  name: f, kind: f.endsWith('.pth') ? 'pth' : 'safetensors', bytes: readFileSync(join(baseDir, f)),
} as Base));

// ---- the zip layout of a torch.save file ----

interface Entry { name: string; data: Buffer }
function unzip(b: Buffer): Entry[] {
  const eocd = b.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = b.readUInt16LE(eocd + 10);
  let p = b.readUInt32LE(eocd + 16);
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const nameLen = b.readUInt16LE(p + 28);
    const extraLen = b.readUInt16LE(p + 30);
    const commentLen = b.readUInt16LE(p + 32);
    const size = b.readUInt32LE(p + 24);
    const local = b.readUInt32LE(p + 42);
    const name = b.toString('utf8', p + 46, p + 46 + nameLen);
    const start = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    out.push({ name, data: b.subarray(start, start + size) });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

// A stored zip with correct CRCs (the layout zipfile and torch.save write, without alignment padding).
function zip(entries: Entry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const crc = crc32(e.data) >>> 0;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(e.data.length, 18);
    lh.writeUInt32LE(e.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(e.data.length, 20);
    ch.writeUInt32LE(e.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, e.data);
    centrals.push(ch, name);
    offset += 30 + name.length + e.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

// Offsets of the zip's length, offset and count fields: [position, bytes].
function zipFields(b: Buffer): [number, number][] {
  const eocd = b.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const f: [number, number][] = [[eocd + 8, 2], [eocd + 10, 2], [eocd + 12, 4], [eocd + 16, 4], [eocd + 20, 2]];
  let p = b.readUInt32LE(eocd + 16);
  for (let i = 0; i < b.readUInt16LE(eocd + 10) && p + 46 <= b.length; i++) {
    f.push([p + 10, 2], [p + 20, 4], [p + 24, 4], [p + 28, 2], [p + 30, 2], [p + 32, 2], [p + 42, 4]);
    const local = b.readUInt32LE(p + 42);
    if (local + 30 <= b.length) f.push([local + 8, 2], [local + 18, 4], [local + 22, 4], [local + 26, 2], [local + 28, 2]);
    p += 46 + b.readUInt16LE(p + 28) + b.readUInt16LE(p + 30) + b.readUInt16LE(p + 32);
  }
  return f;
}

// ---- pickle opcodes (protocols 2 and 4, as torch.save writes them) ----

const FIXED: Record<number, number> = { 0x80: 1, 0x95: 8, 0x4a: 4, 0x4b: 1, 0x4d: 2, 0x71: 1, 0x72: 4, 0x68: 1, 0x6a: 4, 0x47: 8, 0x82: 1, 0x83: 2, 0x84: 4 };
const COUNTED: Record<number, number> = { 0x8c: 1, 0x58: 4, 0x8d: 8, 0x43: 1, 0x42: 4, 0x8e: 8, 0x55: 1, 0x54: 4, 0x8a: 1, 0x8b: 4, 0x96: 8 };
const LINES: Record<number, number> = { 0x63: 2, 0x69: 2, 0x49: 1, 0x4c: 1, 0x46: 1, 0x53: 1, 0x56: 1, 0x50: 1, 0x67: 1, 0x70: 1 };
// Opcodes that build things, for insertions: EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, MARK, DUP, NONE, TUPLE, TUPLE1-3, LIST, DICT,
// SETITEMS, APPENDS, POP, POP_MARK, MEMOIZE, NEWTRUE, BINPERSID, REDUCE, BUILD, STOP.
const BUILDERS = [0x7d, 0x5d, 0x29, 0x28, 0x32, 0x4e, 0x74, 0x85, 0x86, 0x87, 0x6c, 0x64, 0x75, 0x65, 0x30, 0x31, 0x94, 0x88, 0x51, 0x52, 0x62, 0x2e];

interface Op { pos: number; end: number; op: number; len?: [number, number] }
function opcodes(b: Buffer): Op[] {
  const ops: Op[] = [];
  let p = 0;
  while (p < b.length) {
    const op = b[p]!;
    let end = p + 1;
    let len: [number, number] | undefined;
    if (FIXED[op] !== undefined) end += FIXED[op]!;
    else if (COUNTED[op] !== undefined) {
      const w = COUNTED[op]!;
      const n = w === 1 ? b[p + 1]! : w === 4 ? b.readUInt32LE(p + 1) : Number(b.readBigUInt64LE(p + 1));
      len = [p + 1, w];
      end += w + n;
    } else if (LINES[op] !== undefined) {
      for (let k = 0; k < LINES[op]!; k++) end = b.indexOf(0x0a, end) + 1;
    }
    if (end <= p || end > b.length) break;
    ops.push({ pos: p, end, op, len });
    p = end;
    if (op === 0x2e) break;
  }
  return ops;
}

const EDGE = [0, 1, 2, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];
function writeEdge(b: Buffer, at: number, width: number): void {
  const v = rand() < 0.7 ? pick(EDGE) : int(2 ** 32);
  if (width === 1) b[at] = v & 0xff;
  else if (width === 2) b.writeUInt16LE(v & 0xffff, at);
  else if (width === 4) b.writeUInt32LE(v >>> 0, at);
  else b.writeBigUInt64LE(pick([0n, 1n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, BigInt(v)]), at);
}

function mutatePickle(pkl: Buffer): [string, Buffer] {
  const ops = opcodes(pkl);
  const o = pick(ops);
  const r = rand();
  if (r < 0.15) {
    const b = Buffer.from(pkl);
    b[o.pos] = rand() < 0.5 ? pick(BUILDERS) : int(256);
    return ['pickle-replace-opcode', b];
  }
  if (r < 0.22) return ['pickle-delete-opcode', Buffer.concat([pkl.subarray(0, o.pos), pkl.subarray(o.end)])];
  if (r < 0.3) {
    const o2 = ops[Math.min(ops.length - 1, ops.indexOf(o) + int(8))]!;
    const times = pick([1, 2, 10, 1000]);
    return ['pickle-duplicate-opcodes', Buffer.concat([pkl.subarray(0, o2.end), ...Array<Buffer>(times).fill(pkl.subarray(o.pos, o2.end)), pkl.subarray(o2.end)])];
  }
  const ints = ops.filter((x) => x.op === 0x4b || x.op === 0x4d || x.op === 0x4a);
  if (r < 0.5) {
    // 1 to 3 integer arguments (sizes, strides, offsets, memo keys) set to edge values, zero most often.
    const b = Buffer.from(pkl);
    for (let k = 1 + int(3); k > 0 && ints.length; k--) {
      const a = pick(ints);
      if (rand() < 0.4) b.fill(0, a.pos + 1, a.end);
      else writeEdge(b, a.pos + 1, a.end - a.pos - 1);
    }
    return ['pickle-edit-argument', b];
  }
  if (r < 0.6 && ints.length) {
    // A small integer widened to a 4-byte one (a size of 2^28, say), and often a stride set to 0.
    const a = pick(ints);
    const wide = Buffer.alloc(5);
    wide[0] = 0x4a;
    wide.writeInt32LE(pick([2 ** 20, 2 ** 24, 2 ** 28, 2 ** 31 - 1, -1, 0, 1]), 1);
    let edited = Buffer.concat([pkl.subarray(0, a.pos), wide, pkl.subarray(a.end)]);
    if (rand() < 0.5) {
      const shift = 5 - (a.end - a.pos);
      const z = pick(ints);
      const at = z.pos > a.pos ? z.pos + shift : z.pos;
      if (z !== a) edited.fill(0, at + 1, at + (z.end - z.pos));
    }
    return ['pickle-widen-int', edited];
  }
  if (r < 0.7) {
    const counted = ops.filter((x) => x.len);
    if (!counted.length) return ['pickle-edit-length', pkl];
    const c = pick(counted);
    const b = Buffer.from(pkl);
    writeEdge(b, c.len![0], c.len![1]);
    return ['pickle-edit-length', b];
  }
  // Runs of builders; now and then a bomb: two million of one (EMPTY_DICT, EMPTY_LIST, MARK, or DUP).
  const run = rand() < 0.02
    ? Buffer.concat([Buffer.from([0x7d]), Buffer.alloc(2_000_000, pick([0x7d, 0x5d, 0x28, 0x32]))])
    : Buffer.from(Array.from({ length: pick([1, 3, 50, 5000]) }, () => pick(BUILDERS.filter((x) => x !== 0x2e))));
  return ['pickle-insert-opcodes', Buffer.concat([pkl.subarray(0, o.pos), run, pkl.subarray(o.pos)])];
}

// ---- safetensors header edits ----

const VALUES: unknown[] = [0, 1, -1, 2, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, 1e308, 1.5, '1', null, [], {}, true];
function mutateHeader(b: Buffer): [string, Buffer] {
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.toString('utf8', 8, 8 + n)) as Record<string, Record<string, unknown>>;
  const names = Object.keys(header);
  const name = pick(names);
  const e = header[name]!;
  const r = rand();
  let what: string;
  if (r < 0.5 && name !== '__metadata__') {
    const field = pick(['shape', 'data_offsets', 'dtype']);
    const v = e[field];
    if (Array.isArray(v) && v.length && rand() < 0.8) v[int(v.length)] = pick(VALUES);
    else e[field] = field === 'dtype' ? pick(['F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'F64', 'I8', 'U16', 'Q4', '', 7]) : pick(VALUES);
    what = `safetensors-json-${field}`;
  } else if (r < 0.65) {
    delete header[name];
    what = 'safetensors-json-delete';
  } else if (r < 0.8) {
    header[pick(['__proto__', '__metadata__', '', 'x'.repeat(1000), `${name}.copy`])] = structuredClone(e);
    what = 'safetensors-json-add';
  } else {
    (e as Record<string, unknown>)[pick(['shape', 'data_offsets', 'dtype', 'extra'])] = undefined;
    what = 'safetensors-json-drop-field';
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = b.subarray(8 + n);
  const cut = rand() < 0.1 ? data.subarray(0, int(data.length + 1)) : data;
  return [what, Buffer.concat([len, json, cut])];
}

// ---- generic byte mutations ----

function mutateBytes(base: Base): [string, Buffer] {
  const b = Buffer.from(base.bytes);
  const r = rand();
  if (r < 0.3) {
    for (let k = 1 + int(8); k > 0; k--) b[int(b.length)]! ^= 1 << int(8);
    return ['bit-flips', b];
  }
  if (r < 0.45) {
    for (let k = 1 + int(4); k > 0; k--) b[int(b.length)] = pick([0, 0xff, 0x7f, 0x80, 0x2e, 0x7d]);
    return ['byte-sets', b];
  }
  if (r < 0.65) return ['truncation', b.subarray(0, int(b.length))];
  const donor = pick(bases).bytes;
  const from = int(donor.length);
  const chunk = donor.subarray(from, from + 1 + int(Math.min(4096, donor.length - from)));
  const at = int(b.length);
  return rand() < 0.5
    ? ['splice-insert', Buffer.concat([b.subarray(0, at), chunk, b.subarray(at)])]
    : ['splice-replace', Buffer.concat([b.subarray(0, at), chunk, b.subarray(Math.min(b.length, at + chunk.length))])];
}

function mutate(base: Base): [string, Buffer] {
  const r = rand();
  if (base.kind === 'pth') {
    if (r < 0.45) {
      const entries = unzip(base.bytes);
      const pkl = entries.find((e) => e.name.endsWith('/data.pkl'))!;
      const [what, edited] = mutatePickle(pkl.data);
      return [what, zip(entries.map((e) => (e === pkl ? { name: e.name, data: edited } : e)))];
    }
    if (r < 0.55) {
      const entries = unzip(base.bytes);
      const data = entries.filter((e) => e.name.includes('/data/'));
      const victim = pick(data);
      const cut = victim.data.subarray(0, int(victim.data.length));
      return ['storage-length-with-crc', zip(entries.map((e) => (e === victim ? { name: e.name, data: cut } : e)))];
    }
    if (r < 0.7) {
      const b = Buffer.from(base.bytes);
      const [at, width] = pick(zipFields(b));
      writeEdge(b, at, width);
      return ['zip-field', b];
    }
  } else {
    if (r < 0.1) {
      const b = Buffer.from(base.bytes);
      writeEdge(b, 0, 8);
      return ['safetensors-header-length', b];
    }
    if (r < 0.5) return mutateHeader(base.bytes);
  }
  return mutateBytes(base);
}

// ---- the run ----

const status = (): { rss: number; hwm: number } => {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string): number => Number(/\d+/.exec(s.slice(s.indexOf(k)))![0]) * 1024;
  return { rss: kb('VmRSS:'), hwm: kb('VmHWM:') };
};
let canResetPeak = true;
const resetPeak = (): void => {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    canResetPeak = false;
  }
};

const N = Number(filesArg);
const path = join(baseDir, '..', 'mutant');
const kinds: Record<string, number> = {};
const violations: string[] = [];
const nonErrors: string[] = [];
let loaded = 0;
let refused = 0;
let maxMs = 0;
let worstRatio = 0;
const t0 = Date.now();
for (let i = 0; i < N; i++) {
  const base = bases[i % bases.length]!;
  const [what, bytes] = mutate(base);
  kinds[what] = (kinds[what] ?? 0) + 1;
  writeFileSync(path, bytes);
  // Mostly the loader of the base's format; sometimes the other one.
  const load = (base.kind === 'pth') !== (rand() < 0.05) ? io.loadPth : io.loadSafetensors;
  writeSync(log, `#${i} ${what} of ${base.name} (${bytes.length} bytes) with ${load.name}\n`);
  resetPeak();
  const before = status();
  const start = performance.now();
  let out: Record<string, Tensor> | undefined;
  try {
    out = load(path);
    loaded++;
  } catch (err) {
    refused++;
    if (!(err instanceof Error)) nonErrors.push(`#${i} ${what}: threw ${typeof err}`);
  }
  maxMs = Math.max(maxMs, performance.now() - start);
  const peak = (canResetPeak ? status().hwm : status().rss) - before.rss;
  const budget = 4 * bytes.length + 64 * 2 ** 20;
  worstRatio = Math.max(worstRatio, peak / budget);
  if (peak > budget) {
    const keepAs = join(baseDir, '..', `violation-${i}`);
    writeFileSync(keepAs, bytes);
    violations.push(`#${i} ${what} of ${base.name}: RSS grew by ${(peak / 2 ** 20).toFixed(1)} MiB for a ${bytes.length}-byte file (kept as ${keepAs})`);
  }
  if (out) {
    // Read every element of each small tensor through its strides: a view outside its storage would show here.
    for (const t of Object.values(out)) {
      if (t.numel <= 1 << 20) t.sum().dispose();
      t.dispose();
    }
  }
}
closeSync(log);
console.log('FUZZW-RESULT ' + JSON.stringify({
  files: N, loaded, refused, kinds, violations: violations.slice(0, 10), nonErrors: nonErrors.slice(0, 10),
  seconds: (Date.now() - t0) / 1000, maxMs, worstRatio, peakMode: canResetPeak ? 'VmHWM reset per load' : 'VmRSS after load',
}));
process.exit(0);
