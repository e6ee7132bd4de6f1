// The published package, the way a user meets it: `npm pack`, then `npm install <tarball>` in a fresh
// `npm init -y` app in a temp folder (LIBTORCH pointing at the libtorch this suite uses), then
//   (a) node app.mjs (ESM) classifies an image with a torchvision-made .pth, from another working directory,
//   (b) node app.cjs (require) gets the same classes,
//   (c) tsc --noEmit on CommonJS and ESM files under `tsc --init`'s strict defaults without skipLibCheck
//       and without @types/node,
//   (d) npx resnet-ts predict: top-5 equal to torchvision's (Debian's /usr/bin/python3), and --help fast,
//   (e) a second app installed with no libtorch anywhere: npm install succeeds and the import throws one
//       error naming `npx resnet-ts setup`; RESNET_TS_ADDON then points it at a built addon.
// The tarball's file list is asserted. The consumer's addon comes from the content-addressed build cache
// when this checkout's build has the same key (sources, libtorch, Node ABI), so the install compiles nothing.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { py, root, tmp, visionPython } from './helpers.ts';

const dir = tmp('resnet-ts-package-');
const libtorch = (JSON.parse(execFileSync(process.execPath, [join(root, 'scripts/libtorch.mjs'), '--json'], { encoding: 'utf8' })) as { prefix: string }).prefix;
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const nodeBin = dirname(process.execPath);

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout = 600_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  return r;
}
function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const lastJson = <T>(s: string): T => JSON.parse(s.trim().split('\n').pop()!) as T;

interface Pack { filename: string; size: number; unpackedSize: number; entryCount: number; files: Array<{ path: string }> }
let pack: Pack;
let tarball: string;

test('npm pack: the tarball holds dist, the addon sources and the install scripts, and no tests, docs or Python but the bench\'s', () => {
  const out = ok(sh('npm', ['pack', '--json', '--pack-destination', dir], root), 'npm pack');
  pack = (JSON.parse(out.slice(out.indexOf('[\n'))) as Pack[])[0]!;
  tarball = join(dir, pack.filename);
  const files = pack.files.map((f) => f.path);
  for (const f of ['package.json', 'README.md', 'LICENSE', 'binding.gyp', 'cpp/addon.cc', 'cpp/cuda.cc', 'cpp/tensor.h', 'dist/lib/index.js',
    'dist/lib/index.d.ts', 'dist/lib/index.d.ts.map', 'dist/lib/native.js', 'dist/scripts/resnet-ts.js', 'dist/scripts/predict.js',
    'dist/scripts/setup.js', 'dist/scripts/doctor.js', 'dist/scripts/serve.js', 'dist/scripts/bench-serve.js', 'dist/scripts/bench_torch.py',
    'dist/lib/inference/index.js', 'dist/lib/serve/index.d.ts', 'dist/lib/explain/index.js', 'dist/lib/hub/index.js', 'dist/lib/train/recipe.d.ts',
    'scripts/build-addon.mjs', 'scripts/libtorch.mjs', 'scripts/torch-env.mjs', 'lib/index.ts']) {
    assert.ok(files.includes(f), `${f} missing from the tarball`);
  }
  // The only Python: the PyTorch and oracle sides that `resnet-ts bench` runs beside itself.
  const bad = files.filter((f) => /^(test|docs|\.ci|build|node_modules|runs)\/|\.(py|png|tgz|log)$|^dist\/scripts\/.*\.d\.ts$|^scripts\/.*\.(ts|sh)$/.test(f) &&
    !/^dist\/scripts\/bench_(torch|onnx_export)\.py$/.test(f));
  assert.equal(bad, [], `unexpected files in the tarball: ${bad.join(', ')}`);
  console.log(`  tarball ${pack.filename}: ${(pack.size / 1024).toFixed(0)} KiB, ${pack.entryCount} files (${(pack.unpackedSize / 1024).toFixed(0)} KiB unpacked)`);
});

const app = join(dir, 'app');
const pth = join(dir, 'resnet18-torchvision.pth');
const image = join(dir, 'image.png');
let reference: number[];

