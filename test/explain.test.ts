// Grad-CAM against PyTorch: torchvision 0.14's resnet18 (seeded random init, BN statistics perturbed so every
// buffer matters) with a forward hook on the same layer and a tensor hook for its gradient, the maps computed
// with torch ops (spatial mean of the gradient, weighted sum, ReLU, bilinear upsampling, min-max), on the same
// weights file and input. Then predict --cam end to end.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { explain, models, tensor, tidy, type Tensor } from '../lib/index.ts';
import { maxAbsDiff, py, root, tmp, visionPython } from './helpers.ts';

const dir = tmp('explain-');
const SHAPE = [2, 3, 96, 96];
interface Ref { x: number[]; cases: Array<{ layer: string; classIndex: number[] | null; used: number[]; raw: number[]; cam: number[] }> }
let ref: Ref;

test.before(() => {
  ref = py<Ref>(`import json, torch, torchvision
import torch.nn.functional as F
torch.manual_seed(0)
m = torchvision.models.resnet18().eval()
with torch.no_grad():
    for b in m.modules():
        if isinstance(b, torch.nn.BatchNorm2d):
            b.running_mean.normal_(0, 0.1); b.running_var.uniform_(0.5, 2); b.weight.uniform_(0.5, 1.5); b.bias.normal_(0, 0.1)
torch.save(m.state_dict(), '${dir}/r18.pth')
x = torch.randn(${SHAPE.join(', ')})
def grad_cam(layer, classes):
    store = {}
    def hook(mod, inp, out):
        store['a'] = out
        out.register_hook(lambda g: store.__setitem__('g', g))
    h = dict(m.named_modules())[layer].register_forward_hook(hook)
    logits = m(x)
    h.remove()
    used = logits.argmax(1) if classes is None else torch.tensor(classes)
    m.zero_grad()
    logits.gather(1, used[:, None]).sum().backward()
    a, g = store['a'].detach(), store['g']
    raw = F.relu((a * g.mean((2, 3), keepdim=True)).sum(1))
    up = F.interpolate(raw[:, None], size=x.shape[2:], mode='bilinear', align_corners=False)[:, 0]
    flat = up.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    cam = (up - lo) / (hi - lo)
    return {'layer': layer, 'classIndex': classes, 'used': used.tolist(), 'raw': raw.flatten().tolist(), 'cam': cam.flatten().tolist()}
cases = [grad_cam('layer4', None), grad_cam('layer3.1', [5, 9])]
print(json.dumps({'x': x.flatten().tolist(), 'cases': cases}))`, { python: visionPython });
});

const flat = (t: Tensor): number[] => Array.from(t.toArray() as Float32Array);

test('gradCam equals PyTorch\'s Grad-CAM (hooks on the same layer) for the top class and for given classes', async () => {
  const m = (await models.create('resnet18', { weights: join(dir, 'r18.pth') })).eval();
  tidy(() => {
    const x = tensor(ref.x, { shape: SHAPE });
    for (const c of ref.cases) {
      const r = explain.gradCam(m, x, { layer: c.layer, classIndex: c.classIndex ?? undefined });
      assert.equal(r.classIndex, c.used);
      assert.equal(r.cam.shape, [2, 96, 96]);
      const scale = Math.max(...c.raw);
      assert.ok(maxAbsDiff(flat(r.raw), c.raw) < 1e-4 * scale, `${c.layer} raw`);
      assert.ok(maxAbsDiff(flat(r.cam), c.cam) < 1e-3, `${c.layer} cam`);
    }
  });
  // Parameters are left as they were: still requiring grad, no gradient accumulated, no hook left behind.
  assert.ok(m.parameters().every((p) => p.requiresGrad && p.grad === null));
  assert.ok(!Object.hasOwn(m.child('layer4'), 'forward'));
  assert.throws(() => explain.gradCam(m, tensor(ref.x, { shape: SHAPE }), { layer: 'layer9' }), /no module 'layer9' in ResNet \(its children: conv1, bn1/);
  assert.throws(() => explain.gradCam(m, tensor(ref.x, { shape: SHAPE }), { layer: 'layer4', classIndex: [1] }), /classIndex must be 2 integers in \[0, 1000\)/);
  m.dispose();
});

test('predict --cam writes the crop the model saw with its heatmap overlaid, for the top class', async () => {
  const img = join(dir, 'cat.jpg');
  const px = Buffer.alloc(120 * 90 * 3);
  for (let j = 0; j < px.length; j++) px[j] = (j * 2654435761) >>> 24;
  await sharp(px, { raw: { width: 120, height: 90, channels: 3 } }).blur(3).jpeg().toFile(img);
  const out = join(dir, 'cam.png');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/predict.ts'), '--model', 'resnet18', '--weights', join(dir, 'r18.pth'),
    '--resize', '72', '--crop', '64', '--cam', out, '--json', img], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout) as Array<{ cam: string; top: Array<{ index: number }> }>;
  assert.is(res[0]!.cam, out);
  const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
  assert.equal([info.width, info.height, info.channels], [64, 64, 3]);
  // Half of each pixel is the jet map: somewhere the map is hot (red over blue) and somewhere cold (blue over red).
  const redMinusBlue = Array.from({ length: 64 * 64 }, (_, p) => data[p * 3]! - data[p * 3 + 2]!);
  assert.ok(Math.max(...redMinusBlue) > 60 && Math.min(...redMinusBlue) < -60, `${Math.max(...redMinusBlue)} ${Math.min(...redMinusBlue)}`);
  // Paths it cannot write as asked are usage errors before any work: not PNG data under another extension, not libvips' output.
  for (const [cam, message] of [[join(dir, 'cam.jpg'), /--cam writes PNG files; give a \.png path/], [join(dir, 'no-such-folder', 'c.png'), /the folder .*no-such-folder does not exist/]] as const) {
    const bad = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/predict.ts'), '--model', 'resnet18', '--weights', join(dir, 'r18.pth'), '--cam', cam, img],
      { cwd: root, encoding: 'utf8', timeout: 120_000 });
    assert.is(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, message);
    assert.not.ok(existsSync(cam));
  }
});

test.run();
