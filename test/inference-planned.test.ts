// Convolutions planned once on the system oneDNN (cpp/dnnl_conv.cc): against aten's own convolution (stride,
// padding, dilation, groups, bias, residual, ReLU), that a plan is made once per input shape and shares the
// reordered weight, that the fused network uses them, and that misuse is a clear error; oneDNN's max pooling against
// aten's.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { F, inference, memory, models, noGrad, randn, tidy, type Tensor } from '../lib/index.ts';
import { FusedConv2d, FusedResidual } from '../lib/inference/fused.ts';
import { cpuInfo, parseCpuinfo } from '../lib/cpu.ts';
import { MAX_PLANS, keepsPlan, libtorchFaster, onednn, planCacheSize, planned, plannedKernels, plannedMaxPool, probeKernels, subsampleChoices } from '../lib/inference/onednn.ts';
import { native } from '../lib/native.ts';
import { Tensor as T } from '../lib/tensor.ts';

const on = planned.available;
// Whether 3x3 convolutions (groups 1) are planned here: not where oneDNN 2.6 has only its jit:avx2 kernel for them
// (CPUs without AVX-512), which libtorch's oneDNN outruns (libtorchFaster). The kernel is 2.6's own pick for one.
const threeByThreePlanned = !on || tidy(() => {
  const w = randn([16, 16, 3, 3]);
  const plan = new T(native.dnnlConvPlan(w.h, null, [1], [1], [1], 1, [1, 16, 8, 8], false, false, null, false, false));
  const impl = native.dnnlPlanImpl(plan.h);
  plan.dispose();
  return !libtorchFaster(impl, { kernelSize: [3, 3], groups: 1 });
});
if (!on) console.log(`  (planned convolutions not built here: dnnlAvailable() = ${native.dnnlAvailable()}; the checks below are skipped)`);

function relErr(a: Tensor, b: Tensor): number {
  return tidy(() => a.sub(b).abs().max().item() / Math.max(b.abs().max().item(), 1e-12));
}

test('a planned convolution equals aten conv2d (+ residual, + ReLU) for strides, padding, dilation, groups', () => {
  if (!on) return;
  const cases = [
    { c: 16, k: 32, hw: 15, ks: 3, stride: 1, pad: 1, dil: 1, groups: 1 },
    { c: 16, k: 32, hw: 15, ks: 3, stride: 2, pad: 1, dil: 1, groups: 4 },
    { c: 8, k: 8, hw: 12, ks: 3, stride: 1, pad: 2, dil: 2, groups: 1 },
    { c: 32, k: 64, hw: 7, ks: 1, stride: 2, pad: 0, dil: 1, groups: 1 },
    { c: 3, k: 16, hw: 33, ks: 7, stride: 2, pad: 3, dil: 1, groups: 1 },
  ];
  for (const s of cases) {
    for (const [add, relu] of [[false, false], [false, true], [true, true], [true, false]] as const) {
      tidy(() => {
        const x = randn([2, s.c, s.hw, s.hw]).contiguous('channelsLast');
        const w = randn([s.k, s.c / s.groups, s.ks, s.ks]).mul(0.2);
        const b = randn([s.k]);
        let ref = F.conv2d(x, w, b, { stride: [s.stride, s.stride], padding: [s.pad, s.pad], dilation: [s.dil, s.dil], groups: s.groups });
        const other = add ? randn(ref.shape) : null;
        if (other) ref = ref.add(other);
        if (relu) ref = ref.relu();
        let plan: Tensor;
        try {
          plan = new T(native.dnnlConvPlan(w.h, b.h, [s.pad], [s.stride], [s.dil], s.groups, x.shape, relu, add, null));
        } catch (e) {
          // Grouped convolutions of few channels per group have only gemm on AVX2 (see the next test): refused.
          if (s.groups > 1 && /only its reference or gemm kernel \([^)]*gemm/.test((e as Error).message)) return;
          throw e;
        }
        const y = new T(native.dnnlConvRun(plan.h, x.h, other?.h ?? null));
        assert.equal(y.shape, ref.shape);
        assert.ok(relErr(y, ref) < 1e-5, `${JSON.stringify(s)} add=${add} relu=${relu}: ${relErr(y, ref)}`);
        assert.ok(!native.dnnlPlanImpl(plan.h).startsWith('ref'), native.dnnlPlanImpl(plan.h));
        // An NCHW input gives the same result (made channels-last inside).
        assert.ok(relErr(new T(native.dnnlConvRun(plan.h, x.contiguous().h, other?.h ?? null)), ref) < 1e-5);
      });
    }
  }
});

