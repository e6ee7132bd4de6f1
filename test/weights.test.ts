// Pretrained weights: the committed table against torchvision 0.14's Weights enums (Debian's python3), and
// models.create(name, { weights }) on torchvision-made files (seeded random init saved with torch.save),
// served over loopback or placed in the torch cache, checked by torchvision's own outputs for those files.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { models, noGrad, tensor, tidy, type Tensor } from '../lib/index.ts';
import { maxAbsDiff, py, root, tmp, visionPython } from './helpers.ts';
import { pythonFileServer, type FileServer } from './hub-servers.ts';

const dir = tmp('weights-');
const serve = join(dir, 'serve');
mkdirSync(serve);
interface Fixture { x: number[]; y: number[]; y10: number[]; denseKeys: string[] }
let fx: Fixture;
let files: FileServer;
let served: string; // resnet18-<sha8>.pth
const quiet = { progress: false, log: false } as const;

const freshCache = (): string => {
  process.env.TORCH_HOME = tmp('torch-home-');
  delete process.env.RESNET_TS_WEIGHTS_URL;
  return join(process.env.TORCH_HOME, 'hub', 'checkpoints');
};
const forward = (m: { eval(): { forward(x: Tensor): Tensor } }): number[] =>
  tidy(() => Array.from(noGrad(() => m.eval().forward(tensor(fx.x, { shape: [1, 3, 64, 64] }))).toArray() as Float32Array));

test.before(async () => {
  fx = py<Fixture>(`import json, re, torch, torchvision
from torchvision.models import densenet
torch.manual_seed(0)
m = torchvision.models.resnet18().eval()
with torch.no_grad():
    for b in m.modules():
        if isinstance(b, torch.nn.BatchNorm2d):
            b.running_mean.normal_(0, 0.1); b.running_var.uniform_(0.5, 2); b.weight.uniform_(0.5, 1.5)
m10 = torchvision.models.resnet18(num_classes=10).eval()
torch.save(m.state_dict(), '${dir}/r18.pth')
torch.save(m10.state_dict(), '${dir}/r18-10.pth')
torch.save(torchvision.models.resnet50().state_dict(), '${dir}/r50.pth')
x = torch.randn(1, 3, 64, 64)
with torch.no_grad():
    y, y10 = m(x), m10(x)
# DenseNet files use the old 'norm.1' keys (and predate num_batches_tracked); torchvision's loader must accept the dict made here.
d = torchvision.models.densenet121()
old = {re.sub(r'(denselayer\\d+\\.(?:norm|relu|conv))([12])\\.', r'\\1.\\2.', k): v for k, v in d.state_dict().items() if 'num_batches' not in k}
class W:
    def get_state_dict(self, progress): return dict(old)
densenet._load_state_dict(d, W(), False)
torch.save({k: torch.zeros(1) for k in old}, '${dir}/dense-keys.pth')
print(json.dumps({'x': x.flatten().tolist(), 'y': y.flatten().tolist(), 'y10': y10.flatten().tolist(), 'denseKeys': [k for k in d.state_dict() if 'num_batches' not in k]}))`, { python: visionPython });
  const bytes = readFileSync(join(dir, 'r18.pth'));
  served = `resnet18-${createHash('sha256').update(bytes).digest('hex').slice(0, 8)}.pth`;
  copyFileSync(join(dir, 'r18.pth'), join(serve, served));
  files = await pythonFileServer(serve);
});
test.after(() => files?.close());

