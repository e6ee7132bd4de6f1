// Tensor creation, metadata, copies and randomness, against hand-computed values and PyTorch (torch 2.13).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tensor, zeros, arange, rand, randn, randint, randperm, manualSeed, getRngState, setRngState, type Tensor, tidy } from '../lib/index.ts';
import { py, maxAbsDiff } from './helpers.ts';

const flat = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

test('creation from arrays and typed arrays keeps values, shape and dtype (hand-computed)', () => tidy(() => {
  const a = tensor([[1, 2, 3], [4, 5, 6]]);
  assert.equal(a.shape, [2, 3]);
  assert.is(a.dtype, 'float32');
  assert.equal(flat(a), [1, 2, 3, 4, 5, 6]);
  const b = tensor(new Int32Array([7, 8, 9, 10]), { shape: [2, 2] });
  assert.is(b.dtype, 'int32');
  assert.equal(flat(b), [7, 8, 9, 10]);
  const c = tensor(new BigInt64Array([1n, -2n]));
  assert.is(c.dtype, 'int64');
  assert.equal(Array.from(c.toArray() as BigInt64Array), [1n, -2n]);
  const d = tensor([1.5, 2.5], { dtype: 'bfloat16' });
  assert.is(d.dtype, 'bfloat16');
  assert.equal(flat(d), [1.5, 2.5]);
}));

test('matmul, add and sum match hand-computed results', () => tidy(() => {
  const a = tensor([1, 2, 3, 4], { shape: [2, 2] });
  const b = tensor([5, 6, 7, 8], { shape: [2, 2] });
  assert.equal(flat(a.matmul(b)), [19, 22, 43, 50]);
  assert.equal(flat(a.add(b)), [6, 8, 10, 12]);
  assert.equal(flat(a.add(b, 2)), [11, 14, 17, 20]);
  assert.is(a.sum().item(), 10);
  assert.equal(flat(a.sum(1)), [3, 7]);
  assert.equal(Array.from(arange(5).toArray() as BigInt64Array), [0n, 1n, 2n, 3n, 4n]);
}));

test('toString prints like PyTorch', () => tidy(() => {
  assert.is(tensor([[1, 2], [3, 4]]).toString(), 'tensor([[1., 2.],\n        [3., 4.]])');
  assert.is(tensor([1, 2, 3], { dtype: 'int64' }).toString(), 'tensor([1, 2, 3])');
}));

test('shape-mismatched matmul is a catchable Error naming both shapes', () => tidy(() => {
  const a = zeros([2, 3]);
  const b = zeros([4, 5]);
  assert.throws(() => a.matmul(b), /2x3 and 4x5/);
}));

test('using a disposed tensor throws', () => tidy(() => {
  const a = zeros([2]);
  a.dispose();
  assert.ok(a.isDisposed);
  assert.throws(() => a.add(1), /disposed/);
  assert.throws(() => a.toArray(), /disposed/);
}));

test('properties: device, ndim, numel, requiresGrad, isContiguous, dtype of each typed array (hand-derived)', () => tidy(() => {
  const t = zeros([2, 3, 4]);
  assert.is(t.device, 'cpu');
  assert.is(t.ndim, 3);
  assert.is(t.numel, 24);
  assert.is(t.requiresGrad, false);
  assert.ok(t.isContiguous);
  assert.not.ok(t.transpose(0, 2).isContiguous);
  assert.is(tensor(new Float64Array(2)).dtype, 'float64');
  assert.is(tensor(new Uint8Array(2)).dtype, 'uint8');
  assert.is(tensor([1, 2], { dtype: 'int32' }).toArray().constructor, Int32Array);
  assert.is(tensor([1, 2], { dtype: 'bool' }).toArray().constructor, Uint8Array);
  assert.is(tensor([1, 2], { dtype: 'float64' }).toArray().constructor, Float64Array);
}));

test('toArray() is a copy: writing to it leaves the tensor unchanged', () => tidy(() => {
  const t = tensor([1, 2, 3]);
  const a = t.toArray() as Float32Array;
  a[0] = 100;
  assert.equal(flat(t), [1, 2, 3]);
  const src = new Float32Array([4, 5]);
  const u = tensor(src);
  src[0] = 9;
  assert.equal(flat(u), [4, 5], 'tensor() copies its input too');
}));

test('random creation: ranges hold, manualSeed and RNG state replay the same draws', () => tidy(() => {
  manualSeed(42);
  const a = flat(rand([1000]));
  assert.ok(a.every((v) => v >= 0 && v < 1));
  const ints = flat(randint(3, 7, [1000]));
  assert.ok(ints.every((v) => Number.isInteger(v) && v >= 3 && v < 7));
  assert.equal([...flat(randperm(50))].sort((x, y) => x - y), [...Array(50).keys()]);
  manualSeed(42);
  assert.equal(flat(rand([1000])), a);
  const state = getRngState();
  const n1 = flat(randn([5]));
  setRngState(state);
  assert.equal(flat(randn([5])), n1);
  const m = flat(randn([20000]));
  const mean = m.reduce((x, y) => x + y) / m.length;
  const sd = Math.sqrt(m.reduce((x, y) => x + (y - mean) ** 2, 0) / m.length);
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(sd - 1) < 0.03, `randn mean ${mean} sd ${sd}`);
}));

test('manualSeed gives the same first draws as torch.manual_seed (torch 2.13)', () => tidy(() => {
  manualSeed(7);
  const ours = flat(rand([4]));
  const ref = py<number[]>('import json, torch\ntorch.manual_seed(7)\nprint(json.dumps(torch.rand(4).tolist()))');
  assert.ok(maxAbsDiff(ours, ref) < 1e-7);
}));

test.run();
