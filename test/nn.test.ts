// nn: Module registration, state dicts, modes, memory, init, and the layers against torch.nn (the .venv's
// torch 2.13 run in a separate process with the same weights and input) or hand-computed values.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nn, tensor, randn, zeros, tidy, memory, noGrad, cuda, Tensor } from '../lib/index.ts';
import { py, maxAbsDiff } from './helpers.ts';

const flat = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
const json = (t: Tensor): string => JSON.stringify({ shape: t.shape, v: flat(t) });
const PY_T = `import json, torch
def T(s):
    d = json.loads(s); return torch.tensor(d['v'], dtype=torch.float32).reshape(d['shape'])
def out(*ts):
    print(json.dumps([t.detach().reshape(-1).tolist() for t in ts]))
`;

class Net extends nn.Module {
  readonly features: nn.Sequential;
  readonly fc: nn.Linear;
  constructor() {
    super();
    this.features = this.registerModule('features', new nn.Sequential(new nn.Conv2d(2, 4, 3, { padding: 1, bias: false }), new nn.BatchNorm2d(4), new nn.ReLU(true)));
    this.fc = this.registerModule('fc', new nn.Linear(4, 3));
  }
  forward(x: Tensor): Tensor {
    const f = this.features.forward(x);
    const p = f.mean([2, 3]);
    f.dispose();
    const y = this.fc.forward(p);
    p.dispose();
    return y;
  }
}

test('state-dict keys, order and shapes equal torch.nn for the same module tree (torch 2.13)', () => {
  const ours = Object.entries(new Net().stateDict()).map(([k, t]) => [k, t.shape]);
  const ref = py<[string, number[]][]>(`import json, torch.nn as nn
m = nn.Module(); m.features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(True)); m.fc = nn.Linear(4, 3)
print(json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]))`);
  assert.equal(ours, ref);
  const m = new Net();
  assert.equal(m.namedParameters().map(([k]) => k), ['features.0.weight', 'features.1.weight', 'features.1.bias', 'fc.weight', 'fc.bias']);
  assert.equal(m.namedBuffers().map(([k]) => k), ['features.1.running_mean', 'features.1.running_var', 'features.1.num_batches_tracked']);
  assert.equal(m.namedModules().map(([k]) => k), ['', 'features', 'features.0', 'features.1', 'features.2', 'fc']);
  assert.is(m.numParameters(), 2 * 4 * 9 + 4 + 4 + 4 * 3 + 3);
  assert.ok(m.parameters().every((p) => p.requiresGrad));
  assert.is(m.buffers().find((b) => b.shape.length === 0)!.dtype, 'int64');
});

test('Conv2d (groups, stride, dilation, bias), Linear and eval BatchNorm2d match torch.nn.functional', () => {
  const conv = new nn.Conv2d(4, 6, 3, { stride: 2, padding: 2, dilation: 2, groups: 2 });
  const lin = new nn.Linear(5, 3);
  const bn = new nn.BatchNorm2d(6).eval();
  noGrad(() => [bn.runningMean.copy_(randn([6])), bn.runningVar.copy_(randn([6]).abs().add(0.5)), bn.weight.copy_(randn([6])), bn.bias.copy_(randn([6]))]);
  const x = randn([2, 4, 7, 7]);
  const v = randn([2, 5]);
  const y = noGrad(() => bn.forward(conv.forward(x)));
  const z = noGrad(() => lin.forward(v));
  const [ry, rz] = py<number[][]>(`${PY_T}
import torch.nn.functional as F
c = F.conv2d(T('${json(x)}'), T('${json(conv.weight)}'), T('${json(conv.bias!)}'), stride=2, padding=2, dilation=2, groups=2)
y = F.batch_norm(c, T('${json(bn.runningMean)}'), T('${json(bn.runningVar)}'), T('${json(bn.weight)}'), T('${json(bn.bias)}'), False)
out(y, F.linear(T('${json(v)}'), T('${json(lin.weight)}'), T('${json(lin.bias!)}')))`);
  assert.equal(y.shape, [2, 6, 4, 4]); // (7 + 2*2 - 2*(3-1) - 1) / 2 + 1
  assert.ok(maxAbsDiff(flat(y), ry!) < 1e-5, `conv+bn ${maxAbsDiff(flat(y), ry!)}`);
  assert.ok(maxAbsDiff(flat(z), rz!) < 1e-6);
});