test('the committed table equals torchvision\'s Weights enums for every registry model torchvision has', () => {
  type Ref = { models: Record<string, Array<Omit<models.Weights, 'model'>>>; absent: string[] };
  const out = py<Ref>('import runpy, sys\nsys.argv = ["", "table", *' + JSON.stringify(models.list()) + ']\nrunpy.run_path("' + join(root, 'test/reference/torchvision_weights.py') + '")', { python: visionPython });
  for (const name of models.list()) {
    const expected = (out.models[name] ?? []).map((w) => ({ model: name, ...w }));
    assert.equal(JSON.parse(JSON.stringify(models.weights(name))), expected, name);
  }
  assert.equal(Object.keys(out.models).length + out.absent.length, models.list().length);
  const v2 = models.weights('resnet50').find((w) => w.name === 'IMAGENET1K_V2')!;
  assert.equal([v2.transforms.resize, v2.transforms.crop, v2.categories[0], v2.isDefault], [232, 224, 'tench', true]);
  assert.is(models.weightsForFile('/x/resnet50-11ad3fa6.pth'), v2);
  assert.equal(models.weights('resnet20'), []);
  assert.throws(() => models.weights('resnet19'), /unknown model 'resnet19'/);
});

test('create with { url } (loopback), a file path, and registry names found in the cache: torchvision\'s outputs', async () => {
  const cache = freshCache();
  const fromUrl = await models.create('resnet18', { weights: { url: `${files.url}/${served}` }, ...quiet });
  assert.ok(maxAbsDiff(forward(fromUrl), fx.y) < 1e-4);
  const fromFile = await models.create('resnet18', { weights: join(dir, 'r18.pth') });
  assert.ok(maxAbsDiff(forward(fromFile), fx.y) < 1e-4);
  // The cache already holds a file under torchvision's name (as after a torch download): no request is made.
  mkdirSync(cache, { recursive: true });
  copyFileSync(join(dir, 'r18.pth'), join(cache, 'resnet18-f37072fd.pth'));
  for (const w of ['IMAGENET1K_V1', 'DEFAULT', 'ResNet18_Weights.IMAGENET1K_V1']) {
    const m = await models.create('resnet18', { weights: w });
    assert.ok(maxAbsDiff(forward(m), fx.y) < 1e-4, w);
    m.dispose();
  }
  for (const m of [fromUrl, fromFile]) m.dispose();
});

test('numClasses with 1000-class weights loads all but the classifier and says so in one line; without it the file decides', async () => {
  freshCache();
  const lines: string[] = [];
  const m = await models.create('resnet18', { weights: join(dir, 'r18.pth'), numClasses: 5, log: (l) => lines.push(l) });
  assert.equal(lines, [`resnet18: loaded ${join(dir, 'r18.pth')} except the classifier fc (1000 classes in the weights, 5 asked for: initialised afresh)`]);
  assert.equal(m.stateDict()['fc.weight']!.shape, [5, 512]);
  assert.equal(models.classifier(m)?.[0], 'fc');
  const ref = await models.create('resnet18', { weights: join(dir, 'r18.pth') });
  assert.is(maxAbsDiff(m.stateDict()['layer4.1.bn2.running_var']!.toArray() as Float32Array, ref.stateDict()['layer4.1.bn2.running_var']!.toArray() as Float32Array), 0);
  const ten = await models.create('resnet18', { weights: join(dir, 'r18-10.pth') });
  assert.ok(maxAbsDiff(forward(ten), fx.y10) < 1e-4);
  for (const x of [m, ref, ten]) x.dispose();
});

test('bad weights: unknown names list the published ones; wrong architecture names the keys; CIFAR models have none', async () => {
  const msg = async (f: () => Promise<unknown>): Promise<string> => f().then(() => 'resolved', (e: Error) => e.message);
  assert.match(await msg(() => models.create('resnet50', { weights: 'IMAGENET1K_V3' })), /'IMAGENET1K_V3' are neither a file nor one of its published weights \(IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT\)/);
  assert.match(await msg(() => models.create('resnet34', { weights: join(dir, 'r18.pth') })), /do not match resnet34: .*Missing key\(s\) in state_dict: "layer1\.2\.conv1\.weight"/s);
  assert.match(await msg(() => models.create('resnet20', { weights: 'DEFAULT' })), /it has none/);
  assert.match(await msg(() => models.create('resnet18', { weights: models.weights('resnet50')[0]! })), /weights for resnet50, not resnet18/);
  assert.ok(models.create('resnet18') instanceof models.ResNet); // no weights: synchronous as before
});

