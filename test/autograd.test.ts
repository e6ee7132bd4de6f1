// Autograd: gradients of conv2d (groups > 1), batchNorm (training), linear and crossEntropy (label
// smoothing, class weights) against central finite differences in float64; accumulation, the
// gradient argument, detach and the grad modes against hand-computed values.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { F, tensor, ones, noGrad, enableGrad, isGradEnabled, tidy, type Tensor } from '../lib/index.ts';
import { lcg } from './helpers.ts';

const flat = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

const rnd = lcg(5);
const vals = (n: number) => Array.from({ length: n }, () => rnd());

interface Input { v: number[]; shape: number[] }

/** Compares backward()'s gradients with central differences of f at every element of every input. */
function gradcheck(name: string, inputs: Input[], f: (xs: Tensor[]) => Tensor, eps = 1e-6, tol = 1e-6): void {
  const analytic = tidy(() => {
    const xs = inputs.map((i) => tensor(i.v, { shape: i.shape, dtype: 'float64', requiresGrad: true }));
    f(xs).backward();
    return xs.map((x) => flat(x.grad!));
  });
  const value = (vs: number[][]): number => tidy(() => noGrad(() => f(vs.map((v, k) => tensor(v, { shape: inputs[k]!.shape, dtype: 'float64' }))).item()));
  inputs.forEach((inp, k) => {
    for (let j = 0; j < inp.v.length; j++) {
      const plus = inputs.map((i) => [...i.v]);
      const minus = inputs.map((i) => [...i.v]);
      plus[k]![j]! += eps;
      minus[k]![j]! -= eps;
      const numeric = (value(plus) - value(minus)) / (2 * eps);
      const got = analytic[k]![j]!;
      assert.ok(Math.abs(got - numeric) <= tol * Math.max(1, Math.abs(numeric)), `${name}: input ${k}[${j}] analytic ${got} vs numeric ${numeric}`);
    }
  });
}

/** A fixed random projection, so the checked loss has a nontrivial gradient everywhere. */
function project(y: Tensor, seed: number): Tensor {
  const r = lcg(seed);
  const w = tensor(Array.from({ length: y.numel }, () => r()), { shape: y.shape, dtype: 'float64' });
  return y.mul(w).sum();
}

test('conv2d gradients (groups 2, stride 2, padding 1, dilation 2) match finite differences', () => tidy(() => {
  const x = { v: vals(2 * 4 * 5 * 5), shape: [2, 4, 5, 5] };
  const w = { v: vals(4 * 2 * 2 * 2), shape: [4, 2, 2, 2] };
  const b = { v: vals(4), shape: [4] };
  gradcheck('conv2d', [x, w, b], ([X, W, B]) => project(F.conv2d(X!, W!, B, { stride: 2, padding: 1, dilation: 2, groups: 2 }), 1));
}));

test('batchNorm (training, batch statistics) gradients match finite differences', () => tidy(() => {
  const x = { v: vals(3 * 2 * 2 * 2), shape: [3, 2, 2, 2] };
  const w = { v: vals(2), shape: [2] };
  const b = { v: vals(2), shape: [2] };
  gradcheck('batchNorm', [x, w, b], ([X, W, B]) => project(F.batchNorm(X!, null, null, { weight: W, bias: B, training: true, eps: 1e-3 }), 2));
}));

test('linear gradients match finite differences', () => tidy(() => {
  const x = { v: vals(3 * 4), shape: [3, 4] };
  const w = { v: vals(5 * 4), shape: [5, 4] };
  const b = { v: vals(5), shape: [5] };
  gradcheck('linear', [x, w, b], ([X, W, B]) => project(F.linear(X!, W!, B), 3));
}));

test('crossEntropy gradients (label smoothing 0.1, class weights, ignore index) match finite differences', () => tidy(() => {
  const logits = { v: vals(4 * 5).map((v) => 3 * v), shape: [4, 5] };
  const target = tensor([0, 3, -100, 4], { dtype: 'int64' });
  const weight = tensor([1, 0.5, 2, 1, 0.7], { dtype: 'float64' });
  gradcheck('crossEntropy', [logits], ([L]) => F.crossEntropy(L!, target, { labelSmoothing: 0.1, weight }));
  gradcheck('crossEntropy sum', [logits], ([L]) => F.crossEntropy(L!, target, { labelSmoothing: 0.25, reduction: 'sum' }));
}));

test('gradients accumulate across backward calls, as in PyTorch (hand-computed)', () => tidy(() => {
  const x = tensor([1, 2, 3], { requiresGrad: true });
  assert.is(x.grad, null);
  x.mul(x).sum().backward();
  assert.equal(flat(x.grad!), [2, 4, 6]);
  x.mul(3).sum().backward();
  assert.equal(flat(x.grad!), [5, 7, 9]);
  x.grad = null;
  assert.is(x.grad, null);
}));

test('backward with an explicit gradient weights the vector-Jacobian product (hand-computed)', () => tidy(() => {
  const x = tensor([1, 2], { requiresGrad: true });
  const y = x.mul(x);
  y.backward(tensor([1, 10]));
  assert.equal(flat(x.grad!), [2, 40]);
}));

test('retainGraph allows a second backward through the same graph', () => tidy(() => {
  const x = tensor([2], { requiresGrad: true });
  const y = x.mul(x).sum();
  y.backward(undefined, { retainGraph: true });
  y.backward();
  assert.equal(flat(x.grad!), [8]);
  const z = x.mul(x).sum();
  z.backward();
  assert.throws(() => z.backward(), /backward through the graph a second time/);
}));

test('detach, noGrad and enableGrad control recording', () => tidy(() => {
  const x = ones([2], { requiresGrad: true });
  assert.ok(x.isLeaf && x.requiresGrad);
  assert.ok(x.mul(2).requiresGrad);
  assert.not.ok(x.mul(2).isLeaf);
  assert.not.ok(x.detach().requiresGrad);
  const inside = noGrad(() => {
    assert.not.ok(isGradEnabled());
    const a = x.mul(2);
    const b = enableGrad(() => x.mul(2));
    return [a.requiresGrad, b.requiresGrad];
  });
  assert.equal(inside, [false, true]);
  assert.ok(isGradEnabled());
  assert.throws(() => noGrad(() => { throw new Error('boom'); }), /boom/);
  assert.ok(isGradEnabled(), 'grad mode restored after a throw');
}));

test.run();