test('a grouped convolution of 4 channels per group (resnext50_32x4d layer1) is planned on a JIT kernel or refused, never gemm', () => {
  if (!on) return;
  tidy(() => {
    const x = randn([1, 128, 14, 14]).contiguous('channelsLast');
    const w = randn([128, 4, 3, 3]).mul(0.2);
    const b = randn([128]);
    const ref = F.conv2d(x, w, b, { stride: [1, 1], padding: [1, 1], groups: 32 }).relu();
    let plan: Tensor | null = null;
    try {
      plan = new T(native.dnnlConvPlan(w.h, b.h, [1], [1], [1], 32, x.shape, true, false, null));
    } catch (e) {
      // oneDNN 2.6 on AVX2 has only gemm:jit here (slow, and its nhwc variant fails to execute): refused.
      assert.match((e as Error).message, /only its reference or gemm kernel \([^)]*gemm/);
      console.log(`  (grouped 4-channel convolution refused on this CPU: ${(e as Error).message.split('\n')[0]})`);
    }
    if (plan) {
      const impl = native.dnnlPlanImpl(plan.h);
      assert.ok(!impl.startsWith('ref') && !impl.includes('gemm'), impl);
      assert.ok(relErr(new T(native.dnnlConvRun(plan.h, x.h, null)), ref) < 1e-5);
    }
  });
});

test('a winograd plan (3x3, stride 1) equals aten conv2d to 1e-5 relative; where oneDNN has none it is direct', () => {
  if (!on) return;
  const avx512 = cpuInfo().avx512;
  for (const [n, c, k, hw, pad] of [[1, 64, 64, 16, 1], [2, 128, 64, 9, 1], [3, 32, 48, 7, 0], [16, 64, 64, 14, 1]] as const) {
    for (const relu of [true, false]) {
      tidy(() => {
        const x = randn([n, c, hw, hw]).contiguous('channelsLast');
        const w = randn([k, c, 3, 3]).mul(0.1);
        const b = randn([k]);
        let ref = F.conv2d(x, w, b, { padding: [pad, pad] });
        if (relu) ref = ref.relu();
        const plan = new T(native.dnnlConvPlan(w.h, b.h, [pad], [1], [1], 1, x.shape, relu, false, null, false, true));
        const impl = native.dnnlPlanImpl(plan.h);
        const y = new T(native.dnnlConvRun(plan.h, x.h, null));
        assert.equal(y.shape, ref.shape);
        assert.ok(y.isChannelsLast, 'the output is channels-last like every other plan\'s');
        assert.ok(relErr(y, ref) < 1e-5, `[${n}, ${c}, ${hw}, ${hw}] -> ${k}, pad ${pad}, ${impl}: ${relErr(y, ref)}`);
        if (avx512 && pad === 1) assert.match(impl, /wino/, `oneDNN 2.6 has winograd for AVX-512; chose ${impl}`);
      });
    }
  }
  tidy(() => {
    const w = randn([8, 8, 3, 3]);
    assert.throws(() => native.dnnlConvPlan(w.h, null, [1], [1], [1], 1, [1, 8, 6, 6], false, true, null, false, true), /winograd plan takes no residual/);
  });
});

test('bf16: a planned convolution equals aten conv2d on the same bf16 values (to bf16 rounding), in place too', () => {
  if (!on || !onednn.bf16) return;
  for (const [c, k, hw, ks, stride, add] of [[64, 256, 14, 1, 1, true], [32, 64, 15, 3, 2, false], [16, 32, 9, 3, 1, true]] as const) {
    tidy(() => {
      const x = randn([2, c, hw, hw]).contiguous('channelsLast').to('bfloat16');
      const w = randn([k, c, ks, ks]).mul(0.1).to('bfloat16');
      const b = randn([k]).to('bfloat16');
      const pad = ks >> 1;
      let ref = F.conv2d(x.to('float32'), w.to('float32'), b.to('float32'), { stride: [stride, stride], padding: [pad, pad] });
      const other = add ? randn(ref.shape).contiguous('channelsLast').to('bfloat16') : null;
      if (other) ref = ref.add(other.to('float32'));
      ref = ref.relu();
      const plan = new T(native.dnnlConvPlan(w.h, b.h, [pad], [stride], [1], 1, x.shape, true, add, null, add));
      assert.match(native.dnnlPlanImpl(plan.h), /bf16/, 'a bf16 kernel');
      const y = new T(native.dnnlConvRun(plan.h, x.h, other?.h ?? null));
      assert.is(y.dtype, 'bfloat16');
      assert.ok(relErr(y.to('float32'), ref) < 1e-2, `[2, ${c}, ${hw}, ${hw}] k${ks} s${stride} add=${add}: ${relErr(y.to('float32'), ref)}`);
      if (other) assert.ok(native.equal(other.h, y.h), 'written over the residual');
    });
  }
});