test('a fresh npm init -y app installs the tarball (LIBTORCH set) and gets a working addon', () => {
  mkdirSync(app);
  ok(sh('npm', ['init', '-y'], app), 'npm init');
  const r = sh('npm', ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], app, { ...process.env, LIBTORCH: libtorch });
  ok(r, 'npm install');
  for (const l of `${r.stdout}\n${r.stderr}`.split('\n').filter((x) => x.startsWith('[resnet-ts]'))) console.log(`  ${l}`);
  assert.ok(existsSync(join(app, 'node_modules/resnet-ts/build/Release/resnet_ts.node')), 'no addon after install');
  assert.ok(!existsSync(join(app, 'node_modules/tsx')) && !existsSync(join(app, 'node_modules/uvu')), 'dev tools were installed as dependencies');
});

test('torchvision makes the weights, the image and the reference top-5', () => {
  // Random-init resnet18 with BN statistics and affines perturbed (so every buffer matters), a 256x256
  // image (Resize(256) is then the identity), torchvision's eval transforms.
  reference = py<{ top5: number[] }>(`
import json, torch, torchvision
from PIL import Image
import torchvision.transforms as T
torch.manual_seed(0)
m = torchvision.models.resnet18()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
        mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.1, 0.1)
m.eval()
torch.save(m.state_dict(), ${JSON.stringify(pth)})
yy, xx = torch.meshgrid(torch.arange(256.), torch.arange(256.), indexing='ij')
img = torch.stack([xx, yy, (xx * yy) % 256]) + 40 * torch.rand(3, 256, 256)
Image.fromarray(img.clamp(0, 255).byte().permute(1, 2, 0).numpy()).save(${JSON.stringify(image)})
t = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
with torch.no_grad():
    y = m(t(Image.open(${JSON.stringify(image)}).convert('RGB'))[None]).softmax(1)[0]
print(json.dumps({'top5': y.topk(5).indices.tolist()}))
`, { python: visionPython }).top5;
  assert.is(reference.length, 5);
});

const APP_MJS = `import { data, io, models, noGrad, F } from 'resnet-ts';
const [pth, image] = process.argv.slice(2);
const m = models.resnet18();
m.loadStateDict(io.loadPth(pth));
m.eval();
const x = data.imagenet.evalBatch([await data.decodeImage(image)], { resize: 256, crop: 224 });
const { indices } = F.softmax(noGrad(() => m.forward(x)), 1).topk(5, 1);
console.log(JSON.stringify({ top5: Array.from(indices.toArray(), Number) }));
`;
const APP_CJS = `const { data, io, models, noGrad, F, torchVersion } = require('resnet-ts');
const [pth, image] = process.argv.slice(2);
const m = models.resnet18();
m.loadStateDict(io.loadPth(pth));
m.eval();
data.decodeImage(image).then((img) => {
  const x = data.imagenet.evalBatch([img], { resize: 256, crop: 224 });
  const { indices } = F.softmax(noGrad(() => m.forward(x)), 1).topk(5, 1);
  console.log(JSON.stringify({ torch: torchVersion(), top5: Array.from(indices.toArray(), Number) }));
});
`;

test('(a) ESM: node app.mjs, run from another working directory, classifies the image as torchvision does', () => {
  writeFileSync(join(app, 'app.mjs'), APP_MJS);
  const out = ok(sh(process.execPath, [join(app, 'app.mjs'), pth, image], dir), 'node app.mjs');
  assert.equal(lastJson<{ top5: number[] }>(out).top5, reference);
});

test('(b) CommonJS: node app.cjs (require of the ESM package) gets the same top-5', () => {
  writeFileSync(join(app, 'app.cjs'), APP_CJS);
  const r = ok(sh(process.execPath, [join(app, 'app.cjs'), pth, image], app), 'node app.cjs');
  assert.equal(lastJson<{ top5: number[] }>(r).top5, reference);
});

