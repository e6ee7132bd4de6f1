// DenseNet against torchvision 0.14 (test/reference/densenet_oracle.py run by Debian's python3) and Huang et al. 2017:
// parameter counts, the oracle's weights loaded key for key from .pth (also with torchvision's legacy `norm.1` keys),
// eval outputs in float32 and float64, one train step's gradients and BN statistics, multiply-adds. (.safetensors
// loading is format-level and tested with the ResNets in zoo-parity.)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { models, nn, io, noGrad, tidy, dispose, memory, randn, F, Tensor } from '../lib/index.ts';
import { root, tmp, visionPython } from './helpers.ts';

const ORACLE = join(root, 'test', 'reference', 'densenet_oracle.py');
const dir = tmp('densenet-');
const IMAGENET = ['densenet121', 'densenet161', 'densenet169', 'densenet201'];
const CIFAR = ['densenet_bc_100_k12', 'densenet_bc_250_k24', 'densenet_bc_190_k40'];
// 32² reaches the last dense block at 1x1 through every stride; Fashion-MNIST's 28² for the CIFAR net.
const EVAL_INPUT = '1,3,32,32';
const CIFAR_INPUT = '2,1,28,28';
// float32 kernels of the two libtorch builds round differently (zoo-parity's bound); float64 proves the wiring.
const F32_TOL = 1e-3;
const F64_TOL = 1e-10;

// One oracle process for every job (importing torch costs more than most jobs); each test removes its files.
const TRAIN = { densenet121: '2,3,64,64', densenet_bc_100_k12: '4,1,16,16' };
const MACS = 'macs:densenet121:1,3,224,224';
const jobs: Record<string, { params: number; macs?: number }> = JSON.parse(execFileSync(visionPython, [
  ORACLE, dir,
  ...[...IMAGENET, ...CIFAR].map((n) => `count:${n}:1,3,32,32`),
  ...IMAGENET.map((n) => `eval:${n}:${EVAL_INPUT}`), `eval:densenet_bc_100_k12:${CIFAR_INPUT}`,
  ...Object.entries(TRAIN).map(([n, shape]) => `train:${n}:${shape}`), MACS,
], { encoding: 'utf8', timeout: 900_000 }).trim().split('\n').pop()!);
/** torchvision's parameter count of a model with 3 input channels. */
const tvParams = (name: string): number => jobs[`count:${name}:1,3,32,32`]!.params;

/** max |a - b| / max |b|: the error relative to the reference tensor's scale. */
function relErr(a: Tensor, b: Tensor): number {
  assert.equal(a.shape, b.shape);
  const x = a.toArray() as ArrayLike<number | bigint>;
  const y = b.toArray() as ArrayLike<number | bigint>;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < x.length; i++) {
    diff = Math.max(diff, Math.abs(Number(x[i]) - Number(y[i])));
    scale = Math.max(scale, Math.abs(Number(y[i])));
  }
  return scale === 0 ? diff : diff / scale;
}

const file = (name: string, kind: string, ext: string): string => join(dir, `${name}-${kind}.${ext}`);
const cleanup = (name: string, kind: string): void => {
  for (const ext of ['pth', 'legacy.pth', 'io.safetensors']) rmSync(file(name, kind, ext), { force: true });
};

test('parameter counts: torchvision\'s for the ImageNet nets; Huang et al. table 2 (0.8 M, 15.3 M, 25.6 M) for DenseNet-BC', () => {
  // torchvision's published metadata (DenseNet*_Weights.meta["num_params"]).
  assert.equal(IMAGENET.map(tvParams), [7_978_856, 28_681_000, 14_149_480, 20_013_928]);
  for (const name of [...IMAGENET, ...CIFAR]) {
    const m = models.create(name);
    assert.is(m.numParameters(), tvParams(name), name);
    m.dispose();
  }
  // The paper counts every parameter (BN's too) with CIFAR-10's classifier: 0.769 M, 15.32 M, 25.62 M (CIFAR-100's
  // would make the last two 15.48 M and 25.82 M).
  assert.equal(CIFAR.map((n) => Number((tvParams(n) / 1e6).toFixed(1))), [0.8, 15.3, 25.6]);
  // The DenseNet-BC k=12 on Fashion-MNIST (1 input channel), 769,162 - 3*216 + 216 by hand: the stem conv loses 2 of its 3 input planes.
  assert.is(models.create('densenet_bc_100_k12', { inChannels: 1 }).numParameters(), 769_162 - 2 * 24 * 9);
});