test('on a CPU with AMX-BF16 a bf16 plan is kept only on an AMX kernel; float32 plans and CPUs without AMX keep theirs', () => {
  const cpu = (flags: string) => parseCpuinfo(`model name\t: test CPU\nflags\t\t: fpu avx2 avx512f avx512bw avx512vl avx512dq ${flags}\n`, 2);
  const amx = cpu('avx512_bf16 amx_bf16 amx_tile');
  const noAmx = cpu('avx512_bf16');
  assert.ok(amx.amxBf16 && !noAmx.amxBf16);
  // oneDNN 2.6's kernel names: AMX ones say so (jit_bf16_1x1:avx512_core_amx_bf16, brgconv:avx512_core_amx).
  assert.ok(keepsPlan('bfloat16', 'brgconv:avx512_core_amx', amx));
  assert.not.ok(keepsPlan('bfloat16', 'brgconv:avx512_core_bf16', amx));
  assert.ok(keepsPlan('bfloat16', 'brgconv:avx512_core_bf16', noAmx));
  assert.ok(keepsPlan('float32', 'brgconv:avx512_core', amx));
  if (!on || !onednn.bf16) return;
  tidy(() => {
    // The kernel this CPU's oneDNN names for a real bf16 plan: kept here, and refused on an AMX CPU unless it is AMX's.
    const w = randn([32, 16, 3, 3]).to('bfloat16');
    const plan = new T(native.dnnlConvPlan(w.h, null, [1], [1], [1], 1, [1, 16, 14, 14], false, false, null, false, false));
    const impl = native.dnnlPlanImpl(plan.h);
    assert.ok(keepsPlan('bfloat16', impl), impl);
    assert.is(keepsPlan('bfloat16', impl, amx), /amx/.test(impl), impl);
  });
});

test('probeKernels (what doctor prints) names the kernel a fused convolution of its shape runs, in float32 and bf16', () => {
  if (!on) {
    assert.is(probeKernels(), null);
    return;
  }
  const probe = probeKernels()!;
  noGrad(() => tidy(() => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      if (dtype === 'bfloat16' && !onednn.bf16) {
        assert.is(probe.bfloat16, null);
        continue;
      }
      const conv = new FusedConv2d({ inChannels: 256, outChannels: 64, kernelSize: [1, 1], stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, relu: true, dtype });
      conv.forward(randn([1, 256, 56, 56]).contiguous('channelsLast').to(dtype));
      const used = Object.values(plannedKernels(conv));
      if (dtype === 'float32') assert.equal(used, [probe.float32]);
      else assert.equal(used, probe.bf16Planned ? [probe.bfloat16] : [], `bf16: ${probe.bfloat16}, planned ${probe.bf16Planned}`);
      conv.dispose();
    }
  }));
});

