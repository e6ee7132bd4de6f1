// bf16 convolutions on CPUs where libtorch has no oneDNN bf16 kernel (AVX2 only): F.conv2d computes them in
// fp32 on bf16-rounded operands (lib/nn/functional.ts). References, from the .venv's torch: the output of
// torch.autocast('cpu', torch.bfloat16) (its bf16 kernel: oneDNN's on AVX-512, the im2col one on AVX2), and the
// exact bf16 convolution: float64 on the bf16-rounded operands (and the bf16-rounded output gradient, as
// autocast's cast back gives it), rounded to bf16, for the output and the gradients of input, weight and bias.
// (PyTorch's own AVX2 bf16 backward is no reference: its im2col kernel accumulates in bf16, 15-25 bf16 steps
// from the exact gradient here.) The fp32 path is forced on with RESNET_TS_BF16_CONV_FP32=1, so the check runs
// on every CPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { autocast, cpu, F, inference, tensor, tidy, type Tensor } from '../lib/index.ts';
import { hasTorchPython, lcg, py } from './helpers.ts';

interface Ref { y: number[]; y64: number[]; gx: number[]; gw: number[]; gb: number[]; y32: number[] }

const uniform = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, lcg(seed));

/** |a - b| in units of one bf16 step at b's magnitude (2^-7 of the largest power of two ≤ |b|), floored at 2^-7 · floor. */
function worstUlps(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number {
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    const mag = Math.max(Math.abs(b[i]!), floor);
    const ulp = 2 ** (Math.floor(Math.log2(mag)) - 7);
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / ulp);
  }
  return worst;
}

const maxAbs = (v: ArrayLike<number>): number => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

for (const groups of [1, 4]) {
  test(`bf16 autocast conv2d (groups ${groups}) in fp32 on rounded operands equals PyTorch's bf16 conv, forward and backward`, () => {
    if (!hasTorchPython) throw new Error('the .venv torch is needed (bash scripts/setup.sh)');
    const [n, c, h, o, k] = [2, 8, 9, 12, 3];
    const xs = uniform(n * c * h * h, 1 + groups);
    const ws = uniform(o * (c / groups) * k * k, 7 + groups).map((v) => v * 0.3);
    const bs = uniform(o, 11).map((v) => v * 0.5);
    const gs = uniform(n * o * h * h, 13);
    const ref = py<Ref>(`
import json, torch
torch.set_num_threads(1)
v = json.loads(${JSON.stringify(JSON.stringify({ xs: Array.from(xs), ws: Array.from(ws), bs: Array.from(bs), gs: Array.from(gs) }))})
x = torch.tensor(v['xs']).reshape(${n}, ${c}, ${h}, ${h}).requires_grad_()
w = torch.tensor(v['ws']).reshape(${o}, ${c / groups}, ${k}, ${k}).requires_grad_()
b = torch.tensor(v['bs']).requires_grad_()
g = torch.tensor(v['gs']).reshape(${n}, ${o}, ${h}, ${h})
with torch.autocast('cpu', dtype=torch.bfloat16):
    y = torch.nn.functional.conv2d(x, w, b, padding=1, groups=${groups})
assert y.dtype == torch.bfloat16
r = lambda t: t.detach().bfloat16().double().requires_grad_()
x64, w64, b64 = r(x), r(w), r(b)
y64 = torch.nn.functional.conv2d(x64, w64, b64, padding=1, groups=${groups})
(y64 * g.bfloat16().double()).sum().backward()
y32 = torch.nn.functional.conv2d(x, w, b, padding=1, groups=${groups})
e = lambda t: t.detach().bfloat16().float().flatten().tolist()
print(json.dumps({'y': y.float().flatten().tolist(), 'y64': e(y64), 'gx': e(x64.grad), 'gw': e(w64.grad), 'gb': e(b64.grad), 'y32': y32.detach().flatten().tolist()}))
`);
    const before = process.env.RESNET_TS_BF16_CONV_FP32;
    process.env.RESNET_TS_BF16_CONV_FP32 = '1';
    try {
      tidy(() => {
        const x = tensor(xs, { shape: [n, c, h, h] }).requiresGrad_();
        const w = tensor(ws, { shape: [o, c / groups, k, k] }).requiresGrad_();
        const b = tensor(bs, { shape: [o] }).requiresGrad_();
        const y = autocast(() => F.conv2d(x, w, b, { padding: 1, groups }), { device: 'cpu', dtype: 'bfloat16' });
        assert.is(y.dtype, 'bfloat16');
        y.to('float32').mul(tensor(gs, { shape: [n, o, h, h] })).sum().backward();
        const got = (t: Tensor): Float32Array => t.to('float32').toArray() as Float32Array;
        const yv = got(y);
        const scale = maxAbs(ref.y);
        // Accumulation order differs (fp32 either way), so a sum near a rounding boundary may land one bf16 step away.
        for (const [name, r] of [['PyTorch\'s bf16 autocast', ref.y], ['the exact bf16 convolution', ref.y64]] as const) {
          const ulps = worstUlps(yv, r, scale / 64);
          assert.ok(ulps <= 1, `output within one bf16 step of ${name} (worst ${ulps.toFixed(2)})`);
          const same = yv.filter((v, i) => v === r[i]).length / yv.length;
          assert.ok(same >= 0.9, `${(100 * same).toFixed(1)} % of outputs bit-equal to ${name}`);
        }
        // The references are bf16 results: the fp32 convolution is off by more than a bf16 step somewhere.
        assert.ok(worstUlps(ref.y32, ref.y64, scale / 64) > 0.3, 'the reference shows bf16 rounding');
        for (const [name, t, r] of [['input', x, ref.gx], ['weight', w, ref.gw], ['bias', b, ref.gb]] as const) {
          const gv = t.grad!.toArray() as Float32Array;
          const u = worstUlps(gv, r, maxAbs(r) / 64);
          assert.ok(u <= 1, `grad of ${name} within one bf16 step of the exact bf16 gradient (worst ${u.toFixed(2)})`);
        }
      });
    } finally {
      if (before === undefined) delete process.env.RESNET_TS_BF16_CONV_FP32;
      else process.env.RESNET_TS_BF16_CONV_FP32 = before;
    }
  });
}

