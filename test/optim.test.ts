// Optimizers and schedules against torch.optim 2.13 (the .venv build the addon links) on the same
// parameters and gradients; clipping against torch.nn.utils.clip_grad_norm_.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tensor, noGrad, Tensor, memory } from '../lib/index.ts';
import { SGD, AdamW, LRScheduler, multiStep, cosine, warmup, oneCycle, clipGradNorm, noDecayOnNormAndBias } from '../lib/optim/index.ts';
import { updateSlices } from '../lib/optim/optimizer.ts';
import { py, maxAbsDiff } from './helpers.ts';

// Two parameters (a 2x3 weight, a 3-vector "bias") and a gradient per step from a fixed formula.
const P0 = [[0.5, -1.25, 2, 0.75, -0.3, 1.1], [0.2, -0.4, 0.9]];
const SHAPES = [[2, 3], [3]];
const grads = (steps: number): number[][][] =>
  Array.from({ length: steps }, (_, k) => P0.map((p, j) => p.map((_, i) => Math.sin(1.7 * k + 0.9 * i + 2.3 * j) * (1 + k / 3))));

function runOurs(make: (ps: Tensor[]) => { step(): void }, steps: number, gs = grads(steps)): number[][][] {
  const ps = P0.map((v, j) => tensor(v, { shape: SHAPES[j]! }).requiresGrad_());
  const opt = make(ps);
  const out: number[][][] = [];
  for (const g of gs) {
    ps.forEach((p, j) => (p.grad = tensor(g[j]!, { shape: SHAPES[j]! })));
    opt.step();
    out.push(ps.map((p) => Array.from(p.toArray() as Float32Array)));
  }
  return out;
}

/** Parameters after each step under each torch optimizer constructor (one Python process for all). */
function runTorch(ctors: string[], steps: number, gs = grads(steps)): number[][][][] {
  return py<number[][][][]>(`
import torch, json
P0 = json.loads('${JSON.stringify(P0)}'); shapes = ${JSON.stringify(SHAPES)}
def run(make):
    ps = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_() for v, s in zip(P0, shapes)]
    opt = make(ps)
    out = []
    for g in json.loads('${JSON.stringify(gs)}'):
        for p, gv, s in zip(ps, g, shapes): p.grad = torch.tensor(gv, dtype=torch.float32).reshape(s)
        opt.step()
        out.append([p.detach().flatten().tolist() for p in ps])
    return out
print(json.dumps([${ctors.map((c) => `run(lambda ps: ${c})`).join(', ')}]))`);
}

function close(a: number[][][], b: number[][][], tol: number): void {
  assert.is(a.length, b.length);
  a.forEach((step, k) => step.forEach((p, j) => {
    const d = maxAbsDiff(p, b[k]![j]!);
    assert.ok(d <= tol, `step ${k} param ${j}: max |diff| ${d} > ${tol}`);
  }));
}

const SGD_CASES: [string, Record<string, unknown>, string][] = [
  ['plain', { lr: 0.1 }, 'lr=0.1'],
  ['momentum + weight decay', { lr: 0.05, momentum: 0.9, weightDecay: 1e-2 }, 'lr=0.05, momentum=0.9, weight_decay=1e-2'],
  ['momentum + dampening', { lr: 0.05, momentum: 0.8, dampening: 0.3 }, 'lr=0.05, momentum=0.8, dampening=0.3'],
  ['nesterov + weight decay', { lr: 0.02, momentum: 0.9, nesterov: true, weightDecay: 5e-4 }, 'lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4'],
  ['nesterov, no weight decay', { lr: 0.02, momentum: 0.9, nesterov: true }, 'lr=0.02, momentum=0.9, nesterov=True'],
];

