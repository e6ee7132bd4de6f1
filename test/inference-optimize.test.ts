// inference.optimize(): the fused network against torchvision 0.14 (the oracle's weights and eval outputs) and
// against the unfused model, oneDNN's own log for "no per-call reorders, bias/ReLU/shortcut fused", the
// packed-weight cache, errors, the CPU flag parser and the large-block CPU cache.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { cpu, inference, io, memory, models, nn, noGrad, randn, tidy, zeros, type Tensor } from '../lib/index.ts';
import { native } from '../lib/native.ts';
import { root, tmp, visionPython } from './helpers.ts';

const ORACLE = join(root, 'test', 'reference', 'torchvision_oracle.py');
const dir = tmp('inference-optimize-');

/** max |a - b| / max |b|: the error relative to the reference tensor's scale. */
function relErr(a: Tensor, b: Tensor): number {
  assert.equal(a.shape, b.shape);
  return tidy(() => a.sub(b).abs().max().item() / b.abs().max().item());
}

/** BN statistics and affine parameters away from their init, so folding them is exercised. */
function perturbBatchNorm(m: nn.Module): void {
  noGrad(() => {
    for (const b of m.modules()) {
      if (!(b instanceof nn.BatchNorm2d)) continue;
      b.runningMean.normal_(0, 0.2);
      b.runningVar.uniform_(0.5, 2);
      b.weight.uniform_(0.5, 1.5);
      b.bias.normal_(0, 0.2);
    }
  });
}

for (const name of ['resnet50', 'resnext50_32x4d']) {
  test(`${name}: fused fp32 output equals torchvision's eval output and the unfused model's (1e-4 relative)`, () => {
    // 64² reaches layer4 at 2x2, so every stride, padding and grouped 3x3 runs with real neighbours.
    execFileSync(visionPython, [ORACLE, 'eval', name, dir, '2,3,64,64'], { encoding: 'utf8', timeout: 300_000 });
    const ref = io.loadSafetensors(join(dir, `${name}.io.safetensors`));
    const m = models.create(name).eval();
    tidy(() => m.loadStateDict(io.loadPth(join(dir, `${name}.pth`))));
    const net = inference.optimize(m);
    tidy(() => {
      const y = noGrad(() => net.forward(ref.x!));
      const unfused = noGrad(() => m.forward(ref.x!));
      assert.ok(relErr(y, ref.y!) < 1e-4, `vs torchvision: ${relErr(y, ref.y!)}`);
      assert.ok(relErr(y, unfused) < 1e-4, `vs unfused: ${relErr(y, unfused)}`);
      assert.is(y.dtype, 'float32');
    });
    net.dispose();
    m.dispose();
    for (const t of Object.values(ref)) t.dispose();
    for (const ext of ['pth', 'safetensors', 'io.safetensors']) rmSync(join(dir, `${name}.${ext}`), { force: true });
  });
}

test('every block kind folds: BasicBlock, zero-pad shortcut (option A), plain, pre-activation, ResNeXt-29 (1e-4 relative to unfused)', () => {
  for (const [name, opts] of [['resnet18', {}], ['resnet20', {}], ['plain20', {}], ['preact_resnet110', {}], ['resnet20', { shortcut: 'B' }]] as const) {
    const m = models.create(name, opts).eval();
    perturbBatchNorm(m);
    const x = randn(name === 'resnet18' ? [2, 3, 64, 64] : [3, 3, 32, 32]);
    const net = inference.optimize(m);
    tidy(() => {
      const e = relErr(noGrad(() => net.forward(x)), noGrad(() => m.forward(x)));
      assert.ok(e < 1e-4, `${name} ${JSON.stringify(opts)}: ${e}`);
    });
    net.dispose();
    m.dispose();
    x.dispose();
  }
});