test('(a, b) on every other Node in RESNET_TS_TEST_NODES (colon-separated node binaries): ESM and require', () => {
  for (const node of (process.env.RESNET_TS_TEST_NODES ?? '').split(delimiter).filter(Boolean)) {
    for (const f of ['app.mjs', 'app.cjs']) {
      const out = ok(sh(node, [join(app, f), pth, image], app), `${node} ${f}`);
      assert.equal(lastJson<{ top5: number[] }>(out).top5, reference, `${node} ${f}`);
    }
    console.log(`  ${ok(sh(node, ['--version'], app), node).trim()}: ESM import and require give torchvision's top-5`);
  }
});

test('(c) tsc --noEmit under tsc --init defaults (strict, nodenext, no skipLibCheck, no @types/node), CJS and ESM', () => {
  ok(sh(process.execPath, [tsc, '--init'], app), 'tsc --init');
  const config = readFileSync(join(app, 'tsconfig.json'), 'utf8');
  assert.match(config, /"module": "nodenext"/);
  assert.match(config, /"strict": true/);
  writeFileSync(join(app, 'tsconfig.json'), config.replace(/^\s*"skipLibCheck": true,?\n/m, ''));
  assert.not.match(readFileSync(join(app, 'tsconfig.json'), 'utf8'), /skipLibCheck/);
  const uses = (m: string) => `const net: ${m}.nn.Module = ${m}.models.resnet50({ numClasses: 10 });
const x: ${m}.Tensor = ${m}.randn([2, 3, 64, 64]);
const y: ${m}.Tensor = ${m}.noGrad(() => net.forward(x));
const shape: number[] = y.shape;
const sd: Record<string, ${m}.Tensor> = net.stateDict();
const dt: ${m}.DType = y.dtype;
const opt = new ${m}.optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9 });
const err: Error = new ${m}.CudaOutOfMemoryError('x');
const mem: number = ${m}.cuda.memory().allocated;
`;
  const exported = '{ shape, sd, dt, opt, err, mem }';
  writeFileSync(join(app, 'esm.mts'), `import * as rts from 'resnet-ts';\nimport { models, type Tensor } from 'resnet-ts';\nconst t: Tensor | null = null;\nvoid models; void t;\n${uses('rts')}export ${exported};\n`);
  writeFileSync(join(app, 'cjs.cts'), `import rts = require('resnet-ts');\n${uses('rts')}export = ${exported};\n`);
  // app.ts is CommonJS: `npm init -y` writes "type": "commonjs".
  writeFileSync(join(app, 'app.ts'), `import rts = require('resnet-ts');\nconst n: number = rts.models.list().length;\nexport = n;\n`);
  assert.ok(!existsSync(join(app, 'node_modules/@types/node')), '@types/node must not come with the package');
  ok(sh(process.execPath, [tsc, '--noEmit', '-p', app], app), 'tsc --noEmit');
  // The check can fail: a type error in the app is reported.
  writeFileSync(join(app, 'bad.mts'), `import { models } from 'resnet-ts';\nconst n: string = models.resnet18();\nvoid n;\n`);
  assert.is.not(sh(process.execPath, [tsc, '--noEmit', '-p', app], app).status, 0);
  writeFileSync(join(app, 'bad.mts'), 'export {};\n');
});

test('(d) npx resnet-ts predict: top-5 equal to torchvision\'s; --help answers without setup', () => {
  const out = ok(sh('npx', ['--no-install', 'resnet-ts', 'predict', '--model', 'resnet18', '--weights', pth, '--resize', '256', '--crop', '224', '--json', image], app), 'npx resnet-ts predict');
  const got = (JSON.parse(out) as Array<{ top: Array<{ index: number }> }>)[0]!.top.map((g) => g.index);
  assert.equal(got, reference);
  const bin = join(app, 'node_modules', '.bin', 'resnet-ts');
  assert.match(ok(sh(bin, ['--help'], app), 'resnet-ts --help'), /train[\s\S]*eval[\s\S]*predict[\s\S]*serve[\s\S]*bench[\s\S]*experiment[\s\S]*setup[\s\S]*doctor/);
  for (const cmd of ['train', 'eval', 'predict', 'serve', 'bench', 'bench --serve', 'experiment', 'setup', 'doctor']) {
    const r = sh(bin, [...cmd.split(' '), '--help'], app, process.env, 60_000);
    assert.is(r.status, 0, `resnet-ts ${cmd} --help: ${r.stderr}`);
    assert.match(r.stdout, /Usage:/);
    assert.not.match(r.stdout + r.stderr, /\[setup\]|node-gyp/);
  }
  const doctor = ok(sh(bin, ['doctor'], app, { ...process.env, LIBTORCH: libtorch }), 'resnet-ts doctor');
  assert.match(doctor, /libtorch\s+\d+\.\d+/);
  assert.match(doctor, /addon\s+.*node_modules\/resnet-ts\/build\/Release\/resnet_ts\.node: loads/);
});