test('SGD (plain, momentum, dampening, nesterov, weight decay) matches torch.optim.SGD(foreach=True) over 6 steps', () => {
  const ref = runTorch(SGD_CASES.map(([, , theirs]) => `torch.optim.SGD(ps, ${theirs}, foreach=True)`), 6);
  SGD_CASES.forEach(([name, ours], i) => {
    const a = runOurs((ps) => new SGD(ps, ours as { lr: number }), 6);
    try {
      close(a, ref[i]!, 1e-6);
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message}`);
    }
  });
});

test('AdamW matches torch.optim.AdamW(foreach=True) over 6 steps', () => {
  const a = runOurs((ps) => new AdamW(ps, { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.05 }), 6);
  const [b] = runTorch(['torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, foreach=True)'], 6);
  close(a, b!, 2e-6);
});

test('CPU updates run in slices of the parameter list: each tensor alone still matches torch, bit for bit the whole-list update', () => {
  const sizes = (ns: number[]): Tensor[] => ns.map((n) => tensor(new Array(n).fill(0), { shape: [n] }));
  assert.equal(updateSlices(sizes([6, 3, 10, 1, 1]), 8), [[0, 1], [1, 2], [2, 3], [3, 5]]);
  assert.equal(updateSlices(sizes([2, 2, 2]), 4), [[0, 2], [2, 3]]);
  assert.equal(updateSlices(sizes([6, 3]), 0), [[0, 2]], '0: the whole list');
  assert.equal(updateSlices([], 8), []);
  const sliced = (fn: () => number[][][]): number[][][] => {
    process.env.RESNET_TS_OPTIM_SLICE = '4'; // P0's 6- and 3-element tensors each alone
    try {
      return fn();
    } finally {
      delete process.env.RESNET_TS_OPTIM_SLICE;
    }
  };
  const makers = [
    ...SGD_CASES.map(([, ours]) => (ps: Tensor[]) => new SGD(ps, ours as { lr: number })),
    (ps: Tensor[]) => new AdamW(ps, { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.05 }),
  ];
  const ref = runTorch([
    ...SGD_CASES.map(([, , theirs]) => `torch.optim.SGD(ps, ${theirs})`),
    'torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)',
  ], 6);
  makers.forEach((make, i) => {
    const a = sliced(() => runOurs(make, 6));
    close(a, ref[i]!, 2e-6);
    process.env.RESNET_TS_OPTIM_SLICE = '0';
    try {
      assert.equal(a, runOurs(make, 6), `case ${i}: sliced equals whole`);
    } finally {
      delete process.env.RESNET_TS_OPTIM_SLICE;
    }
  });
});

test('fused: true matches torch.optim.SGD(fused=True) and AdamW(fused=True) over 6 steps; a gradient laid out unlike its parameter is a clear error', () => {
  const ref = runTorch([
    ...SGD_CASES.map(([, , theirs]) => `torch.optim.SGD(ps, ${theirs}, fused=True)`),
    'torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, fused=True)',
  ], 6);
  const makers = [
    ...SGD_CASES.map(([, ours]) => (ps: Tensor[]) => new SGD(ps, { ...(ours as { lr: number }), fused: true })),
    (ps: Tensor[]) => new AdamW(ps, { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.05, fused: true }),
  ];
  makers.forEach((make, i) => close(runOurs(make, 6), ref[i]!, 0));
  // A well-laid-out parameter first, then one whose gradient is transposed: the step throws before changing either,
  // even with slices of one tensor each.
  const ok = tensor([1, 2, 3], { shape: [3] }).requiresGrad_();
  ok.grad = tensor([1, 1, 1], { shape: [3] });
  const w = tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3] }).requiresGrad_();
  w.grad = tensor([1, 2, 3, 4, 5, 6], { shape: [3, 2] }).transpose(0, 1);
  process.env.RESNET_TS_OPTIM_SLICE = '1';
  try {
    assert.throws(() => new SGD([ok, w], { lr: 0.1, momentum: 0.9, fused: true }).step(), /fusedSgd_: tensor 1 is not laid out as its parameter/);
  } finally {
    delete process.env.RESNET_TS_OPTIM_SLICE;
  }
  assert.equal(Array.from(ok.toArray() as Float32Array), [1, 2, 3], 'nothing was updated');
  assert.equal(Array.from(w.toArray() as Float32Array), [1, 2, 3, 4, 5, 6], 'nothing was updated');
});

test('groups without weight decay on 1-D params match torch param groups', () => {
  const a = runOurs((ps) => new SGD(noDecayOnNormAndBias([['w', ps[0]!], ['b', ps[1]!]], 0.1), { lr: 0.05, momentum: 0.9, weightDecay: 0.1 }), 4);
  const [b] = runTorch(["torch.optim.SGD([{'params': [ps[0]], 'weight_decay': 0.1}, {'params': [ps[1]], 'weight_decay': 0}], lr=0.05, momentum=0.9)"], 4);
  close(a, b!, 1e-6);
});

test('SGD and AdamW state saves and loads: 3 + 3 steps equal 6 uninterrupted (bit-exact)', () => {
  for (const make of [(ps: Tensor[]) => new SGD(ps, { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 }), (ps: Tensor[]) => new AdamW(ps, { lr: 0.01 })]) {
    const gs = grads(6);
    const whole = runOurs(make, 6, gs);
    const ps = P0.map((v, j) => tensor(v, { shape: SHAPES[j]! }).requiresGrad_());
    const first = make(ps);
    const stepWith = (opt: { step(): void }, g: number[][]): void => {
      ps.forEach((p, j) => (p.grad = tensor(g[j]!, { shape: SHAPES[j]! })));
      opt.step();
    };
    gs.slice(0, 3).forEach((g) => stepWith(first, g));
    const saved = first.stateDict();
    const second = make(ps);
    second.loadStateDict({ tensors: Object.fromEntries(Object.entries(saved.tensors).map(([k, t]) => [k, t.clone()])), meta: JSON.parse(JSON.stringify(saved.meta)) });
    gs.slice(3).forEach((g) => stepWith(second, g));
    ps.forEach((p, j) => assert.equal(Array.from(p.toArray() as Float32Array), whole[5]![j], `param ${j}`));
  }
});

test('loading optimizer state of another shape or kind is a clear error', () => {
  const ps = P0.map((v, j) => tensor(v, { shape: SHAPES[j]! }).requiresGrad_());
  const sgd = new SGD(ps, { lr: 0.1, momentum: 0.9 });
  const bad = { tensors: { '0.momentum_buffer': tensor([1, 2]) }, meta: sgd.stateDict().meta };
  assert.throws(() => sgd.loadStateDict(bad), /shape \[2\] but the parameter has \[2,3\]/);
  assert.throws(() => sgd.loadStateDict({ tensors: {}, meta: { ...sgd.stateDict().meta, kind: 'AdamW' } }), /AdamW, not SGD/);
  assert.throws(() => new SGD(ps, { lr: -1 }), /lr must be >= 0/);
  assert.throws(() => new SGD(ps, { lr: 0.1, nesterov: true }), /nesterov needs momentum/);
});

test('an SGD step allocates nothing that outlives it', () => {
  const ps = P0.map((v, j) => tensor(v, { shape: SHAPES[j]! }).requiresGrad_());
  const opt = new SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true });
  const g = grads(1)[0]!;
  const once = (): void => {
    ps.forEach((p, j) => {
      const t = tensor(g[j]!, { shape: SHAPES[j]! });
      p.grad = t;
      t.dispose(); // the parameter holds its own reference
    });
    opt.step();
    opt.zeroGrad();
  };
  once();
  const before = memory().tensors;
  for (let i = 0; i < 20; i++) once();
  assert.is(memory().tensors, before);
});

// Each schedule's lr per step against torch.optim.lr_scheduler driving a dummy SGD.
function torchLrs(scheds: string[], steps: number): { lr: number[]; momentum: number[] }[] {
  return py(`
import torch, json
from torch.optim import lr_scheduler as L
def run(make):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    s = make(opt)
    lr, mom = [], []
    for _ in range(${steps}):
        lr.append(opt.param_groups[0]['lr']); mom.append(opt.param_groups[0]['momentum'])
        opt.step(); s.step()
    return {'lr': lr, 'momentum': mom}
print(json.dumps([${scheds.map((c) => `run(lambda opt: ${c})`).join(', ')}]))`);
}

function ourLrs(fn: ConstructorParameters<typeof LRScheduler>[1], steps: number, mom?: (s: number) => number): { lr: number[]; momentum: number[] } {
  const p = tensor([0]).requiresGrad_();
  const opt = new SGD([p], { lr: 0.1, momentum: 0.9 });
  const s = new LRScheduler(opt, fn, mom);
  const lr: number[] = [];
  const momentum: number[] = [];
  for (let i = 0; i < steps; i++) {
    lr.push(opt.groups[0]!.lr);
    momentum.push(opt.groups[0]!.momentum);
    s.step();
  }
  return { lr, momentum };
}

test('multi-step, cosine, warm-up + cosine and one-cycle match torch.optim.lr_scheduler', () => {
  const cases: [string, ConstructorParameters<typeof LRScheduler>[1], string, ((s: number) => number)?][] = [
    ['multistep', multiStep([7, 15], 0.1), 'L.MultiStepLR(opt, milestones=[7, 15], gamma=0.1)'],
    ['cosine', cosine(20, 0.001), 'L.CosineAnnealingLR(opt, T_max=20, eta_min=0.001)'],
    ['warmup+cosine', warmup(5, cosine(15), 0.1), 'L.SequentialLR(opt, [L.LinearLR(opt, start_factor=0.1, total_iters=5), L.CosineAnnealingLR(opt, T_max=15)], milestones=[5])'],
  ];
  const one = oneCycle(20, { pctStart: 0.25 });
  cases.push(['onecycle', one.lr, 'L.OneCycleLR(opt, max_lr=0.1, total_steps=20, pct_start=0.25)', one.momentum]);
  const ref = torchLrs(cases.map((c) => c[2]), 20);
  for (const [i, [name, fn, , mom]] of cases.entries()) {
    const a = ourLrs(fn, 20, mom);
    const b = ref[i]!;
    assert.ok(maxAbsDiff(a.lr, b.lr) < 1e-12, `${name} lr: ${a.lr} vs ${b.lr}`);
    if (mom) assert.ok(maxAbsDiff(a.momentum, b.momentum) < 1e-12, `${name} momentum: ${a.momentum} vs ${b.momentum}`);
  }
});

test('scheduler state restores the lr at its step', () => {
  const p = tensor([0]).requiresGrad_();
  const opt = new SGD([p], { lr: 0.1 });
  const s = new LRScheduler(opt, cosine(10));
  for (let i = 0; i < 4; i++) s.step();
  const opt2 = new SGD([p], { lr: 0.1 });
  const s2 = new LRScheduler(opt2, cosine(10));
  s2.loadStateDict(s.stateDict());
  assert.is(opt2.groups[0]!.lr, opt.groups[0]!.lr);
  assert.throws(() => s2.loadStateDict({ steps: -1 }), /non-negative integer/);
});

test('clipGradNorm matches torch.nn.utils.clip_grad_norm_', () => {
  const g = grads(1)[0]!;
  const ps = P0.map((v, j) => tensor(v, { shape: SHAPES[j]! }).requiresGrad_());
  ps.forEach((p, j) => (p.grad = tensor(g[j]!, { shape: SHAPES[j]! })));
  const norm = clipGradNorm(ps, 0.5);
  const ours = ps.map((p) => Array.from(p.grad!.toArray() as Float32Array));
  const ref = py<{ norm: number; grads: number[][] }>(`
import torch, json
g = json.loads('${JSON.stringify(g)}'); shapes = ${JSON.stringify(SHAPES)}
ps = [torch.zeros(s, requires_grad=True) for s in shapes]
for p, gv, s in zip(ps, g, shapes): p.grad = torch.tensor(gv).reshape(s)
n = torch.nn.utils.clip_grad_norm_(ps, 0.5)
print(json.dumps({'norm': n.item(), 'grads': [p.grad.flatten().tolist() for p in ps]}))`);
  assert.ok(Math.abs(norm - ref.norm) < 1e-5, `${norm} vs ${ref.norm}`);
  ours.forEach((o, j) => assert.ok(maxAbsDiff(o, ref.grads[j]!) < 1e-6));
  noGrad(() => undefined);
});

test.run();
