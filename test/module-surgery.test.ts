// Module surgery: assigning children, setChild, requiresGrad_/freeze/unfreeze, forward hooks and the
// non-strict shape report of loadStateDict. Reference: torchvision 0.14 (Debian's python3) doing the same
// surgery on the same model (keys, shapes, repr), and torch's rules where they are plain facts (no gradient
// for parameters that do not require it, eval-mode BatchNorm leaves its statistics alone).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { models, nn, optim, randn, tidy, zeros, Tensor } from '../lib/index.ts';
import { py, visionPython } from './helpers.ts';

const shapes = (m: nn.Module): Array<[string, number[]]> => Object.entries(m.stateDict()).map(([k, t]) => [k, t.shape]);

test('m.fc = new nn.Linear(512, 5) registers the head: keys, shapes and repr equal torchvision after the same assignment', () => {
  const m = models.resnet18();
  const old = m.fc;
  m.fc = new nn.Linear(512, 5);
  m.head2 = new nn.Linear(5, 2); // a new name becomes a new child, as torch's __setattr__
  const ref = py<{ keys: Array<[string, number[]]>; fc: string }>(`
import json, torch, torchvision
m = torchvision.models.resnet18()
m.fc = torch.nn.Linear(512, 5)
m.head2 = torch.nn.Linear(5, 2)
print(json.dumps({'keys': [[k, list(v.shape)] for k, v in m.state_dict().items()], 'fc': repr(m.fc)}))`, { python: visionPython });
  assert.equal(shapes(m), ref.keys);
  assert.ok(m.toString().includes(`(fc): ${ref.fc}`), m.toString().slice(-300));
  assert.ok(m.parameters().includes(m.fc.weight) && !m.parameters().includes(old.weight));
  assert.is(m.child('fc'), m.fc);
  m.eval();
  assert.is(m.fc.training, false);
  m.to('float64');
  assert.is(m.fc.weight.dtype, 'float64');
  old.dispose();
  m.dispose();
});

declare module '../lib/models/resnet.ts' {
  interface ResNet { head2?: nn.Linear }
}

test('an optimizer over parameters() trains the new head; the old one is gone from the state dict', () => tidy(() => {
  const m = models.resnet18({ numClasses: 10 }).eval();
  m.fc = new nn.Linear(512, 3);
  const before = Array.from(m.fc.weight.toArray() as Float32Array);
  const opt = new optim.SGD(m.parameters(), { lr: 0.5 });
  const out = m.forward(randn([2, 3, 32, 32]));
  const loss = out.mul(out).mean();
  loss.backward();
  opt.step();
  const after = m.fc.weight.toArray() as Float32Array;
  assert.ok(before.some((v, i) => v !== after[i]), 'the new fc moved');
  assert.equal(m.stateDict()['fc.weight']!.shape, [3, 512]);
  m.dispose();
}));

test('writing a non-Module over a child throws; setChild replaces in place; an alias property replaces its child', () => {
  const m = models.resnet20();
  assert.throws(() => { (m as unknown as { fc: null }).fc = null; }, /fc is a child module; assign a Module/);
  const keys = Object.keys(m.stateDict());
  const lin = new nn.Linear(64, 4);
  const prev = m.setChild('fc', lin);
  assert.ok(prev instanceof nn.Linear && prev !== lin && m.fc === lin);
  assert.equal(Object.keys(m.stateDict()), keys); // same place in the order
  const p = models.preact_resnet110();
  p.finalBn = new nn.BatchNorm2d(64, { eps: 1e-3 }); // the property of the child registered as 'final_bn'
  assert.is((p.child('final_bn') as nn.BatchNorm2d).eps, 1e-3);
  assert.ok(!Object.keys(p.stateDict()).some((k) => k.startsWith('finalBn')));
  assert.throws(() => m.layer1.setChild('loop', m), /would contain the module itself/);
  const s = new nn.Sequential(new nn.ReLU());
  s.setChild('1', new nn.Identity());
  assert.is(s.length, 2);
  for (const x of [m, p, prev!, s]) x.dispose();
});

test('freeze() the model, unfreeze() the head: only the head gets gradients; frozen BatchNorm stays in eval mode under train()', () => tidy(() => {
  const m = models.resnet18({ numClasses: 4 });
  m.freeze();
  m.fc.unfreeze();
  m.train();
  assert.is(m.numParameters({ trainableOnly: true }), 512 * 4 + 4);
  assert.is(m.bn1.training, false);
  assert.ok(m.frozen && !m.fc.frozen && m.fc.training);
  const mean = Array.from(m.bn1.runningMean.toArray() as Float32Array);
  m.forward(randn([2, 3, 32, 32])).sum().backward();
  assert.equal(Array.from(m.bn1.runningMean.toArray() as Float32Array), mean);
  assert.is(m.conv1.weight.grad, null);
  assert.ok(m.fc.weight.grad !== null);
  m.unfreeze();
  assert.ok(m.bn1.training && m.conv1.weight.requiresGrad);
  m.eval().unfreeze();
  assert.is(m.bn1.training, false); // unfreeze gives back the mode last asked for
  m.requiresGrad_(false);
  assert.is(m.numParameters({ trainableOnly: true }), 0);
  m.dispose();
}));

test('forward hooks see input and output, may replace the output, and remove() restores forward', () => tidy(() => {
  const lin = new nn.Linear(2, 2);
  const seen: Tensor[] = [];
  const h1 = lin.registerForwardHook((mod, x, y) => { seen.push(x, y); assert.is(mod, lin); });
  const h2 = lin.registerForwardHook((_m, _x, y) => y.mul(0));
  const x = randn([3, 2]);
  const y = new nn.Sequential(lin).forward(x);
  assert.is(seen[0], x);
  assert.equal(Array.from(y.toArray() as Float32Array), [0, 0, 0, 0, 0, 0]);
  h2.remove();
  assert.ok((lin.forward(x).toArray() as Float32Array).some((v) => v !== 0));
  const bad = lin.registerForwardHook(() => 1 as unknown as Tensor);
  assert.throws(() => lin.forward(x), /forward hook of Linear returned number; return a Tensor or nothing/);
  bad.remove();
  h1.remove();
  assert.ok(!Object.hasOwn(lin, 'forward'));
  lin.dispose();
}));

test('non-strict loadStateDict copies what fits and reports shape mismatches by key', () => tidy(() => {
  const m = models.resnet18({ numClasses: 5 });
  const src = models.resnet18();
  const r = m.loadStateDict(src.stateDict(), { strict: false });
  assert.equal(r, {
    missingKeys: [], unexpectedKeys: [],
    mismatchedKeys: [{ key: 'fc.weight', checkpointShape: [1000, 512], modelShape: [5, 512] }, { key: 'fc.bias', checkpointShape: [1000], modelShape: [5] }],
  });
  assert.equal(Array.from(m.conv1.weight.toArray() as Float32Array).slice(0, 5), Array.from(src.conv1.weight.toArray() as Float32Array).slice(0, 5));
  assert.throws(() => m.loadStateDict({ ...src.stateDict(), 'fc.bias': zeros([5]) }), /size mismatch for fc\.weight: .*\[1000, 512\]/);
  m.dispose();
  src.dispose();
}));

test.run();