test('oneDNN log: no weight reorder on a repeated call at batch 1 or 2; bias+ReLU and shortcut+ReLU run inside the convolutions', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(root, 'test', 'inference-optimize.child.ts')], {
    encoding: 'utf8', env: { ...process.env, ONEDNN_VERBOSE: '1' }, maxBuffer: 1 << 26, timeout: 120_000,
  });
  if (!native.fusedAvailable()) return;
  for (const b of [1, 2]) {
    const run = out.split(`---forward b${b}---`)[1]!.split('---end---')[0]!.split('\n').filter((l) => l.includes(',exec,'));
    const convs = run.filter((l) => l.includes(',convolution,'));
    // No weight is reordered per call. The only reorders are a winograd convolution's (a planned 3x3 on AVX-512):
    // its input from channels-last into oneDNN's blocked layout and its output back, [b, C, H, W] each.
    const reorders = run.filter((l) => l.includes(',reorder,'));
    const wino = run.filter((l) => l.includes(',convolution,') && l.includes('alg:convolution_winograd'));
    assert.is(reorders.length, 2 * wino.length, `reorders at batch ${b}: ${reorders.length}, winograd convolutions ${wino.length}`);
    assert.ok(reorders.every((l) => new RegExp(`,${b}x\\d+x\\d+x\\d+,`).test(l) && /blocked:acdb/.test(l)), 'only activations are reordered');
    // Where convolutions are planned, the fc runs as one more: a 1x1 convolution over the pooled features.
    const head = convs.filter((l) => /ic512oc1000_ih1oh1kh1sh1/.test(l));
    assert.is(head.length, native.dnnlAvailable() ? 1 : 0, 'the fc as a planned 1x1 convolution');
    assert.is(convs.length - head.length, 20, `resnet18 has 20 convolutions; ran ${convs.length - head.length}`);
    // 8 blocks: each ends in conv + shortcut + ReLU; the stem and each block's first conv carry conv + ReLU.
    // libtorch's fused kernel adds the shortcut as a binary post-op, a planned convolution accumulates into it (sum).
    assert.is(convs.filter((l) => /attr-post-ops:(binary_add[^,+]*|sum[^,+]*)\+eltwise_relu/.test(l)).length, 8);
    assert.is(convs.filter((l) => /attr-post-ops:eltwise_relu/.test(l)).length, 9);
    // libtorch's oneDNN 3.x prints `src:f32::blocked:acdb`, the system oneDNN 2.x of planned convolutions `src_f32::blocked:acdb`.
    assert.ok(convs.every((l) => /src[:_]f32::blocked:acdb/.test(l) || wino.includes(l)), 'activations are channels-last (acdb)');
  }
});

test('loadStateDict into a fused net that has run: it computes with the new weights (its reordered copies and plans are dropped)', () => {
  const [a, b] = [models.create('resnet18').eval(), models.create('resnet18').eval()];
  perturbBatchNorm(b);
  const x = randn([1, 3, 64, 64]);
  const [na, nb] = [inference.optimize(a), inference.optimize(b)];
  tidy(() => {
    const before = noGrad(() => na.forward(x));
    assert.ok(relErr(before, noGrad(() => a.forward(x))) < 1e-4);
    na.loadStateDict(nb.stateDict());
    const reference = noGrad(() => b.forward(x));
    const e = relErr(noGrad(() => na.forward(x)), reference);
    assert.ok(e < 1e-4, `after loadStateDict: ${e} relative to the unfused model of the new weights`);
    assert.ok(relErr(before, reference) > 1e-2, 'the two weight sets give different outputs');
  });
  for (const m of [na, nb, a, b]) m.dispose();
  x.dispose();
});

