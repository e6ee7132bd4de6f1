// io.loadSafetensors / saveSafetensors / readSafetensorsHeader. The independent reference is a small
// Python reader/writer of the format built from struct + json (no `safetensors` package is installed
// here), run with the .venv's torch 2.13 to produce and check the tensor bytes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, tensor, arange, Tensor, type DType } from '../lib/index.ts';
import { py, tmp } from './helpers.ts';

const dir = tmp('safetensors-');

// Python's side of the format: the dtype table and a tensor -> raw little-endian bytes helper.
const PY_COMMON = `
import json, struct, torch
DT = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
      'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}
def raw(t):
    return bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist()) if t.numel() else b''
def values(t):
    return t.reshape(-1).double().tolist() if t.is_floating_point() else t.reshape(-1).long().tolist()
`;

type PyTensor = { dtype: string; shape: number[]; values: number[] };
const DTYPE_OF: Record<string, DType> = {
  F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16', I64: 'int64',
  I32: 'int32', I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};

function flat(t: Tensor): number[] {
  return Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
}

test('reads a file written by an independent Python writer (struct + json, torch 2.13 bytes): all 10 dtypes, scalar, empty', () => {
  const path = join(dir, 'py.safetensors');
  const ref = py<{ tensors: Record<string, PyTensor>; meta: Record<string, string> }>(`${PY_COMMON}
g = torch.Generator().manual_seed(0)
ts = {
  'f64': torch.randn(3, 2, generator=g, dtype=torch.float64),
  'f32': torch.randn(2, 3, 4, generator=g),
  'f16': torch.randn(5, generator=g).half(),
  'bf16': torch.randn(2, 2, generator=g).bfloat16(),
  'i64': torch.tensor([-(2**40), 0, 7, 2**50]),
  'i32': torch.randint(-1000, 1000, (4,), generator=g, dtype=torch.int32),
  'i16': torch.tensor([-32768, 32767], dtype=torch.int16),
  'i8': torch.tensor([[-128, 5], [127, 0]], dtype=torch.int8),
  'u8': torch.tensor([0, 255, 17], dtype=torch.uint8),
  'mask': torch.tensor([True, False, True]),
  'scalar': torch.tensor(3.25),
  'empty': torch.zeros(0, 3),
  'layer1.0.conv1.weight': torch.randn(2, 1, 3, 3, generator=g),
}
name = {v: k for k, v in DT.items()}
header, blobs, off = {'__metadata__': {'format': 'pt', 'who': 'python'}}, [], 0
for k, t in ts.items():  # insertion order, not the reference's: our reader must not depend on order
    b = raw(t)
    header[k] = {'dtype': name[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(header).encode()
h += b' ' * (-len(h) % 8)
with open(${JSON.stringify(path)}, 'wb') as f:
    f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
print(json.dumps({'tensors': {k: {'dtype': name[t.dtype], 'shape': list(t.shape), 'values': values(t)} for k, t in ts.items()},
                  'meta': header['__metadata__']}))
`);
  const header = io.readSafetensorsHeader(path);
  assert.equal(header.metadata, ref.meta);
  const got = io.loadSafetensors(path);
  assert.equal(Object.keys(got).sort(), Object.keys(ref.tensors).sort());
  for (const [k, r] of Object.entries(ref.tensors)) {
    const t = got[k]!;
    assert.is(t.dtype, DTYPE_OF[r.dtype], k);
    assert.equal(t.shape, r.shape, k);
    assert.equal(flat(t), r.values, k);
  }
});