test('a strided 1x1 convolution runs strided or at unit stride on its subsampled input (the faster on its first input); each equals aten conv2d', () => {
  if (!on) return;
  const saved = process.env.RESNET_TS_DNNL_SUBSAMPLE;
  try {
    for (const mode of ['0', '1', 'auto']) {
      for (const s of [{ hw: 15, stride: 2, pad: 0 }, { hw: 16, stride: 3, pad: 0 }, { hw: 15, stride: 2, pad: 1 }]) {
        process.env.RESNET_TS_DNNL_SUBSAMPLE = mode;
        tidy(() => noGrad(() => {
          const w = randn([48, 32, 1, 1]).mul(0.2);
          const b = randn([48]);
          const conv = new FusedConv2d({ inChannels: 32, outChannels: 48, kernelSize: [1, 1], stride: [s.stride, s.stride], padding: [s.pad, s.pad], dilation: [1, 1], groups: 1, relu: true, dtype: 'float32' }, { weight: w, bias: b });
          const x = randn([2, 32, s.hw, s.hw]).contiguous('channelsLast');
          const ref = F.conv2d(x, w, b, { stride: [s.stride, s.stride], padding: [s.pad, s.pad] }).relu();
          for (let i = 0; i < 2; i++) {
            const y = conv.forward(x);
            assert.equal(y.shape, ref.shape);
            assert.ok(relErr(y, ref) < 1e-5, `mode ${mode}, ${JSON.stringify(s)}, call ${i}: ${relErr(y, ref)}`);
          }
          const kernels = Object.values(plannedKernels(conv));
          // With padding, oneDNN 2.6 has only its gemm kernel for a 1x1 on AVX2: refused, libtorch's runs it (checked above).
          if (planCacheSize(conv).refused) {
            assert.ok(s.pad > 0 && !cpuInfo().avx512, `refused: ${JSON.stringify(s)}`);
            conv.dispose();
            return;
          }
          assert.is(kernels.length, 1, 'one plan kept (the other one freed)');
          const sub = kernels[0]!.endsWith(' on the subsampled input');
          // Padding makes a 1x1 convolution read zeros a subsampled input lacks: never subsampled.
          if (s.pad > 0 || mode === '0') assert.not.ok(sub, kernels[0]);
          else if (mode === '1') assert.ok(sub, kernels[0]);
          conv.dispose();
        }));
      }
    }
  } finally {
    if (saved === undefined) delete process.env.RESNET_TS_DNNL_SUBSAMPLE;
    else process.env.RESNET_TS_DNNL_SUBSAMPLE = saved;
  }
});

test('a strided 1x1 convolution times its two plans once per image size: another batch size takes the choice untimed', () => {
  if (!on) return;
  const saved = process.env.RESNET_TS_DNNL_SUBSAMPLE;
  const now = performance.now;
  delete process.env.RESNET_TS_DNNL_SUBSAMPLE;
  let clock = 0;
  performance.now = () => (clock++, now.call(performance));
  try {
    tidy(() => noGrad(() => {
      const w = randn([64, 32, 1, 1]).mul(0.2);
      const b = randn([64]);
      const conv = new FusedConv2d({ inChannels: 32, outChannels: 64, kernelSize: [1, 1], stride: [2, 2], padding: [0, 0], dilation: [1, 1], groups: 1, relu: true, dtype: 'float32' }, { weight: w, bias: b });
      const run = (n: number, hw: number): number => {
        const x = randn([n, 32, hw, hw]).contiguous('channelsLast');
        const ref = F.conv2d(x, w, b, { stride: [2, 2] }).relu();
        clock = 0;
        assert.ok(relErr(conv.forward(x), ref) < 1e-5, `batch ${n}, ${hw}x${hw}`);
        return clock;
      };
      assert.is(run(1, 16), 8, 'the first input times both plans twice (two clock reads a run)');
      const choice = subsampleChoices(conv);
      assert.equal(Object.keys(choice), ['32,16,16r']);
      for (const n of [2, 5]) assert.is(run(n, 16), 0, `batch ${n} of the same image size is not timed`);
      const kernels = plannedKernels(conv);
      assert.is(Object.keys(kernels).length, 3);
      for (const k of Object.values(kernels)) assert.is(k.endsWith(' on the subsampled input'), choice['32,16,16r'] === 'subsampled', k);
      assert.is(run(2, 20), 8, 'a new image size is timed');
      assert.equal(Object.keys(subsampleChoices(conv)).sort(), ['32,16,16r', '32,20,20r']);
      conv.dispose();
    }));
  } finally {
    performance.now = now;
    if (saved === undefined) delete process.env.RESNET_TS_DNNL_SUBSAMPLE;
    else process.env.RESNET_TS_DNNL_SUBSAMPLE = saved;
  }
});

