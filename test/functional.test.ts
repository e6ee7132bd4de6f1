// F (torch.nn.functional): conv2d against a naive JS loop; every other function, and batchNorm's
// running-stat update, against PyTorch (the .venv's torch 2.13) on the same float64 inputs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { F, tensor, zeros, ones, tidy, manualSeed, type Tensor } from '../lib/index.ts';
import { lcg, py, maxAbsDiff } from './helpers.ts';

const flat = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

const rnd = lcg(11);
const vals = (n: number) => Array.from({ length: n }, () => Math.round(rnd() * 1000) / 500);

/** Direct definition of a 2-D convolution (cross-correlation) with stride, padding, dilation, groups. */
function naiveConv2d(x: number[], xs: number[], w: number[], ws: number[], bias: number[] | null, st: [number, number], pd: [number, number], dl: [number, number], groups: number) {
  const [N, C, H, W] = xs as [number, number, number, number];
  const [O, Cg, KH, KW] = ws as [number, number, number, number];
  const OH = Math.floor((H + 2 * pd[0] - dl[0] * (KH - 1) - 1) / st[0]) + 1;
  const OW = Math.floor((W + 2 * pd[1] - dl[1] * (KW - 1) - 1) / st[1]) + 1;
  const Og = O / groups;
  const out = new Array<number>(N * O * OH * OW).fill(0);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let acc = bias ? bias[o]! : 0;
          for (let c = 0; c < Cg; c++)
            for (let kh = 0; kh < KH; kh++)
              for (let kw = 0; kw < KW; kw++) {
                const ih = oh * st[0] - pd[0] + kh * dl[0];
                const iw = ow * st[1] - pd[1] + kw * dl[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += x[((n * C + g * Cg + c) * H + ih) * W + iw]! * w[((o * Cg + c) * KH + kh) * KW + kw]!;
              }
          out[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
    }
  return { out, shape: [N, O, OH, OW] };
}

test('conv2d (grouped, strided, padded, dilated, with bias) equals a naive JS loop', () => tidy(() => {
  const configs: { xs: number[]; ws: number[]; st: [number, number]; pd: [number, number]; dl: [number, number]; groups: number; bias: boolean }[] = [
    { xs: [2, 4, 7, 6], ws: [6, 2, 3, 3], st: [2, 1], pd: [1, 2], dl: [1, 2], groups: 2, bias: true },
    { xs: [1, 6, 5, 5], ws: [6, 1, 3, 3], st: [1, 1], pd: [1, 1], dl: [1, 1], groups: 6, bias: false },
    { xs: [1, 3, 8, 8], ws: [4, 3, 2, 3], st: [3, 2], pd: [0, 1], dl: [2, 1], groups: 1, bias: true },
  ];
  for (const c of configs) {
    const xv = vals(c.xs.reduce((a, b) => a * b));
    const wv = vals(c.ws.reduce((a, b) => a * b));
    const bv = c.bias ? vals(c.ws[0]!) : null;
    const ref = naiveConv2d(xv, c.xs, wv, c.ws, bv, c.st, c.pd, c.dl, c.groups);
    const y = tidy(() => {
      const x = tensor(xv, { shape: c.xs, dtype: 'float64' });
      const w = tensor(wv, { shape: c.ws, dtype: 'float64' });
      const b = bv ? tensor(bv, { dtype: 'float64' }) : null;
      return F.conv2d(x, w, b, { stride: c.st, padding: c.pd, dilation: c.dl, groups: c.groups });
    });
    assert.equal(y.shape, ref.shape);
    assert.ok(maxAbsDiff(flat(y), ref.out) < 1e-12, `conv2d ${JSON.stringify(c)}`);
  }
}));

test('pooling, linear, softmax, losses, pad and resize equal PyTorch 2.13', () => tidy(() => {
  const x = { shape: [2, 3, 6, 5], v: vals(180) };
  const lg = { shape: [4, 5], v: vals(20) };
  const W = { shape: [3, 5], v: vals(15) };
  const bb = { shape: [3], v: vals(3) };
  const tgt = [1, 4, 0, 2];
  const cw = [0.5, 1, 2, 1, 0.25];
  const X = tensor(x.v, { shape: x.shape, dtype: 'float64' });
  const L = tensor(lg.v, { shape: lg.shape, dtype: 'float64' });
  const Wt = tensor(W.v, { shape: W.shape, dtype: 'float64' });
  const B = tensor(bb.v, { dtype: 'float64' });
  const T = tensor(tgt, { dtype: 'int64' });
  const Tign = tensor([1, -100, 0, 2], { dtype: 'int64' });
  const CW = tensor(cw, { dtype: 'float64' });
  const cases: [string, () => Tensor, string][] = [
    ['maxPool2d 3 s2 p1', () => F.maxPool2d(X, 3, { stride: 2, padding: 1 }), 'F.max_pool2d(X, 3, 2, 1)'],
    ['maxPool2d ceil dilation', () => F.maxPool2d(X, 2, { stride: 2, dilation: 2, ceilMode: true }), 'F.max_pool2d(X, 2, 2, 0, 2, ceil_mode=True)'],
    ['avgPool2d 2', () => F.avgPool2d(X, 2), 'F.avg_pool2d(X, 2)'],
    ['avgPool2d pad no-count', () => F.avgPool2d(X, 3, { stride: 2, padding: 1, countIncludePad: false }), 'F.avg_pool2d(X, 3, 2, 1, count_include_pad=False)'],
    ['adaptiveAvgPool2d 1', () => F.adaptiveAvgPool2d(X, 1), 'F.adaptive_avg_pool2d(X, 1)'],
    ['adaptiveAvgPool2d 4x3', () => F.adaptiveAvgPool2d(X, [4, 3]), 'F.adaptive_avg_pool2d(X, (4, 3))'],
    ['linear', () => F.linear(L, Wt, B), 'F.linear(L, Wt, B)'],
    ['linear no bias', () => F.linear(L, Wt), 'F.linear(L, Wt)'],
    ['relu', () => F.relu(L), 'F.relu(L)'],
    ['softmax', () => F.softmax(L, 1), 'F.softmax(L, 1)'],
    ['logSoftmax', () => F.logSoftmax(L, 0), 'F.log_softmax(L, 0)'],
    ['crossEntropy', () => F.crossEntropy(L, T), 'F.cross_entropy(L, T)'],
    ['crossEntropy smoothing', () => F.crossEntropy(L, T, { labelSmoothing: 0.1 }), 'F.cross_entropy(L, T, label_smoothing=0.1)'],
    ['crossEntropy weight sum', () => F.crossEntropy(L, T, { weight: CW, reduction: 'sum' }), "F.cross_entropy(L, T, weight=CW, reduction='sum')"],
    ['crossEntropy none ignore', () => F.crossEntropy(L, Tign, { reduction: 'none' }), "F.cross_entropy(L, Tign, reduction='none')"],
    ['crossEntropy ignore mean smoothing', () => F.crossEntropy(L, Tign, { labelSmoothing: 0.2 }), 'F.cross_entropy(L, Tign, label_smoothing=0.2)'],
    ['crossEntropy probabilities', () => F.crossEntropy(L, F.softmax(L.mul(0.3), 1)), 'F.cross_entropy(L, F.softmax(L * 0.3, 1))'],
    ['nllLoss', () => F.nllLoss(F.logSoftmax(L, 1), T), 'F.nll_loss(F.log_softmax(L, 1), T)'],
    ['nllLoss weight', () => F.nllLoss(F.logSoftmax(L, 1), T, { weight: CW }), 'F.nll_loss(F.log_softmax(L, 1), T, weight=CW)'],
    ['pad', () => F.pad(X, [1, 2, 0, 1], -1), 'F.pad(X, (1, 2, 0, 1), value=-1)'],
    ['pad channels (option A)', () => F.pad(X, [0, 0, 0, 0, 2, 2]), 'F.pad(X, (0, 0, 0, 0, 2, 2))'],
    ['dropout eval', () => F.dropout(X, 0.5, false), 'F.dropout(X, 0.5, False)'],
    ['bilinear', () => F.interpolateBilinear(X, [9, 4], { antialias: false }), "F.interpolate(X, size=(9, 4), mode='bilinear', align_corners=False)"],
    ['bilinear antialias', () => F.interpolateBilinear(X, [3, 2]), "F.interpolate(X, size=(3, 2), mode='bilinear', align_corners=False, antialias=True)"],
    ['batchNorm eval', () => F.batchNorm(X, B, B.abs().add(1), { weight: B.mul(2), bias: B, eps: 1e-3 }), 'F.batch_norm(X, B, B.abs() + 1, B * 2, B, False, 0.1, 1e-3)'],
  ];
  const ours = cases.map(([, f]) => tidy(() => flat(f())));
  const ref = py<number[][]>(`import json, torch
import torch.nn.functional as F
D = lambda d: torch.tensor(d['v'], dtype=torch.float64).reshape(d['shape'])
X, L, Wt, B = D(${JSON.stringify(x)}), D(${JSON.stringify(lg)}), D(${JSON.stringify(W)}), D(${JSON.stringify(bb)})
T, Tign, CW = torch.tensor(${JSON.stringify(tgt)}), torch.tensor([1, -100, 0, 2]), torch.tensor(${JSON.stringify(cw)}, dtype=torch.float64)
exprs = json.loads(${JSON.stringify(JSON.stringify(cases.map(([, , e]) => e)))})
print(json.dumps([eval(e).reshape(-1).tolist() for e in exprs]))`);
  const bad: string[] = [];
  cases.forEach(([name], i) => {
    const d = ours[i]!.length === ref[i]!.length ? maxAbsDiff(ours[i]!, ref[i]!) : Infinity;
    if (!(d < 1e-10)) bad.push(`${name}: ${d}`);
  });
  assert.equal(bad, []);
}));

test('batchNorm in training normalises by batch statistics and updates running stats as PyTorch', () => tidy(() => {
  const x = { shape: [4, 3, 2, 2], v: vals(48) };
  const w = [1.5, -0.5, 2];
  const b = [0.1, 0.2, -0.3];
  const rm = zeros([3], { dtype: 'float64' });
  const rv = ones([3], { dtype: 'float64' });
  const X = tensor(x.v, { shape: x.shape, dtype: 'float64' });
  const outs: number[][] = [];
  for (let step = 0; step < 2; step++) {
    outs.push(tidy(() => flat(F.batchNorm(X.mul(step + 1), rm, rv, { weight: tensor(w, { dtype: 'float64' }), bias: tensor(b, { dtype: 'float64' }), training: true, momentum: 0.3, eps: 1e-4 }))));
  }
  const ref = py<number[][]>(`import json, torch
import torch.nn.functional as F
d = ${JSON.stringify(x)}
X = torch.tensor(d['v'], dtype=torch.float64).reshape(d['shape'])
rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
w, b = torch.tensor(${JSON.stringify(w)}, dtype=torch.float64), torch.tensor(${JSON.stringify(b)}, dtype=torch.float64)
outs = [F.batch_norm(X * (s + 1), rm, rv, w, b, True, 0.3, 1e-4).reshape(-1).tolist() for s in range(2)]
print(json.dumps(outs + [rm.tolist(), rv.tolist()]))`);
  assert.ok(maxAbsDiff(outs[0]!, ref[0]!) < 1e-10);
  assert.ok(maxAbsDiff(outs[1]!, ref[1]!) < 1e-10);
  assert.ok(maxAbsDiff(flat(rm), ref[2]!) < 1e-12, `running mean ${flat(rm)} vs ${ref[2]}`);
  assert.ok(maxAbsDiff(flat(rv), ref[3]!) < 1e-12, `running var (unbiased) ${flat(rv)} vs ${ref[3]}`);
}));

test('dropout in training zeroes about p of the elements and scales the rest by 1/(1-p)', () => tidy(() => {
  manualSeed(3);
  const y = F.dropout(ones([10000]), 0.25, true);
  const v = flat(y);
  const zerosFrac = v.filter((e) => e === 0).length / v.length;
  assert.ok(Math.abs(zerosFrac - 0.25) < 0.03, `fraction zeroed ${zerosFrac}`);
  assert.ok(v.every((e) => e === 0 || Math.abs(e - 1 / 0.75) < 1e-6));
}));

test('fused _foreach_ updates equal the per-tensor arithmetic (hand-computed)', async () => {
  const { native } = await import('../lib/native.ts');
  const a = [tensor([1, 2]), tensor([3])];
  const b = [tensor([10, 20]), tensor([30])];
  native.foreachAddList_(a.map((t) => t.h), b.map((t) => t.h), 0.5);
  assert.equal(a.map(flat), [[6, 12], [18]]);
  native.foreachMulScalar_(a.map((t) => t.h), 2);
  assert.equal(a.map(flat), [[12, 24], [36]]);
  native.foreachAddcmul_(a.map((t) => t.h), b.map((t) => t.h), b.map((t) => t.h), 0.01);
  assert.equal(a.map(flat), [[13, 28], [45]]);
  native.foreachZero_(a.map((t) => t.h));
  assert.equal(a.map(flat), [[0, 0], [0]]);
  const norms = native.foreachNorm(b.map((t) => t.h), 2);
  assert.equal(norms.map((h) => Number((native.toArray(h) as Float32Array)[0]!.toFixed(3))), [22.361, 30]);
  norms.forEach((h) => native.dispose(h));
});

test.run();