test('BatchNorm2d in train mode normalises by batch statistics and updates running stats and num_batches_tracked like torch', () => {
  const bn = new nn.BatchNorm2d(3, { momentum: 0.2 });
  const x = randn([4, 3, 5, 5]).mul(3).add(1);
  bn.forward(x);
  const y = bn.forward(x);
  const r = py<number[][]>(`${PY_T}
bn = torch.nn.BatchNorm2d(3, momentum=0.2); x = T('${json(x)}')
bn(x); y = bn(x)
out(y, bn.running_mean, bn.running_var, bn.num_batches_tracked)`);
  assert.ok(maxAbsDiff(flat(y), r[0]!) < 1e-5);
  assert.ok(maxAbsDiff(flat(bn.runningMean), r[1]!) < 1e-5);
  assert.ok(maxAbsDiff(flat(bn.runningVar), r[2]!) < 1e-4);
  assert.is(bn.numBatchesTracked.dtype, 'int64');
  assert.equal(flat(bn.numBatchesTracked), r[3]);
  bn.eval().forward(x);
  assert.equal(flat(bn.numBatchesTracked), [2], 'eval mode leaves the count alone');
});

test('stateDict/loadStateDict round-trip copies values into the existing tensors', () => {
  const a = new Net();
  const b = new Net();
  const before = b.parameters();
  b.loadStateDict(a.stateDict());
  for (const [k, t] of Object.entries(a.stateDict())) assert.equal(flat(b.stateDict()[k]!), flat(t), k);
  assert.ok(b.parameters().every((p, i) => p === before[i]), 'parameter identity is kept (optimizers stay valid)');
});

test('loadStateDict names missing keys, unexpected keys and shape mismatches; accepts a missing num_batches_tracked', () => {
  const m = new Net();
  const sd = { ...new Net().stateDict() };
  delete sd['features.1.num_batches_tracked'];
  m.loadStateDict(sd);
  const missing = { ...sd };
  delete missing['fc.bias'];
  assert.throws(() => m.loadStateDict(missing), (e: Error) => /Missing key\(s\) in state_dict: "fc\.bias"/.test(e.message));
  assert.throws(() => m.loadStateDict({ ...sd, 'fc.extra': zeros([1]) }), (e: Error) => /Unexpected key\(s\) in state_dict: "fc\.extra"/.test(e.message));
  assert.throws(
    () => m.loadStateDict({ ...sd, 'fc.weight': zeros([5, 4]) }),
    (e: Error) => e.message.includes('size mismatch for fc.weight: copying a param with shape [5, 4] from checkpoint, the shape in current model is [3, 4]'),
  );
  assert.throws(() => m.loadStateDict({ ...sd, 'fc.weight': 3 as unknown as Tensor }), /'fc\.weight' is not a Tensor/);
  const r = m.loadStateDict({ ...missing, extra: zeros([1]) }, { strict: false });
  assert.equal(r, { missingKeys: ['fc.bias'], unexpectedKeys: ['extra'], mismatchedKeys: [] });
});

test('parameters created inside tidy survive it; a training step inside tidy returns memory().tensors to its baseline', () => {
  const m = tidy(() => new Net());
  assert.ok(m.parameters().every((p) => !p.isDisposed));
  const x = randn([2, 2, 6, 6]);
  const base = memory().tensors;
  for (let i = 0; i < 3; i++) {
    tidy(() => {
      m.zeroGrad();
      m.forward(x).sum().backward();
    });
  }
  assert.is(memory().tensors, base);
  const y = noGrad(() => m.forward(x));
  assert.is(memory().tensors, base + 1, 'a forward outside tidy leaves only its output');
  y.dispose();
  assert.ok(m.parameters()[0]!.grad !== null);
  m.zeroGrad();
  assert.ok(m.parameters().every((p) => p.grad === null));
});

