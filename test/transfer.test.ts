// Fine-tuning as recipe fields (issue 17 item 4). Reference: the fine-tuning loop a torchvision user writes
// (Debian's torch 1.13): the same torchvision-made resnet18 file, a new 3-class head with our initial values,
// the frozen modules set to requires_grad=False and eval(), SGD over parameter groups (classifier lr apart,
// no decay on 1-D parameters), two full-batch steps; every tensor's change must match. Then the command line
// on an image folder: --weights DEFAULT from torch's cache, --val-split, --freeze, --head-lr, the class names
// in the checkpoint and printed by predict, and the mistakes that exit 2 (a val/ with other classes among them).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { data, models, train, type Tensor } from '../lib/index.ts';
import { maxAbsDiff, py, root, tmp, visionPython } from './helpers.ts';

const dir = tmp('transfer-');
const toArr = (t: Tensor): number[] => Array.from(t.float().toArray() as Float32Array);

test.before(() => {
  py(`import torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18()
with torch.no_grad():
    for b in m.modules():
        if isinstance(b, torch.nn.BatchNorm2d):
            b.running_mean.normal_(0, 0.1); b.running_var.uniform_(0.5, 2); b.weight.uniform_(0.5, 1.5); b.bias.normal_(0, 0.1)
torch.save(m.state_dict(), '${dir}/r18.pth')
print('{}')`, { python: visionPython });
});

test('stratifiedSplit: each class keeps its share, a class of one stays in train, the seed decides', () => {
  const labels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3];
  const a = data.stratifiedSplit(labels, 0.2, 1);
  assert.equal(a, data.stratifiedSplit(labels, 0.2, 1));
  assert.equal([0, 1, 2, 3].map((c) => a.val.filter((i) => labels[i] === c).length), [1, 1, 2, 0]);
  assert.equal([...a.train, ...a.val].sort((x, y) => x - y), labels.map((_, i) => i));
  const seeds = new Set([1, 2, 3, 4, 5].map((s) => data.stratifiedSplit(labels, 0.2, s).val.join()));
  assert.ok(seeds.size > 1, 'the seed does not change the draw');
  assert.throws(() => data.stratifiedSplit(labels, 1, 0), /fraction must be in \(0, 1\)/);
});

// A toy in-memory set of 8 RGB 32x32 images in 3 classes (augment none: the batch is the data, in any order).
const N = 8;
const toy = (): data.ArrayDataset => {
  const images = new Uint8Array(N * 3 * 32 * 32);
  for (let i = 0; i < images.length; i++) images[i] = (Math.imul(i + 1, 2654435761) >>> 24) & 255;
  return { name: 'toy', images, labels: Uint8Array.from({ length: N }, (_, i) => i % 3), shape: [3, 32, 32], classes: ['a', 'b', 'c'], mean: [0.5, 0.45, 0.4], std: [0.29, 0.28, 0.3] };
};

const recipe = (freeze: train.FreezeSpec | undefined, headLr: number | undefined): train.Recipe => ({
  model: 'resnet18', data: 'toy', epochs: 2, batchSize: N, evalBatchSize: N, optimizer: 'sgd', lr: 0.01, momentum: 0.9, nesterov: false,
  weightDecay: 5e-4, decayNormAndBias: false, schedule: 'constant', warmupEpochs: 0, labelSmoothing: 0, augment: 'none', cropPadding: 0,
  seed: 0, syncBn: false, weights: join(dir, 'r18.pth'), freeze, headLr,
});