test('an inPlace plan accumulates into the residual (oneDNN sum post-op) and returns it; an NCHW residual is left alone', () => {
  if (!on) return;
  for (const s of [{ c: 64, k: 256, hw: 14, ks: 1, pad: 0 }, { c: 16, k: 16, hw: 9, ks: 3, pad: 1 }]) {
    for (const relu of [true, false]) {
      tidy(() => {
        const x = randn([2, s.c, s.hw, s.hw]).contiguous('channelsLast');
        const w = randn([s.k, s.c, s.ks, s.ks]).mul(0.1);
        const b = randn([s.k]);
        const other = randn([2, s.k, s.hw, s.hw]).contiguous('channelsLast');
        let ref = F.conv2d(x, w, b, { padding: [s.pad, s.pad] }).add(other);
        if (relu) ref = ref.relu();
        const plan = new T(native.dnnlConvPlan(w.h, b.h, [s.pad], [1], [1], 1, x.shape, relu, true, null, true));
        const nchw = other.contiguous();
        const kept = nchw.clone();
        const y1 = new T(native.dnnlConvRun(plan.h, x.h, nchw.h));
        assert.ok(relErr(y1, ref) < 1e-5, `NCHW residual: ${relErr(y1, ref)}`);
        assert.ok(native.equal(nchw.h, kept.h), 'an NCHW residual is copied, not written over');
        const y = new T(native.dnnlConvRun(plan.h, x.h, other.h));
        assert.ok(relErr(y, ref) < 1e-5, `${JSON.stringify(s)} relu=${relu}: ${relErr(y, ref)}`);
        assert.ok(native.equal(other.h, y.h), 'the channels-last residual now holds the output');
      });
    }
  }
  tidy(() => {
    const w = randn([4, 4, 1, 1]);
    const x = randn([1, 4, 5, 5]).contiguous('channelsLast');
    assert.throws(() => native.dnnlConvPlan(w.h, null, [0], [1], [1], 1, x.shape, false, false, null, true), /inPlace needs add/);
    const plan = new T(native.dnnlConvPlan(w.h, null, [0], [1], [1], 1, x.shape, false, true, null, true));
    assert.throws(() => native.dnnlConvRun(plan.h, x.h, x.h), /must not share memory with the input/);
  });
});

test('a fused unit leaves its input alone; consuming (as FusedNet runs it) it may write over it, with the same result', () => {
  // A basic block ends in a 3x3 convolution (planned where 2.6 has more than jit:avx2 for it), a bottleneck in a 1x1 (planned everywhere).
  for (const [name, channels, lastPlanned] of [['resnet18', 64, threeByThreePlanned], ['resnet50', 256, true]] as const) {
    const m = models.create(name).eval();
    const net = inference.optimize(m);
    const unit = net.child('layer1').child<FusedResidual>('1');
    tidy(() => noGrad(() => {
      const x = randn([2, channels, 16, 16]).contiguous('channelsLast');
      const copy = x.clone();
      const y = unit.forward(x);
      assert.ok(native.equal(x.h, copy.h), `${name}: forward() does not touch its input`);
      const y2 = unit.forwardConsuming(copy);
      const e = relErr(y2, y);
      // Two kernels (sum post-op vs a residual input) sum in different orders: ~1e-6 apart at most seen.
      assert.ok(e < 1e-5, `${name}: consuming and plain forward agree (relative ${e})`);
      // Planned, the identity shortcut's addition is accumulated into the input itself.
      if (on && lastPlanned) assert.ok(native.equal(copy.h, y2.h), `${name}: consuming forward wrote the output over its input`);
    }));
    net.dispose();
    m.dispose();
  }
});