test('registry: DenseNets listed in their input-size families; options checked as torchvision\'s builders take them', () => {
  const names = models.list();
  for (const n of [...IMAGENET, ...CIFAR]) assert.ok(names.includes(n), n);
  assert.equal(IMAGENET.map(models.family), ['imagenet', 'imagenet', 'imagenet', 'imagenet']);
  assert.is(models.family('densenet_bc_100_k12'), 'cifar');
  assert.throws(() => models.create('densenet121', { zeroInitResidual: true }), /unknown option\(s\) zeroInitResidual; accepted: numClasses, bnSize, dropRate, inChannels/);
  assert.throws(() => models.create('densenet121', { growthRate: 12 } as object), /unknown option\(s\) growthRate/);
  assert.throws(() => models.densenet121({ dropRate: 1 }), /dropRate must be in \[0, 1\)/);
  const small = models.densenet121({ numClasses: 10, bnSize: 2 });
  const sd = small.stateDict();
  assert.equal(sd['classifier.weight']!.shape, [10, 1024]);
  assert.equal(sd['features.denseblock1.denselayer1.conv1.weight']!.shape, [64, 64, 1, 1]);
  assert.equal(sd['features.transition3.conv.weight']!.shape, [512, 1024, 1, 1]);
  small.dispose();
});

test('legacy keys: torchvision\'s _load_state_dict regex renames norm.1 / relu.2 / conv.2 of dense layers only', () => {
  const t = randn([1]);
  const out = Object.keys(models.remapLegacyKeys({
    'features.denseblock1.denselayer1.norm.1.weight': t, 'features.denseblock4.denselayer16.conv.2.weight': t,
    'features.denseblock2.denselayer3.norm.2.running_var': t, 'features.transition1.norm.weight': t,
    'features.norm5.bias': t, 'features.denseblock1.denselayer1.norm.1.num_batches_tracked': t,
  }));
  assert.equal(out, [
    'features.denseblock1.denselayer1.norm1.weight', 'features.denseblock4.denselayer16.conv2.weight',
    'features.denseblock2.denselayer3.norm2.running_var', 'features.transition1.norm.weight',
    'features.norm5.bias', 'features.denseblock1.denselayer1.norm.1.num_batches_tracked',
  ]);
  t.dispose();
});

/** Loads the oracle's eval files into m and checks float32 outputs from every format, then float64. */
function checkEval(name: string, m: models.DenseNet, shape: string): void {
  assert.is(m.numParameters(), jobs[`eval:${name}:${shape}`]!.params);
  const out = io.loadSafetensors(file(name, 'eval', 'io.safetensors'));
  const ys: Tensor[] = [];
  for (const ext of ['pth', 'legacy.pth']) {
    const sd = io.loadPth(file(name, 'eval', ext));
    if (ext === 'legacy.pth') assert.ok('features.denseblock1.denselayer1.norm.1.weight' in sd && !('features.norm5.num_batches_tracked' in sd));
    m.loadStateDict(sd);
    dispose(sd);
    const y = noGrad(() => m.forward(out.x!));
    const err = relErr(y, out.y!);
    assert.ok(err < F32_TOL, `${name} from .${ext}, float32: relative error ${err}`);
    ys.push(y);
  }
  // The same weights under old and new keys give the same output, bit for bit.
  assert.ok(ys[0]!.equal(ys[1]!), `${name}: legacy and current keys disagree`);
  m.to('float64');
  const err = tidy(() => relErr(noGrad(() => m.forward(out.x!.to('float64'))), out['f64.y']!));
  assert.ok(err < F64_TOL, `${name}, float64: relative error ${err}`);
  dispose([ys, out]);
  cleanup(name, 'eval');
}

for (const name of IMAGENET) {
  test(`${name}: torchvision weights from .pth, with current and with legacy keys, give torchvision's eval output`, () => {
    const m = models.create(name).eval() as models.DenseNet;
    checkEval(name, m, EVAL_INPUT);
    m.dispose();
  });
}

test('densenet_bc_100_k12 (1 channel, 28²): the oracle\'s CIFAR DenseNet-BC weights give its eval output', () => {
  const m = models.densenet_bc_100_k12({ inChannels: 1 }).eval();
  checkEval('densenet_bc_100_k12', m, CIFAR_INPUT);
  m.dispose();
});