test('--freeze backbone / stages:2 / none with --head-lr: two SGD steps change every tensor as the same loop in PyTorch', async () => {
  const ds = toy();
  writeFileSync(join(dir, 'toy.json'), JSON.stringify({ x: Array.from(ds.images), y: Array.from(ds.labels), mean: ds.mean, std: ds.std }));
  for (const [freeze, headLr] of [['backbone', 0.1], ['stages:2', 0.1], [undefined, 0.05]] as const) {
    const t = train.buildTraining(recipe(freeze, headLr), train.arrayData(ds, ds), { device: 'cpu' });
    const before = Object.fromEntries(Object.entries(t.model.stateDict()).map(([k, v]) => [k, toArr(v)]));
    const trainable = t.model.namedParameters().filter(([, p]) => p.requiresGrad).map(([k]) => k);
    writeFileSync(join(dir, 'head.json'), JSON.stringify({ w: before['fc.weight'], b: before['fc.bias'] }));
    const out = join(dir, `run-${freeze ?? 'none'}`);
    await train.fit({ ...t, outDir: out, quiet: true });
    const ref = py<{ trainable: string[] }>(`import json, torch, torchvision
import torch.nn.functional as F
d = json.load(open('${dir}/toy.json')); h = json.load(open('${dir}/head.json'))
m = torchvision.models.resnet18()
m.load_state_dict(torch.load('${dir}/r18.pth'))
m.fc = torch.nn.Linear(512, 3)
with torch.no_grad():
    m.fc.weight.copy_(torch.tensor(h['w']).view(3, 512)); m.fc.bias.copy_(torch.tensor(h['b']))
freeze, head_lr = ${JSON.stringify(freeze ?? 'none')}, ${headLr}
frozen = [n for n, _ in m.named_children() if n != 'fc'] if freeze == 'backbone' else ['conv1', 'bn1', 'layer1', 'layer2'] if freeze == 'stages:2' else []
for n in frozen:
    getattr(m, n).requires_grad_(False)
m.train()
for n in frozen:
    getattr(m, n).eval()
params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
groups = []
for head in (False, True):
    ps = [(n, p) for n, p in params if n.startswith('fc.') == head]
    for decay in (True, False):
        g = [p for n, p in ps if (p.ndim > 1) == decay]
        if g: groups.append({'params': g, 'weight_decay': 5e-4 if decay else 0.0, **({'lr': head_lr} if head else {})})
opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
x = (torch.tensor(d['x'], dtype=torch.float32).view(${N}, 3, 32, 32) / 255 - torch.tensor(d['mean']).view(1, 3, 1, 1)) / torch.tensor(d['std']).view(1, 3, 1, 1)
y = torch.tensor(d['y'])
for _ in range(2):
    opt.zero_grad()
    F.cross_entropy(m(x), y).backward()
    opt.step()
torch.save(m.state_dict(), '${out}/torch.pth')
print(json.dumps({'trainable': [n for n, _ in params]}))`, { python: visionPython });
    assert.equal(trainable, ref.trainable, `${freeze}: trainable parameters`);
    const theirs = models.readStateDict(join(out, 'torch.pth'));
    const ours = t.model.stateDict();
    for (const [k, t0] of Object.entries(before)) {
      if (k.endsWith('num_batches_tracked')) {
        assert.equal(toArr(ours[k]!), toArr(theirs[k]!), `${freeze}: ${k}`);
        continue;
      }
      const dOurs = toArr(ours[k]!).map((v, i) => v - t0[i]!);
      const dTheirs = toArr(theirs[k]!).map((v, i) => v - t0[i]!);
      const scale = dTheirs.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
      if (scale === 0) assert.ok(dOurs.every((v) => v === 0), `${freeze}: ${k} changed but is frozen in PyTorch`);
      else assert.ok(maxAbsDiff(dOurs, dTheirs) <= 2e-3 * scale + 1e-7, `${freeze}: ${k} update differs by ${maxAbsDiff(dOurs, dTheirs)} (scale ${scale})`);
    }
    const info = train.checkpointInfo(join(out, 'checkpoint.safetensors'));
    assert.equal(info, { model: 'resnet18', classes: ['a', 'b', 'c'] });
    t.model.dispose();
  }
});