test('the fused resnet18 plans each convolution once per input shape; plans of one weight share its reordered copy', () => {
  if (!on) return;
  const base = memory().tensors;
  const m = models.resnet18().eval();
  const net = inference.optimize(m);
  const convs = [...net.modules()].filter((c): c is FusedConv2d => c instanceof FusedConv2d);
  assert.is(convs.length, 20);
  const run = (b: number): void => tidy(() => void noGrad(() => net.forward(randn([b, 3, 64, 64]))));
  const before = memory().tensors;
  run(1);
  // Planned: every convolution, or, where 3x3 ones are left to libtorch's oneDNN, the 7x7 stem and the three 1x1
  // projections; each of the others holds its weight packed for libtorch (packed copy and layout: two handles).
  const planned = threeByThreePlanned ? 20 : 4;
  assert.equal(convs.filter((c) => !planCacheSize(c).refused).length, planned);
  const plans = (): number => convs.reduce((n, c) => n + planCacheSize(c).plans, 0);
  assert.is(plans(), planned, 'one plan per planned convolution at batch 1');
  // The fc runs as one more planned 1x1 convolution, over views of fc.weight and fc.bias (two handles).
  const one = memory().tensors - before;
  if (threeByThreePlanned) assert.is(one, 20 + 2 + 1, 'one plan per convolution and the fc at batch 1');
  run(1);
  assert.is(memory().tensors - before, one, 'a repeated shape reuses its plan');
  run(3);
  assert.is(plans(), 2 * planned, 'a new batch size makes one more plan per planned convolution');
  if (threeByThreePlanned) assert.is(memory().tensors - before, 23 + 21, 'a new batch size makes one more plan per convolution and the fc');
  const kernels = plannedKernels(convs[threeByThreePlanned ? 1 : 0]!);
  assert.equal(Object.keys(kernels).sort(), threeByThreePlanned ? ['1,64,16,16r', '3,64,16,16r'] : ['1,3,64,64r', '3,3,64,64r']);
  const bytes = memory().bytes;
  run(3);
  assert.is(memory().bytes, bytes, 'running again allocates nothing that stays');
  net.dispose();
  m.dispose();
  assert.is(memory().tensors, base, 'dispose frees every plan');
});

test('plans of one weight share its reordered copy with any plan of the same layout (direct and winograd ones apart)', () => {
  if (!on) return;
  // 3x3, stride 1, no residual: direct below 196 output pixels (batch 1-3 at 7x7), winograd from there where oneDNN has
  // it; where 3x3 convolutions are not planned (AVX2), a 1x1 shows the sharing.
  const [k, pad] = threeByThreePlanned ? [3, 1] : [1, 0];
  const conv = new FusedConv2d({ inChannels: 32, outChannels: 32, kernelSize: [k, k], stride: [1, 1], padding: [pad, pad], dilation: [1, 1], groups: 1, relu: true, dtype: 'float32' });
  conv.weight.copy_(randn([32, 32, k, k]).mul(0.1));
  conv.bias.copy_(randn([32]));
  for (const n of [1, 4, 5, 2, 6]) {
    tidy(() => {
      const x = randn([n, 32, 7, 7]).contiguous('channelsLast');
      const ref = F.conv2d(x, conv.weight, conv.bias, { padding: [pad, pad] }).relu();
      assert.ok(relErr(conv.forward(x), ref) < 1e-5, `batch ${n}`);
    });
  }
  const kernels = Object.values(plannedKernels(conv)).join(', ');
  const size = planCacheSize(conv);
  assert.is(size.plans, 5);
  assert.is(size.weights, size.layouts, `one weight copy per layout oneDNN asked for (${kernels})`);
  // Where oneDNN has winograd here (AVX-512), batch 5 and 6 want batch 4's layout, not batch 1's: shared with a later plan.
  if (/wino/.test(kernels)) assert.ok(size.layouts >= 2 && size.layouts < 5, JSON.stringify(size));
  conv.dispose();
});

test(`past ${MAX_PLANS} input shapes a convolution drops its least recently used plan, not its oldest`, () => {
  if (!on) return;
  const conv = new FusedConv2d({ inChannels: 8, outChannels: 8, kernelSize: [1, 1], stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, relu: false, dtype: 'float32' });
  conv.weight.copy_(randn([8, 8, 1, 1]));
  conv.bias.copy_(randn([8]));
  const run = (n: number): void => tidy(() => {
    const x = randn([n, 8, 3, 3]).contiguous('channelsLast');
    assert.ok(relErr(conv.forward(x), F.conv2d(x, conv.weight, conv.bias)) < 1e-5, `batch ${n}`);
  });
  for (let n = 1; n <= MAX_PLANS; n++) run(n);
  assert.is(planCacheSize(conv).plans, MAX_PLANS);
  run(1);
  run(MAX_PLANS + 1);
  const keys = Object.keys(plannedKernels(conv));
  assert.is(keys.length, MAX_PLANS);
  assert.ok(keys.includes('1,8,3,3'), 'batch 1, used again, is kept');
  assert.not.ok(keys.includes('2,8,3,3'), 'batch 2, the least recently used, is dropped');
  assert.ok(keys.includes(`${MAX_PLANS + 1},8,3,3`));
  const size = planCacheSize(conv);
  assert.is(size.weights, size.layouts, JSON.stringify(size));
  conv.dispose();
});