test('cpu.onednnBf16: AVX-512 BW/VL/DQ or Arm bf16 (libtorch\'s oneDNN bf16 check); AVX2 alone is not', () => {
  const avx2 = cpu.parseCpuinfo('model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n', 2);
  const skx = cpu.parseCpuinfo('model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: avx2 avx512f avx512bw avx512vl avx512dq\n', 2);
  const arm = cpu.parseCpuinfo('processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n', 8);
  assert.equal([avx2.onednnBf16, skx.onednnBf16, arm.onednnBf16], [false, true, true]);
});

test('a fused bf16 convolution (inference.optimize) in fp32 on rounded operands: within one bf16 step of the exact one, bias, residual and ReLU included', () => {
  if (!hasTorchPython) throw new Error('the .venv torch is needed (bash scripts/setup.sh)');
  const [n, c, h, o, k] = [2, 8, 5, 8, 3];
  const xs = uniform(n * c * h * h, 21);
  const ws = uniform(o * c * k * k, 22).map((v) => v * 0.2);
  const bs = uniform(o, 23).map((v) => v * 0.5);
  const rs = uniform(n * o * h * h, 24);
  // The exact result: float64 on the bf16-rounded operands, bias, residual, ReLU, then rounded to bf16 once.
  const ref = py<{ plain: number[]; add: number[] }>(`
import json, torch
v = json.loads(${JSON.stringify(JSON.stringify({ xs: Array.from(xs), ws: Array.from(ws), bs: Array.from(bs), rs: Array.from(rs) }))})
r = lambda a, *s: torch.tensor(a).reshape(*s).bfloat16().double()
x, w, b, res = r(v['xs'], ${n}, ${c}, ${h}, ${h}), r(v['ws'], ${o}, ${c}, ${k}, ${k}), r(v['bs'], ${o}), r(v['rs'], ${n}, ${o}, ${h}, ${h})
y = torch.nn.functional.conv2d(x, w, b, padding=1)
e = lambda t: t.bfloat16().float().flatten().tolist()
print(json.dumps({'plain': e(torch.relu(y)), 'add': e(torch.relu(y + res))}))
`);
  const before = process.env.RESNET_TS_BF16_CONV_FP32;
  process.env.RESNET_TS_BF16_CONV_FP32 = '1';
  try {
    tidy(() => {
      const conv = new inference.FusedConv2d({ inChannels: c, outChannels: o, kernelSize: [k, k], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1, relu: true, dtype: 'bfloat16' });
      conv.loadStateDict({ weight: tensor(ws, { shape: [o, c, k, k] }), bias: tensor(bs, { shape: [o] }) });
      const x = tensor(xs, { shape: [n, c, h, h] }).to('bfloat16').contiguous('channelsLast');
      const res = tensor(rs, { shape: [n, o, h, h] }).to('bfloat16').contiguous('channelsLast');
      for (const [name, y, r] of [['conv+bias+ReLU', conv.forward(x), ref.plain], ['conv+bias+residual+ReLU', conv.forwardAdd(x, res, true), ref.add]] as const) {
        assert.is(y.dtype, 'bfloat16');
        const yv = y.to('float32').contiguous().toArray() as Float32Array;
        const ulps = worstUlps(yv, r, maxAbs(r) / 64);
        assert.ok(ulps <= 1, `${name}: within one bf16 step of the exact result (worst ${ulps.toFixed(2)})`);
        const same = yv.filter((v, i) => v === r[i]).length / yv.length;
        assert.ok(same >= 0.9, `${name}: ${(100 * same).toFixed(1)} % bit-equal to the exact result`);
      }
      conv.dispose();
    });
  } finally {
    if (before === undefined) delete process.env.RESNET_TS_BF16_CONV_FP32;
    else process.env.RESNET_TS_BF16_CONV_FP32 = before;
  }
});

test.run();