test('weights that name no classes but have as many as the data keep their classifier, and a line says which row is which class', async () => {
  const lines: string[] = [];
  const file = join(dir, 'run-backbone', 'torch.pth'); // written by PyTorch above: a torchvision resnet18 with a 3-class fc
  const m = await models.create('resnet18', { numClasses: 3 });
  train.loadRecipeWeights({ ...recipe('backbone', 0.1), weights: file }, m, ['a', 'b', 'c'], (l) => lines.push(l));
  assert.equal(toArr(m.stateDict()['fc.weight']!), toArr(models.readStateDict(file)['fc.weight']!));
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /resnet18: loaded .*torch\.pth with its classifier, whose 3 rows name no classes; they are taken to be a, b, c in that order/);
  const fresh: string[] = [];
  train.loadRecipeWeights(recipe('backbone', 0.1), m, ['a', 'b', 'c'], (l) => fresh.push(l));
  assert.equal(fresh.length, 1);
  assert.match(fresh[0]!, /except the classifier fc \(1000 classes in the weights, 3 asked for/);
  m.dispose();
});

const runScript = (script: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', script), ...args], { cwd: root, encoding: 'utf8', timeout: 300_000, env: { ...process.env, ...env } });

test('train --weights DEFAULT --val-split --freeze backbone --head-lr on a folder; predict --weights <checkpoint> prints its class names', async () => {
  const photos = join(dir, 'photos');
  const colours = { cat: [200, 120, 40], dog: [40, 160, 90], emu: [60, 80, 210] } as const;
  for (const [c, rgb] of Object.entries(colours)) {
    mkdirSync(join(photos, c), { recursive: true });
    for (let i = 0; i < 5; i++) {
      const px = Buffer.alloc(40 * 36 * 3);
      for (let j = 0; j < px.length; j++) px[j] = Math.max(0, Math.min(255, rgb[j % 3]! + ((Math.imul(j + 97 * i, 2654435761) >>> 26) - 32)));
      await sharp(px, { raw: { width: 40, height: 36, channels: 3 } }).png().toFile(join(photos, c, `${i}.png`));
    }
  }
  const torchHome = join(dir, 'torch-home');
  mkdirSync(join(torchHome, 'hub', 'checkpoints'), { recursive: true });
  copyFileSync(join(dir, 'r18.pth'), join(torchHome, 'hub', 'checkpoints', 'resnet18-f37072fd.pth'));
  const out = join(dir, 'ft');
  const common = ['--model', 'resnet18', '--weights', 'DEFAULT', '--data', photos, '--epochs', '1', '--batch-size', '4', '--image-size', '32', '--threads', '1', '--workers', '1'];
  const r = runScript('train.ts', [...common, '--val-split', '0.4', '--freeze', 'backbone', '--lr', '0.01', '--head-lr', '0.1', '--out', out], { TORCH_HOME: torchHome });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /\(9 train \/ 6 test images\)/);
  assert.match(r.stderr, /loaded ResNet18_Weights\.IMAGENET1K_V1 except the classifier fc \(1000 classes in the weights, 3 asked for/);
  assert.match(r.stdout, /frozen: backbone, classifier lr 0\.1; 1,539 of 11,178,051 parameters train/);
  const ck = join(out, 'checkpoint.safetensors');
  // V1's preset is resize 256 / crop 224; a 32 crop scales the resize with it.
  assert.equal(train.checkpointInfo(ck), { model: 'resnet18', classes: ['cat', 'dog', 'emu'], transforms: { resize: 37, crop: 32, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } });
  const p = runScript('predict.ts', ['--weights', ck, '--top', '3', '--json', join(photos, 'emu', '0.png')]);
  assert.is(p.status, 0, p.stderr);
  const top = (JSON.parse(p.stdout) as Array<{ top: Array<{ label: string; probability: number }> }>)[0]!.top;
  assert.equal(top.map((g) => g.label).sort(), ['cat', 'dog', 'emu']);
  // eval on a part of the classes (no --model: the checkpoint names its net): folders take the checkpoint's class
  // indices by name, not their place among the two folders, so its top-1 is predict's agreement with the folders.
  const part = join(dir, 'part');
  for (const c of ['dog', 'emu']) cpSync(join(photos, c), join(part, c), { recursive: true });
  const preds = join(dir, 'part.jsonl');
  const e = runScript('eval-imagenet.ts', ['--weights', ck, '--data', part, '--output', join(dir, 'part.json'), '--save-predictions', preds, '--workers', '1']);
  assert.is(e.status, 0, e.stderr);
  assert.match(e.stdout, /2 class folders named by the checkpoint's class names: each is scored as its class/);
  const labelled = readFileSync(preds, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; label: number });
  assert.equal(labelled.map((p) => p.label), labelled.map((p) => ['cat', 'dog', 'emu'].indexOf(p.path.split(/[\\/]/)[0]!)));
  const files = labelled.map((p) => join(part, p.path));
  const byPredict = (JSON.parse(runScript('predict.ts', ['--weights', ck, '--top', '1', '--json', ...files]).stdout) as Array<{ top: Array<{ label: string }> }>)
    .filter((r, i) => r.top[0]!.label === labelled[i]!.path.split(/[\\/]/)[0]).length / files.length;
  assert.is((JSON.parse(readFileSync(join(dir, 'part.json'), 'utf8')) as { top1: number }).top1, byPredict);
  // A truncated checkpoint says why it cannot be read (not that it names no net).
  writeFileSync(join(dir, 'cut.safetensors'), readFileSync(ck).subarray(0, 300_000));
  const cut = runScript('predict.ts', ['--weights', join(dir, 'cut.safetensors'), join(photos, 'emu', '0.png')]);
  assert.is(cut.status, 2, cut.stderr);
  assert.match(cut.stderr, /cannot read .*cut\.safetensors: .*run past the/);
  // Mistakes exit 2 naming the flag.
  const bad = (args: string[], re: RegExp): void => {
    const b = runScript('train.ts', [...common, '--out', join(dir, 'bad'), ...args], { TORCH_HOME: torchHome });
    assert.is(b.status, 2, b.stderr);
    assert.match(b.stderr, re);
  };
  // One class folder (or none) is a --data mistake, not a 100 % classifier.
  const one = join(dir, 'one');
  cpSync(join(photos, 'cat'), join(one, 'cat'), { recursive: true });
  const o1 = runScript('train.ts', ['--model', 'resnet18', '--data', one, '--epochs', '1', '--out', join(dir, 'bad')]);
  assert.is(o1.status, 2, o1.stderr);
  assert.match(o1.stderr, /--data: .*one has 1 class folder \(cat\); a classifier needs at least two/);
  bad(['--freeze', 'stages:5'], /--freeze: stages:5: ResNet has 4 stages \(layer1, layer2, layer3, layer4\)/);
  bad(['--freeze', 'head'], /--freeze: expected none, backbone or stages:N/);
  bad(['--val-split', '1.5'], /--val-split.*expected a fraction between 0 and 1/);
  mkdirSync(join(dir, 'split', 'train', 'cat'), { recursive: true });
  mkdirSync(join(dir, 'split', 'val', 'cat'), { recursive: true });
  const b = runScript('train.ts', ['--model', 'resnet18', '--data', join(dir, 'split'), '--val-split', '0.1', '--out', join(dir, 'bad')]);
  assert.is(b.status, 2, b.stderr);
  assert.match(b.stderr, /--val-split: .*has its own val\/ folder/);
  // A val/ whose class folders differ from train/'s would shift the labels after the difference.
  cpSync(photos, join(dir, 'mismatch', 'train'), { recursive: true });
  for (const c of ['cat', 'emu', 'fox']) mkdirSync(join(dir, 'mismatch', 'val', c), { recursive: true });
  const m = runScript('train.ts', ['--model', 'resnet18', '--data', join(dir, 'mismatch'), '--out', join(dir, 'bad')]);
  assert.is(m.status, 2, m.stderr);
  assert.match(m.stderr, /--data: the class folders of .*val must be those of .*train .*; missing from .*val: dog; not in .*train: fox/);
});

test.run();