test('a file we write is read back by the independent Python reader with the same values, sorted and 8-byte aligned', () => {
  const path = join(dir, 'ours.safetensors');
  const record: Record<string, Tensor> = {
    'b.weight': tensor([1.5, -2.25, 3], { dtype: 'float32' }),
    'a.weight': tensor([0.1, 0.2], { dtype: 'float64' }),
    half: tensor([1, 0.5, -65504], { dtype: 'float16' }),
    brain: tensor([1, 2.5, -3e38], { dtype: 'bfloat16' }),
    steps: tensor(new BigInt64Array([123456789012n])).reshape([]),
    i32: tensor(new Int32Array([-5, 6])),
    i16: tensor(new Int16Array([-300, 300])),
    i8: tensor(new Int8Array([-7, 7])),
    u8: tensor(new Uint8Array([200, 1])),
    flags: tensor([1, 0], { dtype: 'bool' }),
    transposed: arange(0, 6, 1, { dtype: 'float32' }).reshape([2, 3]).transpose(0, 1),
    empty: tensor([], { dtype: 'float32' }).reshape([0, 4]),
  };
  io.saveSafetensors(path, record, { format: 'pt', note: 'ünïcode' });
  const ref = py<{ order: string[]; headerLen: number; meta: Record<string, string>; tensors: Record<string, PyTensor> }>(`${PY_COMMON}
with open(${JSON.stringify(path)}, 'rb') as f:
    buf = f.read()
n, = struct.unpack('<Q', buf[:8])
header = json.loads(buf[8:8 + n])
meta = header.pop('__metadata__', {})
data = buf[8 + n:]
out = {}
for k, e in header.items():
    b, end = e['data_offsets']
    dt = DT[e['dtype']]
    t = torch.frombuffer(bytearray(data[b:end]), dtype=dt) if end > b else torch.empty(0, dtype=dt)
    out[k] = {'dtype': e['dtype'], 'shape': e['shape'], 'values': values(t.reshape(e['shape']))}
order = sorted(header, key=lambda k: header[k]['data_offsets'][0])
print(json.dumps({'order': order, 'headerLen': n, 'meta': meta, 'tensors': out}))
`);
  assert.is(ref.headerLen % 8, 0);
  assert.equal(ref.meta, { format: 'pt', note: 'ünïcode' });
  // The reference implementation's order: dtype I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL, then name.
  assert.equal(ref.order, ['steps', 'a.weight', 'b.weight', 'empty', 'transposed', 'i32', 'brain', 'half', 'i16', 'i8', 'u8', 'flags']);
  for (const [k, t] of Object.entries(record)) {
    const r = ref.tensors[k]!;
    assert.is(DTYPE_OF[r.dtype], t.dtype, k);
    assert.equal(r.shape, t.shape, k);
    assert.equal(r.values, flat(t), k);
  }
  assert.equal(ref.tensors.transposed!.values, [0, 3, 1, 4, 2, 5]);
});

test('save then load round-trips every tensor and overwrites atomically, leaving no temporary file', () => {
  const path = join(dir, 'round.safetensors');
  writeFileSync(path, 'old contents');
  const a = tensor([[1, 2], [3, 4]], { dtype: 'float32' });
  const proto = tensor([9], { dtype: 'int32' });
  const rec: Record<string, Tensor> = { a };
  Object.defineProperty(rec, '__proto__', { value: proto, enumerable: true });
  io.saveSafetensors(path, rec);
  const back = io.loadSafetensors(path);
  assert.equal(Object.keys(back).sort(), ['__proto__', 'a']);
  assert.ok(back.a!.equal(a));
  assert.ok(Object.getOwnPropertyDescriptor(back, '__proto__')!.value.equal(proto));
  assert.ok(readFileSync(path).readBigUInt64LE(0) % 8n === 0n);
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
});

test('bad arguments to saveSafetensors are errors that name the problem', () => {
  const path = join(dir, 'bad.safetensors');
  assert.throws(() => io.saveSafetensors(path, { x: [1, 2] as unknown as Tensor }), /"x" is not a Tensor/);
  assert.throws(() => io.saveSafetensors(path, { __metadata__: tensor([1]) }), /reserved/);
  assert.throws(() => io.saveSafetensors(path, { x: tensor([1]) }, { n: 3 as unknown as string }), /metadata "n" must be a string/);
  const d = tensor([1]);
  d.dispose();
  assert.throws(() => io.saveSafetensors(path, { d }), /disposed/);
  assert.throws(() => io.loadSafetensors(join(dir, 'missing.safetensors')), /ENOENT/);
  assert.equal(readdirSync(dir).filter((f) => f.startsWith('.bad')), []);
});

test.run();
