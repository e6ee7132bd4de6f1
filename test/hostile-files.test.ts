// Hostile weight files (issue 7): each must be a clear Error, never a crash, never run code, and never
// allocate more than the file holds. References: files made by hand here (byte layouts from the
// safetensors spec and the zip appnote) and by Python's pickle/zipfile/torch.save (.venv torch 2.13).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, memory, tensor, Tensor } from '../lib/index.ts';
import { py, tmp } from './helpers.ts';

const dir = tmp('hostile-');
let n = 0;
const file = (bytes: Uint8Array | string): string => {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, bytes);
  return p;
};

// A safetensors file from a header object (or raw header text) and a data section.
function st(header: unknown, data: Uint8Array = new Uint8Array(0)): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return file(Buffer.concat([len, json, data]));
}

// Runs load on path; returns its error (which must be an Error) or null when it loaded.
function outcome(load: (p: string) => Record<string, Tensor>, path: string): Error | null {
  try {
    for (const t of Object.values(load(path))) t.dispose();
    return null;
  } catch (e) {
    assert.instance(e, Error);
    return e as Error;
  }
}

const F32 = (v: number[]) => new Uint8Array(new Float32Array(v).buffer);

test('safetensors: zero-length, short, huge declared header, non-JSON and non-object headers are clear errors', () => {
  assert.throws(() => io.loadSafetensors(file('')), /0 bytes is too short/);
  assert.throws(() => io.loadSafetensors(file('abc')), /too short/);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(2n ** 63n);
  assert.throws(() => io.loadSafetensors(file(huge)), /header length 9223372036854775808 exceeds the 8 bytes/);
  assert.throws(() => io.loadSafetensors(st('{"a": ')), /not valid UTF-8 JSON/);
  assert.throws(() => io.loadSafetensors(st('[1, 2]')), /not a JSON object/);
  assert.throws(() => io.loadSafetensors(st(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1'))), /not valid UTF-8 JSON/);
  assert.throws(() => io.loadSafetensors(st({ __metadata__: { a: 1 } })), /__metadata__ value of "a" is not a string/);
});

test('safetensors: bad entries (dtype, shape, offsets, overlap, hole, size) fail before any tensor is allocated', () => {
  const before = memory();
  const cases: [unknown, Uint8Array, RegExp][] = [
    [{ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }, F32([1]), /unknown dtype "Q7"/],
    [{ a: { dtype: 'U16', shape: [2], data_offsets: [0, 4] } }, F32([1]), /unsupported dtype "U16"/],
    [{ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, F32([1]), /non-negative integers/],
    [{ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, F32([1]), /non-negative integers/],
    [{ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4096] } }, F32([1]), /run past the 4-byte data section/],
    [{ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, F32([1]), /begin after they end/],
    [{ a: { dtype: 'F32', shape: [1e15], data_offsets: [0, 4] } }, F32([1]), /needs 4000000000000000 bytes but data_offsets span 4/],
    [{ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, F32([1]), /needs 4835703278458516698824704 bytes/],
    [{ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, F32([1, 2]), /overlaps/],
    [{ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, F32([1, 2]), /hole in the data section/],
    [{ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, F32([1, 2]), /holds 8 bytes but the tensors cover 4/],
    [{ a: { dtype: 'F32', shape: [1] } }, F32([1]), /data_offsets must be two non-negative integers/],
    [{ a: 'tensor' }, F32([1]), /entry "a" is not an object/],
  ];
  for (const [header, data, re] of cases) assert.throws(() => io.loadSafetensors(st(header, data)), re, JSON.stringify(header));
  assert.is(memory().tensors, before.tensors);
});

test('safetensors: every truncation and every single-bit flip of a valid file is an Error or a consistent load', () => {
  const path = join(dir, 'valid.safetensors');
  io.saveSafetensors(path, { w: tensor([1, 2, 3, 4], { shape: [2, 2] }), b: tensor([7, 8], { dtype: 'int64' }) }, { k: 'v' });
  const bytes = readFileSync(path);
  for (let len = 0; len < bytes.length; len++) assert.ok(outcome(io.loadSafetensors, file(bytes.subarray(0, len))), `prefix ${len} loaded`);
  let errors = 0;
  const p = join(dir, 'flipped.safetensors');
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    const b = Buffer.from(bytes);
    b[bit >> 3]! ^= 1 << (bit & 7);
    writeFileSync(p, b);
    const e = outcome(io.loadSafetensors, p);
    if (e) {
      errors++;
      assert.match(e.message, /safetensors:/);
    }
  }
  // The format has no checksum: flips in the data section load with other values, header flips mostly fail.
  assert.ok(errors > bytes.length * 8 * 0.5, `${errors} errors`);
});

// Hostile .pth files from Python: a valid base, pickles naming os.system / builtins.eval, a missing
// storage, a view outside its storage, a huge view, an unsupported storage type and a truncated pickle.
const marker = join(dir, 'pwned');
let pth: Record<string, string>;

test('pth fixtures are made by Python (torch.save, pickle, zipfile)', () => {
  pth = py<Record<string, string>>(`
import json, os, pickle, zipfile, collections, warnings, torch
warnings.simplefilter('ignore')
d = ${JSON.stringify(dir)}
out = {}
def path(name):
    out[name] = os.path.join(d, name + '.pth'); return out[name]
torch.save({'w': torch.arange(6.).reshape(2, 3), 'n': torch.tensor(5)}, path('base'))
class System:
    def __reduce__(self): return (os.system, ('echo pwned > ${marker}',))
class Eval:
    def __reduce__(self): return (eval, ("open('${marker}', 'w').write('x')",))
class View:
    def __init__(self, size, stride, offset=0): self.a = (size, stride, offset)
    def __reduce__(self):
        size, stride, offset = self.a
        return (torch._utils._rebuild_tensor_v2, (torch.zeros(4).storage(), offset, size, stride, False, collections.OrderedDict()))
torch.save({'w': torch.zeros(2), 'evil': System()}, path('system'))
torch.save({'w': torch.zeros(2), 'outside': View((5,), (1,))}, path('outside'))
torch.save({'offset': View((2,), (1,), 3)}, path('offset'))
torch.save({'huge': View((10**15, 10**15), (1, 1))}, path('huge'))
torch.save({'c': torch.zeros(2, dtype=torch.complex64)}, path('complex'))
def rezip(src, name, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path(name), 'w', zipfile.ZIP_STORED) as zout:
        for i in zin.infolist():
            data = edit(i.filename, zin.read(i.filename))
            if data is not None: zout.writestr(i.filename, data)
rezip(out['base'], 'missing', lambda n, b: None if n.endswith('/data/0') else b)
rezip(out['base'], 'truncpkl', lambda n, b: b[:len(b) // 2] if n.endswith('data.pkl') else b)
rezip(out['base'], 'eval4', lambda n, b: pickle.dumps(Eval(), protocol=4) if n.endswith('data.pkl') else b)
with zipfile.ZipFile(path('deflated'), 'w', zipfile.ZIP_DEFLATED) as z:
    with zipfile.ZipFile(out['base']) as zin:
        for i in zin.infolist(): z.writestr(i.filename, zin.read(i.filename))
print(json.dumps(out))
`);
  assert.ok(existsSync(pth.base!));
  const base = io.loadPth(pth.base!);
  assert.equal(Array.from(base.w!.toArray() as Float32Array), [0, 1, 2, 3, 4, 5]);
});

test('pth: pickles naming os.system or builtins.eval are refused by name and nothing runs', () => {
  assert.throws(() => io.loadPth(pth.system!), /global posix\.system is not allowed/);
  assert.throws(() => io.loadPth(pth.eval4!), /global builtins\.eval is not allowed/);
  assert.not.ok(existsSync(marker), 'the payload ran');
});

test('pth: missing storage, views outside their storage, unsupported storage types and truncated pickles are clear errors', () => {
  const before = memory().tensors;
  assert.throws(() => io.loadPth(pth.missing!), /storage \S+\/data\/0 named by the pickle is missing from the zip/);
  assert.throws(() => io.loadPth(pth.outside!), /tensor "outside": fromStorage: view reaches element 4 of a storage of 4/);
  assert.throws(() => io.loadPth(pth.offset!), /tensor "offset": fromStorage: view reaches element 4 of a storage of 4/);
  assert.throws(() => io.loadPth(pth.huge!), /tensor "huge": /);
  assert.throws(() => io.loadPth(pth.complex!), /global torch\.ComplexFloatStorage is not allowed/);
  assert.throws(() => io.loadPth(pth.truncpkl!), /pickle: truncated/);
  assert.throws(() => io.loadPth(pth.deflated!), /compressed \(method 8\)/);
  assert.is(memory().tensors, before);
});

test('pth: zero-length, non-zip and corrupt-zip files are clear errors', () => {
  assert.throws(() => io.loadPth(file('')), /the file is empty/);
  assert.throws(() => io.loadPth(file('just some text, not weights')), /not a zip archive/);
  assert.throws(() => io.loadPth(file(Buffer.from('PK\x03\x04 and then nothing useful', 'latin1'))), /no end-of-central-directory record/);
  assert.throws(() => io.loadPth(join(dir, 'does-not-exist.pth')), /ENOENT/);
});

test('pth: every truncation is an Error; every single-byte flip is an Error or loads the original values', () => {
  const bytes = readFileSync(pth.base!);
  for (let len = 0; len < bytes.length; len += 7) assert.ok(outcome(io.loadPth, file(bytes.subarray(0, len))), `prefix ${len} loaded`);
  const p = join(dir, 'flipped.pth');
  let errors = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = Buffer.from(bytes);
    b[i]! ^= 1 << (i % 8);
    writeFileSync(p, b);
    try {
      const sd = io.loadPth(p);
      // CRC-32 guards every byte that is read, so a load that succeeds has the original values.
      assert.equal(Array.from(sd.w!.toArray() as Float32Array), [0, 1, 2, 3, 4, 5], `flip at ${i}`);
      assert.equal(Array.from(sd.n!.toArray() as BigInt64Array), [5n], `flip at ${i}`);
      for (const t of Object.values(sd)) t.dispose();
    } catch (e) {
      assert.instance(e, Error);
      assert.match((e as Error).message, /^(loadPth|zip): /, `flip at ${i}: ${(e as Error).message}`);
      errors++;
    }
  }
  assert.ok(errors > 0);
});

test.run();