test('errors: a tensor that is not a plan, a wrong shape or dtype, a missing or unexpected residual', () => {
  if (!on) return;
  tidy(() => {
    const w = randn([4, 2, 3, 3]);
    const x = randn([1, 2, 8, 8]);
    const plan = new T(native.dnnlConvPlan(w.h, null, [1], [1], [1], 1, [1, 2, 8, 8], false, false, null));
    assert.throws(() => native.dnnlConvRun(w.h, x.h, null), /expected a plan/);
    assert.throws(() => native.dnnlConvRun(plan.h, randn([1, 2, 9, 8]).h, null), /plan is for \[1, 2, 8, 8\]/);
    assert.throws(() => native.dnnlConvRun(plan.h, x.to('float64').h, null), /input is Double/);
    assert.throws(() => native.dnnlConvRun(plan.h, x.h, randn([1, 4, 8, 8]).h), /adds no residual/);
    const addPlan = new T(native.dnnlConvPlan(w.h, null, [1], [1], [1], 1, [1, 2, 8, 8], true, true, null));
    assert.throws(() => native.dnnlConvRun(addPlan.h, x.h, null), /pass `other`/);
    assert.throws(() => native.dnnlConvRun(addPlan.h, x.h, randn([1, 4, 7, 8]).h), /other has shape/);
    assert.throws(() => native.dnnlConvPlan(w.h, null, [1], [1], [1], 1, [1, 3, 8, 8], false, false, null), /3 channels; the weight takes 2/);
    assert.throws(() => native.dnnlConvPlan(w.h, null, [0], [1], [1], 1, [1, 2, 2, 2], false, false, null), /smaller than the kernel/);
    assert.throws(() => native.dnnlConvPlan(w.h, null, [1], [0], [1], 1, [1, 2, 8, 8], false, false, null), /stride and dilation/);
  });
});

test('oneDNN max pooling equals aten max_pool2d exactly (float32, bf16; padding, stride, odd sizes, NCHW input)', () => {
  if (!on) return;
  noGrad(() => tidy(() => {
    const cases = [
      { shape: [1, 64, 112, 112], k: 3, s: 2, p: 1 },
      { shape: [3, 16, 9, 7], k: 3, s: 2, p: 1 },
      { shape: [2, 8, 10, 10], k: 2, s: 2, p: 0 },
      { shape: [1, 24, 6, 5], k: 3, s: 1, p: 1 },
    ];
    for (const dtype of ['float32', 'bfloat16'] as const) {
      for (const c of cases) {
        // Negative everywhere: padding read as zeros would show as 0 at the borders.
        const x = randn(c.shape).sub(4).to(dtype);
        const ref = F.maxPool2d(x, c.k, { stride: c.s, padding: c.p });
        for (const input of [x.contiguous('channelsLast'), x]) {
          const y = plannedMaxPool(input, c.k, c.s, c.p);
          if (!y) {
            assert.ok(dtype === 'bfloat16', 'float32 max pooling is not refused where convolutions are planned');
            continue;
          }
          assert.equal(y.shape, ref.shape, `${dtype} ${c.shape}`);
          assert.ok(y.isChannelsLast, 'channels-last out');
          assert.is(y.dtype, dtype);
          assert.is(y.to('float32').sub(ref.to('float32')).abs().max().item(), 0, `${dtype} ${c.shape} k${c.k} s${c.s} p${c.p}`);
        }
      }
    }
    // Where it does not apply: the caller runs libtorch's.
    assert.is(plannedMaxPool(randn([1, 4, 6, 6]).to('float64'), 3, 2, 1), null);
    assert.is(plannedMaxPool(randn([1, 4, 6, 6], { requiresGrad: true }), 3, 2, 1), null);
    const x = randn([1, 4, 6, 6]);
    assert.throws(() => native.dnnlMaxPool(x.h, [3], [2], [2]), /at most half the kernel/);
    assert.throws(() => native.dnnlMaxPool(randn([4, 6, 6]).h, [3], [2], [1]), /expected \[N, C, H, W\]/);
    assert.throws(() => native.dnnlMaxPool(randn([1, 4, 2, 2]).h, [5], [1], [1]), /smaller than the kernel/);
  }));
});

