// Tensor creation, metadata, copies and math, against hand-computed values.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tensor, zeros, arange, tidy, memory, Tensor } from '../lib/index.ts';

test('creation from arrays and typed arrays keeps values, shape and dtype (hand-computed)', () => {
  const a = tensor([[1, 2, 3], [4, 5, 6]]);
  assert.equal(a.shape, [2, 3]);
  assert.is(a.dtype, 'float32');
  assert.equal(Array.from(a.toArray()), [1, 2, 3, 4, 5, 6]);
  const b = tensor(new Int32Array([7, 8, 9, 10]), { shape: [2, 2] });
  assert.is(b.dtype, 'int32');
  assert.equal(Array.from(b.toArray()), [7, 8, 9, 10]);
  const c = tensor(new BigInt64Array([1n, -2n]));
  assert.is(c.dtype, 'int64');
  assert.equal(Array.from(c.toArray() as BigInt64Array), [1n, -2n]);
  const d = tensor([1.5, 2.5], { dtype: 'bfloat16' });
  assert.is(d.dtype, 'bfloat16');
  assert.equal(Array.from(d.toArray()), [1.5, 2.5]);
});

test('matmul, add and sum match hand-computed results', () => {
  const a = tensor([1, 2, 3, 4], { shape: [2, 2] });
  const b = tensor([5, 6, 7, 8], { shape: [2, 2] });
  assert.equal(Array.from(a.matmul(b).toArray()), [19, 22, 43, 50]);
  assert.equal(Array.from(a.add(b).toArray()), [6, 8, 10, 12]);
  assert.equal(Array.from(a.add(b, 2).toArray()), [11, 14, 17, 20]);
  assert.is(a.sum().item(), 10);
  assert.equal(Array.from(a.sum(1).toArray()), [3, 7]);
  assert.equal(Array.from(arange(5).toArray() as BigInt64Array), [0n, 1n, 2n, 3n, 4n]);
});

test('toString prints like PyTorch', () => {
  assert.is(tensor([[1, 2], [3, 4]]).toString(), 'tensor([[1., 2.],\n        [3., 4.]])');
  assert.is(tensor([1, 2, 3], { dtype: 'int64' }).toString(), 'tensor([1, 2, 3])');
});

test('shape-mismatched matmul is a catchable Error naming both shapes', () => {
  const a = zeros([2, 3]);
  const b = zeros([4, 5]);
  assert.throws(() => a.matmul(b), /2x3 and 4x5/);
});

test('using a disposed tensor throws', () => {
  const a = zeros([2]);
  a.dispose();
  assert.ok(a.isDisposed);
  assert.throws(() => a.add(1), /disposed/);
  assert.throws(() => a.toArray(), /disposed/);
});

test('100,000 small ops inside tidy leave memory().tensors at its baseline', () => {
  const x = zeros([1]);
  const before = memory().tensors;
  tidy(() => {
    for (let i = 0; i < 100_000; i++) x.add(1).mul(2);
  });
  assert.is(memory().tensors, before);
  const kept = tidy(() => x.add(3));
  assert.ok(kept instanceof Tensor);
  assert.is(memory().tensors, before + 1);
  kept.dispose();
});

test.run();