test('train()/eval() reach every module; apply visits children before the parent; BatchNorm parameters are found by module', () => {
  const m = new Net().eval();
  assert.ok(m.modules().every((x) => !x.training));
  m.train();
  assert.ok(m.modules().every((x) => x.training));
  const seen: string[] = [];
  m.apply((x) => seen.push(x.constructor.name));
  assert.equal(seen, ['Conv2d', 'BatchNorm2d', 'ReLU', 'Sequential', 'Linear', 'Net']);
  const bn = new Set(m.modules().filter((x) => x instanceof nn.BatchNorm2d).flatMap((x) => x.parameters()));
  assert.equal(m.namedParameters().filter(([, t]) => bn.has(t)).map(([k]) => k), ['features.1.weight', 'features.1.bias']);
});

test('to(dtype) casts floating parameters and buffers only; to(device) errors clearly without CUDA', () => {
  const m = new Net().to('float64');
  assert.ok(m.parameters().every((p) => p.dtype === 'float64' && p.requiresGrad && p.isLeaf));
  assert.is(m.stateDict()['features.1.num_batches_tracked']!.dtype, 'int64');
  assert.is(m.forward(randn([1, 2, 4, 4], { dtype: 'float64' })).dtype, 'float64');
  assert.throws(() => m.to('tpu' as 'cpu'), /device must be/);
  const x = randn([1, 2, 4, 4]);
  const c = new Net().eval();
  const before = flat(noGrad(() => c.forward(x)));
  c.toChannelsLast();
  assert.ok(c.features.at<nn.Conv2d>(0).weight.isChannelsLast && c.parameters().every((p) => p.requiresGrad));
  assert.ok(maxAbsDiff(flat(noGrad(() => c.forward(x))), before) < 1e-6, 'same function after toChannelsLast');
  if (cuda.isAvailable()) {
    m.to('cuda');
    assert.ok(m.parameters().every((p) => p.device.startsWith('cuda')));
  } else {
    assert.throws(() => m.to('cuda'), Error);
  }
});

test('init: convs get kaiming-normal std sqrt(2/fan_out); Linear bound 1/sqrt(fan_in) (formulas of torch.nn.init)', () => {
  const w = zeros([256, 64, 3, 3]);
  nn.init.kaimingNormal_(w, { mode: 'fanOut' });
  const std = w.std().item();
  assert.ok(Math.abs(std - Math.sqrt(2 / (256 * 9))) / Math.sqrt(2 / (256 * 9)) < 0.01, `std ${std}`);
  const lin = new nn.Linear(400, 50);
  const bound = 1 / Math.sqrt(400);
  const mx = lin.weight.abs().max().item();
  assert.ok(mx <= bound && mx > 0.99 * bound, `max |w| ${mx} vs bound ${bound}`);
  assert.ok(lin.bias!.abs().max().item() <= bound);
});

test('Sequential, pooling, Flatten and Identity compose like torch (hand-computed 4x4 example)', () => {
  const x = tensor([...Array(16).keys()], { shape: [1, 1, 4, 4] });
  const seq = new nn.Sequential(new nn.MaxPool2d(2), new nn.Flatten(), new nn.Identity());
  assert.equal(flat(seq.forward(x)), [5, 7, 13, 15]);
  assert.equal(flat(new nn.AvgPool2d(2).forward(x)), [2.5, 4.5, 10.5, 12.5]);
  assert.equal(flat(new nn.AdaptiveAvgPool2d(1).forward(x)), [7.5]);
  assert.is(seq.length, 3);
  assert.ok(seq.at(0) instanceof nn.MaxPool2d);
  assert.throws(() => new nn.Conv2d(3, 4, 3, { groups: 2 }), /divisible by groups/);
  assert.throws(() => seq.child('nope'), /no child module 'nope'/);
});

test('BatchNorm2d in training refuses one value per channel, as torch does (its running variance would turn NaN); eval takes it', () => tidy(() => {
  const bn = new nn.BatchNorm2d(4);
  assert.throws(() => bn.forward(randn([1, 4, 1, 1])), /expected more than 1 value per channel when training, got input of shape \[1, 4, 1, 1\]/);
  assert.ok(bn.forward(randn([2, 4, 1, 1])).isfinite().float().min().item() === 1);
  bn.eval();
  assert.equal(bn.forward(randn([1, 4, 1, 1])).shape, [1, 4, 1, 1]);
  assert.ok(bn.runningVar.isfinite().float().min().item() === 1, 'the refused call left the running variance as it was');
}));

test.run();