test('the fused resnet runs its stem pooling on oneDNN, with the unfused model\'s result', () => {
  if (!on) return;
  noGrad(() => tidy(() => {
    const model = models.resnet18().eval();
    const net = inference.optimize(model);
    const x = randn([2, 3, 64, 64]);
    const original = native.dnnlMaxPool;
    let calls = 0;
    (native as { dnnlMaxPool: typeof original }).dnnlMaxPool = (...args) => {
      calls++;
      return original(...args);
    };
    let y: Tensor;
    try {
      y = net.forward(x);
    } finally {
      (native as { dnnlMaxPool: typeof original }).dnnlMaxPool = original;
    }
    assert.is(calls, 1);
    assert.ok(relErr(y, model.forward(x)) < 1e-4);
    net.dispose();
    model.dispose();
  }));
});

test('oneDNN capped to AVX2: no bf16 pooling kernel there, so pooling falls back (never throws); float32 ResNeXt on AVX2 kernels equals the unfused model', () => {
  if (!on) return;
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'inference-planned.child.ts')], {
    encoding: 'utf8', env: { ...process.env, DNNL_MAX_CPU_ISA: 'AVX2', ONEDNN_MAX_CPU_ISA: 'AVX2', RESNET_TS_BF16_CONV_FP32: '1' },
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as {
    float32: number | null; bfloat16: number | null; bf16NetRelErr: number; resnextRelErr: number; resnextKernels: { conv1: string[]; grouped: string[] };
    conv3x3: { byBatch: Array<{ batch: number; relErr: number }>; kernels: Record<string, string> };
    manyBatches: { plans: number; weights: number; layouts: number; refused: boolean; planCalls: number; relErr: number };
  };
  assert.is(r.float32, 0, 'float32 pooling on the AVX2 kernel equals aten');
  assert.ok(r.bfloat16 === null || r.bfloat16 === 0, `bf16: refused or equal (${r.bfloat16})`);
  assert.ok(r.bf16NetRelErr < 0.05, `the bf16 fused net runs and agrees with float32 (${r.bf16NetRelErr})`);
  // float32 on the AVX2 kernels: planned with them, the grouped 4-channel convolutions left to libtorch (no gemm plan).
  assert.ok(r.resnextRelErr < 1e-4, `resnext50_32x4d fused on AVX2 kernels equals the unfused model (${r.resnextRelErr})`);
  assert.equal(r.resnextKernels.conv1.length, 1);
  assert.match(r.resnextKernels.conv1[0]!, /avx2/, `the 1x1 runs an AVX2 kernel: ${r.resnextKernels.conv1[0]}`);
  assert.ok(r.resnextKernels.grouped.every((k) => !/gemm|ref/.test(k)), `no gemm or reference plan: ${r.resnextKernels.grouped.join(', ')}`);
  // A 3x3 (groups 1) at 14x14: never planned on 2.6's jit:avx2, libtorch's oneDNN runs it at batch 1 and 2, equal to aten's.
  for (const b of r.conv3x3.byBatch) assert.ok(b.relErr < 1e-5, `3x3 at batch ${b.batch}: ${b.relErr}`);
  assert.equal(r.conv3x3.kernels, {}, JSON.stringify(r.conv3x3.kernels));
  // 71 batch sizes (1..71) of a 3x3 at 4x4: one plan made (to learn 2.6's kernel), declined for good, outputs right.
  assert.equal(r.manyBatches, { plans: 0, weights: 0, layouts: 0, refused: true, planCalls: 1, relErr: r.manyBatches.relErr });
  assert.ok(r.manyBatches.relErr < 1e-5, `${r.manyBatches.relErr}`);
});

test('libtorchFaster: 3x3 convolutions with one group on 2.6\'s jit:avx2 kernel, at every size and batch', () => {
  const spec = (k: number, groups = 1) => ({ kernelSize: [k, k] as [number, number], groups });
  assert.ok(libtorchFaster('jit:avx2', spec(3)));
  assert.not.ok(libtorchFaster('jit:avx2', spec(3, 32)), 'grouped');
  assert.not.ok(libtorchFaster('jit:avx2', spec(7)), 'the 7x7 stem');
  assert.not.ok(libtorchFaster('jit_1x1:avx2', spec(1)), '1x1');
  assert.not.ok(libtorchFaster('brgconv:avx512_core', spec(3)), 'AVX-512: 2.6 has brgemm');
  assert.not.ok(libtorchFaster('jit_wino_4x3:avx512_core', spec(3)));
});

test.run();