test('eval-imagenet and predict take --weights NAME: the cached file, the entry\'s eval preset (232 for V2) and its category names', async () => {
  const cache = freshCache();
  mkdirSync(cache, { recursive: true });
  copyFileSync(join(dir, 'r50.pth'), join(cache, 'resnet50-11ad3fa6.pth'));
  copyFileSync(join(dir, 'r18.pth'), join(cache, 'resnet18-f37072fd.pth'));
  const img = join(dir, 'val', 'n01440764', 'a.png');
  mkdirSync(join(dir, 'val', 'n01440764'), { recursive: true });
  await sharp({ create: { width: 300, height: 260, channels: 3, background: '#4080c0' } }).png().toFile(img);
  const run = (script: string, args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', script), ...args], { cwd: root, encoding: 'utf8', timeout: 180_000, env: { ...process.env } });
  const out = join(dir, 'r50.json');
  const e = run('eval-imagenet.ts', ['--model', 'resnet50', '--weights', 'IMAGENET1K_V2', '--data', join(dir, 'val'), '--output', out, '--workers', '2']);
  assert.is(e.status, 0, String(e.stderr));
  const res = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
  assert.equal([res.resize, res.crop, res.weightsEntry, res.weights, res.images], [232, 224, 'ResNet50_Weights.IMAGENET1K_V2', join(cache, 'resnet50-11ad3fa6.pth'), 1]);
  const p = run('predict.ts', ['--model', 'resnet18', '--weights', 'DEFAULT', '--json', img]);
  assert.is(p.status, 0, String(p.stderr));
  const top = (JSON.parse(String(p.stdout)) as Array<{ top: Array<{ index: number; label: string }> }>)[0]!.top;
  const v1 = models.weights('resnet18')[0]!;
  assert.ok(top.every((g) => g.label === v1.categories[g.index]));
});

test('a local file named like a published one is loaded as it is, not swapped for the cached or downloaded file', async () => {
  const cache = freshCache();
  mkdirSync(cache, { recursive: true });
  copyFileSync(join(dir, 'r18-10.pth'), join(cache, 'resnet18-f37072fd.pth')); // other weights under the published name
  const local = join(dir, 'local');
  mkdirSync(local, { recursive: true });
  copyFileSync(join(dir, 'r18.pth'), join(local, 'resnet18-f37072fd.pth'));
  copyFileSync(join(dir, 'r18.pth'), join(local, 'mine.pth'));
  const img = join(local, 'a.png');
  await sharp({ create: { width: 300, height: 260, channels: 3, background: '#c08040' } }).png().toFile(img);
  const predict = (weights: string): unknown => {
    const p = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'predict.ts'), '--model', 'resnet18', '--weights', weights, '--json', img],
      { cwd: root, encoding: 'utf8', timeout: 180_000, env: { ...process.env } });
    assert.is(p.status, 0, String(p.stderr));
    return (JSON.parse(String(p.stdout)) as Array<{ top: unknown }>)[0]!.top;
  };
  const named = predict(join(local, 'resnet18-f37072fd.pth'));
  assert.equal(named, predict(join(local, 'mine.pth')), 'the published file name changed which weights were loaded');
  assert.not.equal(named, predict(join(cache, 'resnet18-f37072fd.pth')));
});

test('readStateDict renames torchvision\'s old DenseNet keys the way its loader does (checked by loading them in torchvision)', () => {
  const sd = models.readStateDict(join(dir, 'dense-keys.pth'));
  assert.equal(Object.keys(sd).sort(), [...fx.denseKeys].sort());
  for (const t of Object.values(sd)) t.dispose();
});

test.run();