test('(e) no libtorch anywhere: npm install succeeds, the import throws one error naming npx resnet-ts setup', () => {
  const app2 = join(dir, 'app-no-libtorch');
  mkdirSync(app2);
  // No LIBTORCH, no Python torch 2.x on PATH (Debian's python3 has torch 1.13, which is refused), an empty cache.
  const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, PATH: [nodeBin, '/usr/bin', '/bin'].join(delimiter), XDG_CACHE_HOME: join(dir, 'empty-cache') };
  ok(sh('npm', ['init', '-y'], app2, env), 'npm init');
  const install = sh('npm', ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], app2, env);
  ok(install, 'npm install without libtorch');
  assert.match(install.stderr, /resnet-ts: no libtorch found, so the native addon was not built/);
  assert.ok(existsSync(join(app2, 'node_modules/sharp')), 'the rest of the app did not install');
  writeFileSync(join(app2, 'app.mjs'), APP_MJS);
  const r = sh(process.execPath, [join(app2, 'app.mjs'), pth, image], app2, env);
  assert.is.not(r.status, 0);
  assert.match(r.stderr, /SetupError: resnet-ts: the native addon is not built/);
  assert.match(r.stderr, /Run: npx resnet-ts setup/);
  assert.is(r.stderr.match(/Error: /g)?.length, 1, `more than one error:\n${r.stderr}`);
  const cjs = sh(process.execPath, ['-e', "require('resnet-ts')"], app2, env);
  assert.match(cjs.stderr, /Run: npx resnet-ts setup/);
  // --help needs no addon: every command answers it here too.
  const bin2 = join(app2, 'node_modules', '.bin', 'resnet-ts');
  for (const cmd of ['train', 'eval', 'predict', 'serve', 'bench', 'bench --serve', 'experiment', 'setup', 'doctor']) {
    const h = sh(bin2, [...cmd.split(' '), '--help'], app2, env, 60_000);
    assert.is(h.status, 0, `resnet-ts ${cmd} --help without an addon: ${h.stderr}`);
    assert.ok(h.stdout.includes(`Usage: resnet-ts ${cmd} [options]`), `the usage line names the command as called: ${h.stdout.split('\n')[0]}`);
    assert.not.match(h.stderr, /SetupError/);
  }
  const noHelp = sh(bin2, ['predict', '--model', 'resnet18', image], app2, env, 60_000);
  assert.is.not(noHelp.status, 0);
  assert.match(noHelp.stderr, /the native addon is not built[\s\S]*Run: npx resnet-ts setup/);
  assert.not.match(noHelp.stderr, /\n\s+at |SetupError:/, 'the command prints the message, not a stack');
  assert.is(noHelp.status, 1);
  const wrong = sh('npm', ['rebuild', 'resnet-ts', '--foreground-scripts'], app2, { ...env, LIBTORCH: '/nonexistent/libtorch' });
  assert.is.not(wrong.status, 0);
  assert.match(wrong.stdout + wrong.stderr, /LIBTORCH=\/nonexistent\/libtorch is not a libtorch/);
  const addon = join(app, 'node_modules/resnet-ts/build/Release/resnet_ts.node');
  const over = ok(sh(process.execPath, [join(app2, 'app.mjs'), pth, image], app2, { ...env, RESNET_TS_ADDON: addon }), 'RESNET_TS_ADDON');
  assert.equal(lastJson<{ top5: number[] }>(over).top5, reference);
});

test.run();
