// ModelEma (timm's ModelEmaV3 semantics) against averages computed by hand in float64 over a few steps: parameters and
// BN statistics averaged, integer buffers copied, excludeBuffers, timm's warm-up decay, and the average as a model.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { models, nn, optim, train, randn, randint, noGrad, tidy, F, Tensor } from '../lib/index.ts';

const values = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
/** A snapshot of every state-dict entry as float64 numbers. */
const snapshot = (m: nn.Module): Record<string, number[]> => Object.fromEntries(Object.entries(m.stateDict()).map(([k, t]) => [k, values(t)]));

/** Largest |ema - expected| / max(1, |expected|) over every entry named in expected. */
function worst(ema: nn.Module, expected: Record<string, number[]>): number {
  const own = ema.stateDict();
  let err = 0;
  for (const [k, want] of Object.entries(expected)) {
    const got = values(own[k]!);
    want.forEach((w, i) => { err = Math.max(err, Math.abs(got[i]! - w) / Math.max(1, Math.abs(w))); });
  }
  return err;
}

/** Three SGD steps (momentum 0.9) on random data, calling after() after each. */
function trainSteps(model: nn.Module, after: (step: number) => void): void {
  const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  for (let step = 1; step <= 3; step++) {
    tidy(() => {
      const loss = F.crossEntropy(model.forward(randn([4, 1, 28, 28])), randint(0, 10, [4]));
      loss.backward();
      opt.step();
      model.zeroGrad();
    });
    after(step);
  }
}

test('update(model) after each of three SGD steps: ema = d*ema + (1-d)*w for parameters and BN statistics, by hand; num_batches_tracked copied', () => {
  const model = models.resnet20({ inChannels: 1 });
  const d = 0.6;
  const ema = new train.ModelEma(model, { decay: d });
  let expected = snapshot(model);
  trainSteps(model, () => {
    ema.update(model);
    const now = snapshot(model);
    expected = Object.fromEntries(Object.entries(expected).map(([k, e]) => [k, k.endsWith('num_batches_tracked') ? now[k]! : e.map((v, i) => d * v + (1 - d) * now[k]![i]!)]));
  });
  assert.ok(worst(ema.module, expected) < 1e-6, `relative error ${worst(ema.module, expected)}`);
  assert.equal(values(ema.module.stateDict()['bn1.num_batches_tracked']!), [3]);
  // The average really moved: it is neither the start nor the end point.
  const end = snapshot(model);
  assert.ok(worst(ema.module, { 'conv1.weight': end['conv1.weight']! }) > 1e-3);
  ema.dispose();
  model.dispose();
});

test('excludeBuffers: parameters averaged, every buffer (running_mean, running_var) copied from the model', () => {
  const model = models.resnet20({ inChannels: 1 });
  const d = 0.5;
  const ema = new train.ModelEma(model, { decay: d, excludeBuffers: true });
  const start = snapshot(model);
  let now = start;
  trainSteps(model, () => {
    ema.update(model);
    now = snapshot(model);
  });
  assert.ok(worst(ema.module, { 'layer3.2.bn2.running_mean': now['layer3.2.bn2.running_mean']!, 'bn1.running_var': now['bn1.running_var']! }) === 0);
  const params = ema.module.namedParameters().map(([k]) => k);
  assert.ok(params.includes('fc.weight') && !params.includes('bn1.running_mean'));
  assert.ok(worst(ema.module, { 'fc.weight': now['fc.weight']! }) > 1e-4, 'parameters are averaged, not copied');
  model.dispose();
  ema.dispose();
});

test('getDecay(step) is timm\'s: 0 up to updateAfterStep + 1, then 1 - (1 + s/gamma)^-power clamped to [minDecay, decay]', () => {
  const ema = new train.ModelEma(new nn.Linear(2, 2), { decay: 0.99, minDecay: 0.1, updateAfterStep: 2, warmup: true });
  assert.is(ema.getDecay(), 0.99);
  assert.equal([1, 2, 3].map((s) => ema.getDecay(s)), [0, 0, 0]);
  // step 4: s = 4 - 2 - 1 = 1, 1 - 2^(-2/3) = 0.370; step 5: 1 - 3^(-2/3) = 0.519; step 10**6: capped at 0.99.
  assert.ok(Math.abs(ema.getDecay(4) - (1 - 2 ** (-2 / 3))) < 1e-15 && Math.abs(ema.getDecay(4) - 0.37004) < 1e-5);
  assert.ok(Math.abs(ema.getDecay(5) - 0.51925) < 1e-5);
  assert.is(ema.getDecay(1e6), 0.99);
  assert.is(new train.ModelEma(new nn.Linear(2, 2), { warmup: true, warmupPower: 0.1, minDecay: 0.7 }).getDecay(2), 0.7);
  assert.is(new train.ModelEma(new nn.Linear(2, 2), { decay: 0.9 }).getDecay(7), 0.9);
});

test('warm-up with gamma = 1, power = 1 and decay 1 is the running arithmetic mean of the weights (timm\'s docstring)', () => {
  const model = new nn.Linear(3, 2);
  const ema = new train.ModelEma(model, { decay: 1, warmup: true, warmupGamma: 1, warmupPower: 1 });
  const seen: number[][] = [];
  for (let step = 1; step <= 4; step++) {
    noGrad(() => model.weight.copy_(randn([2, 3])));
    seen.push(values(model.weight));
    ema.update(model, step);
  }
  const mean = seen[0]!.map((_, i) => seen.reduce((s, w) => s + w[i]!, 0) / seen.length);
  assert.ok(worst(ema.module, { weight: mean }) < 1e-6);
});

test('the average is an independent, frozen, eval-mode model: forward equals a fresh model loaded with its weights', () => {
  const model = models.resnet20({ inChannels: 1 });
  const ema = new train.ModelEma(model, { decay: 0.9 });
  assert.ok(!ema.training && !ema.module.training && model.training);
  assert.ok(ema.module.parameters().every((p) => !p.requiresGrad));
  assert.equal(Object.keys(ema.stateDict())[0], 'module.conv1.weight');
  noGrad(() => model.stateDict()['conv1.weight']!.fill_(0));
  assert.ok(values(ema.module.stateDict()['conv1.weight']!).some((v) => v !== 0), 'the copy shares no storage with the model');
  ema.set(model);
  assert.ok(values(ema.module.stateDict()['conv1.weight']!).every((v) => v === 0));
  const fresh = models.resnet20({ inChannels: 1 });
  fresh.loadStateDict(ema.module.stateDict());
  const x = randn([2, 1, 28, 28]);
  assert.ok(noGrad(() => ema.forward(x)).equal(noGrad(() => fresh.eval().forward(x))));
  assert.throws(() => ema.update(models.resnet32({ inChannels: 1 })), /does not match the average's \(missing: none; unexpected: layer1\.3\.conv1\.weight/);
  assert.throws(() => new train.ModelEma(model, { decay: 1.5 }), /decay must be in \[0, 1\]/);
  for (const m of [model, fresh, ema]) m.dispose();
  x.dispose();
});

test.run();