/** One train-mode step on the oracle's weights: logits, loss, gradients and the updated BN buffers. */
function checkTrain(name: string, build: () => models.DenseNet, grads: string[], f32GradTol: number): void {
  const ref = io.loadSafetensors(file(name, 'train', 'io.safetensors'));
  const weights = io.loadPth(file(name, 'train', 'pth'));
  for (const dtype of ['float32', 'float64'] as const) {
    const p = dtype === 'float64' ? 'f64.' : '';
    const tol = dtype === 'float64' ? F64_TOL : 1e-4;
    const m = build();
    m.loadStateDict(weights);
    m.to(dtype).train();
    tidy(() => {
      const logits = m.forward(ref.x!.to(dtype));
      const loss = F.crossEntropy(logits, ref.target!);
      loss.backward();
      assert.ok(relErr(logits, ref[`${p}logits`]!) < tol, `${dtype} logits ${relErr(logits, ref[`${p}logits`]!)}`);
      assert.ok(relErr(loss.reshape([1]), ref[`${p}loss`]!) < tol, `${dtype} loss`);
    });
    const params = Object.fromEntries(m.namedParameters());
    for (const k of grads) {
      const err = tidy(() => relErr(params[k]!.grad!, ref[`${p}grad.${k}`]!));
      assert.ok(err < (dtype === 'float64' ? F64_TOL : f32GradTol), `${dtype} grad of ${k}: relative error ${err}`);
    }
    const sd = m.stateDict();
    const buffers = Object.keys(sd).filter((k) => k.includes('running') || k.includes('num_batches'));
    assert.is(buffers.length, 3 * m.modules().filter((x) => x.constructor.name === 'BatchNorm2d').length);
    for (const k of buffers) {
      const err = relErr(sd[k]!, ref[p + k]!);
      assert.ok(err < tol, `${dtype} ${k}: relative error ${err}`);
    }
    m.dispose();
  }
  dispose([ref, weights]);
  cleanup(name, 'train');
}

const gradKeys = (last: string): string[] => [
  'features.conv0.weight', 'features.denseblock1.denselayer1.norm1.weight', 'features.denseblock1.denselayer1.conv1.weight',
  'features.transition1.conv.weight', `features.${last}.conv2.weight`, 'features.norm5.bias', 'classifier.weight', 'classifier.bias',
];

// Train-mode BN over 2x2x2 values per channel in densenet121's last block (at 64²) makes float32 gradients of the first
// layers ill-conditioned: 4e-3 apart, where float64 agrees to 6e-14. So they get a 1e-2 bound; float64 proves the wiring.
test('densenet121 train mode (2x3x64x64): logits, loss, gradients through every block, BN statistics match torchvision', () => {
  checkTrain('densenet121', () => models.densenet121(), gradKeys('denseblock4.denselayer16'), 1e-2);
});

test('densenet_bc_100_k12 train mode (4x1x16x16): logits, loss, gradients, BN statistics match the oracle', () => {
  checkTrain('densenet_bc_100_k12', () => models.densenet_bc_100_k12({ inChannels: 1 }), gradKeys('denseblock3.denselayer16'), 1e-4);
});

test('summary(densenet121, 1x3x224x224): the multiply-adds torchvision\'s hooks count (2.83 G)', () => {
  const m = models.densenet121();
  const s = tidy(() => models.summary(m, [1, 3, 224, 224], { depth: 2 }));
  assert.is(s.totalMultAdds, jobs[MACS]!.macs);
  assert.is(Number((s.totalMultAdds / 1e9).toFixed(2)), 2.83);
  assert.equal(s.rows.find((r) => r.name === 'features.denseblock4')!.outputShape, [1, 1024, 7, 7]);
  m.dispose();
});

test('dropRate drops after the 3x3 in training only: each output is 0 or twice the undropped one (p = 0.5)', () => {
  const layer = new models.DenseLayer(8, 4, 2, 0.5);
  const plain = new models.DenseLayer(8, 4, 2, 0);
  plain.loadStateDict(layer.stateDict());
  const x = randn([2, 8, 5, 5]);
  const [a, b] = noGrad(() => [layer.forward(x), plain.forward(x)]);
  const [da, db] = [a!.toArray() as Float32Array, b!.toArray() as Float32Array];
  let zeros = 0;
  for (let i = 0; i < da.length; i++) {
    if (da[i] === 0) zeros++;
    else assert.ok(Math.abs(da[i]! - 2 * db[i]!) <= 1e-6 * Math.abs(db[i]!), `element ${i}`);
  }
  assert.ok(zeros > 0.3 * da.length && zeros < 0.7 * da.length, `${zeros} of ${da.length} dropped`);
  assert.ok(noGrad(() => layer.eval().forward(x)).equal(noGrad(() => plain.eval().forward(x))));
  dispose([x, a, b]);
  layer.dispose();
  plain.dispose();
});

test('forward and backward leave no tensor handles behind (the concatenations are freed)', () => {
  const m = new models.DenseNet({ growthRate: 4, blockConfig: [3, 2], numInitFeatures: 8, inChannels: 1, dropRate: 0.1, stem: 'cifar' });
  const x = randn([2, 1, 12, 12]);
  const before = memory().tensors;
  const y = m.forward(x);
  assert.is(memory().tensors, before + 1);
  const loss = y.sum();
  loss.backward();
  dispose([y, loss]);
  assert.is(memory().tensors, before);
  const grad = m.features.child<nn.Conv2d>('conv0').weight.grad;
  assert.ok(grad !== null);
  grad.dispose();
  x.dispose();
  m.dispose();
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
