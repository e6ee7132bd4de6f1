// models: parameter counts against torchvision (the oracle in test/reference) and the papers, the registry,
// the CIFAR shortcut options, block variants, and summary() against the oracle's hook count of multiply-adds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { models, nn, randn, tensor, noGrad, tidy, Tensor } from '../lib/index.ts';
import { py, root, visionPython } from './helpers.ts';

const ORACLE = join(root, 'test', 'reference', 'torchvision_oracle.py');
const oracle = <T>(...args: string[]): T =>
  py<T>(`import runpy, sys; sys.argv = ${JSON.stringify([ORACLE, ...args])}; runpy.run_path(sys.argv[0], run_name='__main__')`, { python: visionPython });
const flat = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number>);
const count = (m: nn.Module): number => {
  const n = m.numParameters();
  m.dispose();
  return n;
};

const IMAGENET = ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d', 'resnext101_32x8d', 'resnext101_64x4d', 'wide_resnet50_2', 'wide_resnet101_2'];

test('every ImageNet factory has torchvision\'s parameter count (oracle: torchvision 0.14)', () => {
  const ref = oracle<Record<string, number>>('count');
  assert.equal(Object.keys(ref), IMAGENET);
  for (const name of IMAGENET) assert.is(count(models.create(name)), ref[name], name);
  assert.is(ref.resnet50, 25_557_032);
  assert.is(ref.resnext50_32x4d, 25_028_904);
  assert.is(count(models.resnet50()), 25_557_032);
});

test('CIFAR family parameter counts match the papers (He 2015 table 6, He 2016 table 3, Xie 2017 table 7) to their rounding', () => {
  // He 2015 counts every parameter; He 2016 and Xie 2017 count conv and fc weights without BN's affine
  // parameters — the only reading that reproduces their figures (ResNet-1001: 10.18 M without BN, 10.33 M with;
  // ResNeXt-29 16x64d: 68.05 M vs 68.16 M; while ResNet-1202 is 19.42 M with BN, 19.33 M without).
  const paper: [string, number, number, boolean][] = [
    ['resnet20', 0.27, 2, true], ['resnet32', 0.46, 2, true], ['resnet44', 0.66, 2, true], ['resnet56', 0.85, 2, true],
    ['resnet110', 1.7, 1, true], ['resnet1202', 19.4, 1, true],
    ['preact_resnet110', 1.7, 1, false], ['preact_resnet164', 1.7, 1, false], ['preact_resnet1001', 10.2, 1, false],
    ['resnext29_8x64d', 34.4, 1, false], ['resnext29_16x64d', 68.1, 1, false],
  ];
  for (const [name, millions, digits, withBn] of paper) {
    const m = models.create(name);
    const bn = new Set(m.modules().filter((c) => c instanceof nn.BatchNorm2d).flatMap((c) => c.parameters()));
    const n = m.parameters().reduce((s, t) => (withBn || !bn.has(t) ? s + t.numel : s), 0);
    m.dispose();
    assert.is(Number((n / 1e6).toFixed(digits)), millions, `${name}: ${n}`);
  }
  // ResNet-20 with option A, counted by hand: stem 432+32, stage1 6*(2304+32), stage2 4608+5*9216+6*64, stage3 18432+5*36864+6*128, fc 650.
  assert.is(count(models.resnet20()), 269_722);
});

test('registry: list() holds both families; create() matches the factories and names unknown models and options', () => {
  const names = models.list();
  assert.is(names.length, 33);
  for (const n of [...IMAGENET, 'resnet20', 'resnet1202', 'plain110', 'preact_resnet1001', 'resnext29_16x64d']) assert.ok(names.includes(n), n);
  assert.is(count(models.create('resnet56', { numClasses: 100 })), count(models.resnet56({ numClasses: 100 })));
  assert.throws(() => models.create('resnet19'), /unknown model 'resnet19'/);
  assert.throws(() => models.create('resnet20', { num_classes: 10 } as object), /unknown option\(s\) num_classes/);
  assert.throws(() => models.resnext50_32x4d({ groups: 8 }), /groups is fixed to 32/);
  assert.throws(() => models.resnet18({ groups: 2 }), /BasicBlock only supports groups=1/);
  assert.throws(() => models.resnet18({ replaceStrideWithDilation: [false, false, true] }), /Dilation > 1 not supported in BasicBlock/);
});

test('CIFAR nets take 1-channel 28x28 input (Fashion-MNIST) and numClasses', () => {
  const m = models.create('resnet20', { inChannels: 1, numClasses: 7 });
  assert.equal(m.stateDict()['conv1.weight']!.shape, [16, 1, 3, 3]);
  assert.equal(noGrad(() => m.forward(randn([2, 1, 28, 28]))).shape, [2, 7]);
  const p = models.preact_resnet164({ inChannels: 1 });
  assert.equal(noGrad(() => p.eval().forward(randn([1, 1, 28, 28]))).shape, [1, 10]);
});