test('packed weights: one layout serves batch 1, 3 and 8; dispose frees them and everything else', () => {
  const base = memory().tensors;
  const m = models.create('resnet20', { inChannels: 1 }).eval();
  const net = inference.optimize(m);
  const before = memory().tensors;
  const run = (b: number): Tensor => tidy(() => noGrad(() => net.forward(zeros([b, 1, 28, 28]).add(0.5))));
  const outputs = [1, 3, 8].map(run);
  // A packed weight and its layout descriptor per convolution and distinct layout: oneDNN picks one layout for
  // most of the 19 convolutions whatever the batch, so far fewer than one pack per (convolution, batch size).
  const packs = memory().tensors - before - outputs.length;
  assert.ok(native.fusedAvailable() ? packs >= 38 && packs < 2 * 38 : packs === 0, `${packs} handles for packed weights`);
  for (const b of [8, 3, 1]) run(b).dispose();
  assert.is(memory().tensors - before - outputs.length, packs, 'repeated batch sizes reuse their packs');
  const again = run(1);
  assert.is(tidy(() => relErr(again, outputs[0]!.narrow(0, 0, 1))), 0, 'batch 1 after batch 8 gives the same logits');
  for (const t of [...outputs, again]) t.dispose();
  net.dispose();
  m.dispose();
  assert.is(memory().tensors, base);
});

test('errors: training mode, an unsupported model, wrong input channels, an unknown amp', () => {
  const m = models.create('resnet20');
  assert.throws(() => inference.optimize(m), /training mode; call model.eval\(\) first/);
  m.eval();
  assert.throws(() => inference.optimize(new nn.Sequential(new nn.Conv2d(3, 4, 3)).eval()), /inference.optimize: model Sequential; supported are/);
  assert.throws(() => inference.optimize(m, { amp: 'int8' as never }), /amp must be 'bf16' or 'fp16'/);
  const net = inference.optimize(m);
  assert.throws(() => net.forward(zeros([1, 1, 32, 32])), /expected input \[N, 3, H, W\]; got \[1, 1, 32, 32\]/);
  net.dispose();
  m.dispose();
});

test('cpu.parseCpuinfo: AMX, AVX512-BF16 only, neither (x86 and Arm); describeCpu names the bf16 path', () => {
  const amd = cpu.parseCpuinfo('model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n', 2);
  assert.equal([amd.model, amd.avx512, amd.avx512Bf16, amd.amxBf16, amd.bf16], ['AMD EPYC 9R14', true, true, false, 'avx512-bf16']);
  assert.is(cpu.describeCpu(amd), 'AMD EPYC 9R14, 2 cores, AVX-512, bf16: AVX512-BF16 (no AMX)');
  const spr = cpu.parseCpuinfo('model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n', 4);
  assert.is(spr.bf16, 'amx');
  assert.ok(cpu.bf16Pays(spr));
  const old = cpu.parseCpuinfo('model name\t: Intel(R) Xeon(R) CPU E5-2680 v4\nflags\t\t: sse avx avx2 fma\n', 2);
  assert.equal([old.bf16, cpu.bf16Pays(old)], ['emulated', false]);
  assert.equal([amd.cpuidFault, cpu.parseCpuinfo('flags\t\t: avx2 cpuid_fault\n', 2).cpuidFault], [false, true]);
  assert.match(cpu.describeCpu(old), /no AVX512-BF16 or AMX, so --amp bf16 is emulated and slower than fp32/);
  const arm = cpu.parseCpuinfo('processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n', 8);
  assert.equal([arm.flagsKnown, arm.avx2, arm.bf16], [true, false, 'emulated']);
  assert.ok(cpu.cpuInfo().model.length > 0);
});

test('large-block CPU cache: freed activations are reused (hits), values stay right, empty() gives memory back', () => {
  const s0 = native.cpuCacheStats();
  for (let i = 0; i < 5; i++) {
    tidy(() => {
      const a = zeros([4, 256, 32, 32]).add(i); // 4 MiB
      assert.is(a.mean().item(), i);
    });
  }
  const s1 = native.cpuCacheStats();
  assert.ok(s1.hits - s0.hits >= 4, `hits ${s1.hits - s0.hits}`);
  assert.ok(s1.cachedBytes > 0);
  native.cpuCacheEmpty();
  assert.is(native.cpuCacheStats().cachedBytes, 0);
});

test.run();