test('shortcut options: A adds no parameters, B two projections, C one per block (counted by hand)', () => {
  const a = count(models.resnet20({ shortcut: 'A' }));
  // B: 1x1 convs 16->32 and 32->64 with their BN: (512 + 64) + (2048 + 128).
  assert.is(count(models.resnet20({ shortcut: 'B' })) - a, 2752);
  // C: stage1 3*(256+32); stage2 (512+64) + 2*(1024+64); stage3 (2048+128) + 2*(4096+128).
  assert.is(count(models.resnet20({ shortcut: 'C' })) - a, 864 + 576 + 2176 + 2176 + 8448);
  assert.is(count(models.plain20()), a);
});

test('option A shortcut subsamples by the stride and pads zero channels (hand-computed)', () => {
  const x = tensor([...Array(2 * 16).keys()], { shape: [1, 2, 4, 4] });
  const y = new models.ZeroPadShortcut(2, 4, 2).forward(x);
  assert.equal(y.shape, [1, 4, 2, 2]);
  assert.equal(flat(y), [0, 2, 8, 10, 16, 18, 24, 26, 0, 0, 0, 0, 0, 0, 0, 0]);
});

test('plain nets are the residual nets without the shortcut: same weights, different function', () => {
  const r = models.resnet20().eval();
  const p = models.plain20().eval();
  p.loadStateDict(r.stateDict());
  const x = randn([1, 3, 32, 32]);
  const [yr, yp] = noGrad(() => [r.forward(x), p.forward(x)]);
  assert.ok(Math.max(...flat(yr!.sub(yp!).abs())) > 1e-3);
  // Zeroing every residual branch's last BN: the residual net passes its input on, the plain net outputs zeros.
  const zr = models.resnet20({ zeroInitResidual: true }).eval();
  const block = zr.child<nn.Sequential>('layer1').at(0);
  const pos = randn([1, 16, 8, 8]).abs();
  assert.equal(flat(noGrad(() => block.forward(pos))), flat(pos));
});

test('zeroInitResidual makes every ImageNet bottleneck the identity on non-negative input (ReLU(x + 0) = x)', () => {
  const m = models.resnet50({ zeroInitResidual: true, numClasses: 10 }).eval();
  const block = m.layer1.at<models.Bottleneck>(1);
  assert.equal(flat(block.bn3.weight), Array(256).fill(0));
  const x = randn([1, 256, 4, 4]).abs();
  assert.equal(flat(noGrad(() => block.forward(x))), flat(x));
});

test('pre-activation blocks leave the identity path untouched: zero convs give exactly x (He 2016 eq. 1 with F = 0)', () => {
  for (const block of [new models.PreActBasicBlock(8, 8), new models.PreActBottleneck(32, 8)]) {
    for (const [k, t] of block.namedParameters()) if (k.startsWith('conv')) noGrad(() => t.zero_());
    const x = randn([2, block instanceof models.PreActBasicBlock ? 8 : 32, 5, 5]);
    assert.equal(flat(noGrad(() => block.forward(x))), flat(x));
  }
});

test('strideOn1x1 moves the stride to the first 1x1; replaceStrideWithDilation keeps layer3/4 at stride 8', () => {
  const v1 = models.resnet50({ strideOn1x1: true });
  const b = v1.layer2.at<models.Bottleneck>(0);
  assert.equal([b.conv1.stride, b.conv2.stride], [[2, 2], [1, 1]]);
  assert.is(v1.numParameters(), 25_557_032);
  const d = models.resnet50({ replaceStrideWithDilation: [false, true, true], numClasses: 10 });
  const l4 = d.layer4.at<models.Bottleneck>(1);
  assert.equal([l4.conv2.dilation, l4.conv2.padding], [[4, 4], [4, 4]]);
  const s = models.summary(d, [1, 3, 64, 64], { depth: 1 });
  // 64 / 2 (stem) / 2 (max-pool) / 2 (layer2) = 8, kept by the dilated layer3 and layer4.
  assert.equal(s.rows.find((r) => r.name === 'layer4')!.outputShape, [1, 2048, 8, 8]);
});

test('summary(resnet50, 1x3x224x224): 25,557,032 params and the multiply-adds torchvision hooks count (4.09 G)', () => {
  const m = models.resnet50();
  const s = tidy(() => models.summary(m, [1, 3, 224, 224]));
  const ref = oracle<{ macs: number }>('macs', 'resnet50', '1,3,224,224');
  assert.is(s.totalMultAdds, ref.macs);
  assert.is(Number((s.totalMultAdds / 1e9).toFixed(2)), 4.09);
  assert.is(s.totalParams, 25_557_032);
  assert.equal(s.rows.find((r) => r.name === 'fc')!.outputShape, [1, 1000]);
  assert.equal(s.rows.find((r) => r.name === 'layer1')!.outputShape, [1, 256, 56, 56]);
  assert.ok(s.text.includes('Total params: 25,557,032') && s.text.includes('Total mult-adds (G): 4.09'));
  assert.ok(m.training, 'summary restores training mode');
});

test.run();
