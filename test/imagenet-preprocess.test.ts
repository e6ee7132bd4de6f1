// ImageNet eval preprocessing, decoding and folder listing against torchvision 0.14 (Debian's
// python3-torchvision via test/reference/imagenet_preprocess.py and inline snippets) and PIL.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeImage, listImageFolder } from '../lib/data/image-folder.ts';
import { IMAGENET_CATEGORIES, IMAGENET_WNIDS, defaultResize, evalBatch } from '../lib/data/imagenet.ts';
import { resizedSize } from '../lib/data/transforms.ts';
import { py, root, tmp, visionPython } from './helpers.ts';

const dir = tmp('imagenet-pre-');

/** Smooth random RGB pixels (blurred noise, like a photo's spectrum) written as a JPEG or PNG by sharp. */
async function makeImage(path: string, width: number, height: number, seed: number, kind: 'jpeg' | 'png-alpha' | 'gray' | 'cmyk' = 'jpeg'): Promise<void> {
  let s = seed;
  const rand = (): number => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
  const channels = kind === 'png-alpha' ? 4 : 3;
  const px = Buffer.alloc(width * height * channels);
  for (let i = 0; i < px.length; i++) px[i] = Math.floor(rand() * 256);
  const img = sharp(px, { raw: { width, height, channels } }).blur(1.5);
  if (kind === 'png-alpha') await img.png().toFile(path);
  else if (kind === 'gray') await img.toColourspace('b-w').jpeg({ quality: 90 }).toFile(path);
  else if (kind === 'cmyk') await img.toColourspace('cmyk').jpeg({ quality: 90 }).toFile(path);
  else await img.jpeg({ quality: 90 }).toFile(path);
}

const cases: Array<[name: string, w: number, h: number, kind?: 'jpeg' | 'png-alpha' | 'gray' | 'cmyk']> = [
  ['landscape.jpg', 500, 375], ['portrait.jpg', 333, 500], ['square.jpg', 300, 300], ['wide.jpg', 900, 240],
  ['small.jpg', 120, 90], ['exact.jpg', 256, 301], ['gray.jpg', 410, 290, 'gray'], ['cmyk.jpg', 280, 350, 'cmyk'],
  ['alpha.png', 260, 390, 'png-alpha'],
];

test('class lists: names equal torchvision _IMAGENET_CATEGORIES; wnids sorted and at known indices', () => {
  const names = py<string[]>('import json; from torchvision.models._meta import _IMAGENET_CATEGORIES as C; print(json.dumps(C))', { python: visionPython });
  assert.equal([...IMAGENET_CATEGORIES], names);
  assert.is(new Set(IMAGENET_WNIDS).size, 1000);
  assert.equal([...IMAGENET_WNIDS], [...IMAGENET_WNIDS].sort());
  // Indices from Caffe's synset_words.txt: 0 tench, 278 kit fox, 285 Egyptian cat, 999 toilet tissue.
  assert.equal([IMAGENET_WNIDS[0], IMAGENET_WNIDS[278], IMAGENET_WNIDS[285], IMAGENET_WNIDS[999]], ['n01440764', 'n02119789', 'n02124075', 'n15075141']);
});

test('resizedSize and defaultResize follow torchvision (_compute_resized_output_size, weights transforms)', () => {
  const sizes: Array<[number, number, number]> = [[375, 500, 256], [500, 333, 256], [240, 900, 232], [301, 256, 256], [1, 7, 232], [511, 1023, 224]];
  const ref = py<number[][]>(`import json; from torchvision.transforms.functional import _compute_resized_output_size as f
print(json.dumps([f((h, w), [s]) for h, w, s in ${JSON.stringify(sizes)}]))`, { python: visionPython });
  assert.equal(sizes.map(([h, w, s]) => resizedSize(h, w, s)), ref);
  assert.is(defaultResize('/w/resnet50-11ad3fa6.pth'), 232); // ResNet50_Weights.IMAGENET1K_V2
  assert.is(defaultResize('resnet50-0676ba61.safetensors'), 256); // IMAGENET1K_V1
  assert.is(defaultResize('my_resnet50_v2.pth'), 232);
});

test('listImageFolder matches torchvision find_classes + make_dataset (nested, case, hidden, empty, links)', () => {
  const r = join(dir, 'tree');
  const files = ['b/x.JPEG', 'b/a.png', 'b/sub/z.jpg', 'b/sub-2/y.webp', 'b/notes.txt', 'a_cls/1.Jpg', 'a_cls/.hidden.jpg',
    '.hiddencls/q.bmp', 'Zeta/img.tiff', 'b/sub/deeper/k.ppm', 'B/w.pgm'];
  for (const f of files) { mkdirSync(join(r, f, '..'), { recursive: true }); writeFileSync(join(r, f), 'x'); }
  mkdirSync(join(r, 'empty_cls'));
  symlinkSync(join(r, 'Zeta'), join(r, 'linked'));
  const ours = listImageFolder(r);
  const ref = py<{ classes: string[]; samples: Array<[string, number]> }>(`import json
from torchvision.datasets.folder import find_classes, make_dataset, IMG_EXTENSIONS
classes, c2i = find_classes(${JSON.stringify(r)})
samples = []
for c in classes:  # make_dataset refuses empty classes as a whole, so ask class by class
    try: samples += make_dataset(${JSON.stringify(r)}, {c: c2i[c]}, IMG_EXTENSIONS)
    except FileNotFoundError: pass
print(json.dumps({"classes": classes, "samples": samples}))`, { python: visionPython });
  assert.equal(ours.classes, ref.classes);
  assert.equal(ours.samples, ref.samples);
  assert.ok(ours.classes.includes('empty_cls'));
  assert.throws(() => listImageFolder(join(dir, 'missing')), /folder not found/);
});

test('decodeImage gives the RGB bytes of PIL convert("RGB") (JPEG, grey, CMYK, PNG with alpha)', async () => {
  mkdirSync(join(dir, 'dec'), { recursive: true });
  for (const [name, w, h, kind] of cases.filter((c) => c[3])) {
    const path = join(dir, 'dec', name);
    await makeImage(path, w, h, w + h, kind);
    const img = await decodeImage(path);
    const ref = py<{ h: number; w: number; hex: string }>(`import json; import numpy as np; from PIL import Image
a = np.asarray(Image.open(${JSON.stringify(path)}).convert('RGB'))
print(json.dumps({"h": a.shape[0], "w": a.shape[1], "hex": a.tobytes().hex()}))`, { python: visionPython });
    assert.equal([img.height, img.width], [ref.h, ref.w], name);
    assert.ok(Buffer.from(img.data).equals(Buffer.from(ref.hex, 'hex')), `${name}: decoded pixels differ from PIL`);
  }
  const err = await decodeImage(Buffer.from('not an image')).then(() => null, (e: Error) => e);
  assert.match(String(err), /unsupported image format/);
});

/** Runs the oracle on our images; returns per image the PIL-path and tensor-path tensors. */
function oracle(items: Array<{ path: string; rgb: string; width: number; height: number; out: string }>, resize: number, crop: number): void {
  const spec = join(dir, `spec-${resize}-${crop}.json`);
  writeFileSync(spec, JSON.stringify({ resize, crop, items }));
  execFileSync(visionPython, [join(root, 'test/reference/imagenet_preprocess.py'), spec], { stdio: ['ignore', 'pipe', 'pipe'] });
}

const f32 = (p: string): Float32Array => { const b = readFileSync(p); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };
const meanAbs = (a: Float32Array, b: Float32Array): number => { let s = 0; for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!); return s / a.length; };

for (const [resize, crop] of [[256, 224], [232, 224], [200, 224]] as const) {
  test(`eval preprocessing resize ${resize} crop ${crop}: vs torchvision's PIL path (mean ≤ 0.01) and tensor path (mean ≤ 1e-3)`, async () => {
    mkdirSync(join(dir, 'pre'), { recursive: true });
    const items = [];
    const decoded = [];
    for (const [name, w, h, kind] of cases) {
      const path = join(dir, 'pre', name);
      await makeImage(path, w, h, 7 * w + h, kind);
      const img = await decodeImage(path);
      writeFileSync(`${path}.rgb`, img.data);
      decoded.push(img);
      items.push({ path, rgb: `${path}.rgb`, width: img.width, height: img.height, out: `${path}.${resize}` });
    }
    oracle(items, resize, crop);
    const batch = evalBatch(decoded, { resize, crop });
    assert.equal(batch.shape, [cases.length, 3, crop, crop]);
    const ours = batch.toArray() as Float32Array;
    batch.dispose();
    const per = 3 * crop * crop;
    items.forEach((it, i) => {
      const mine = ours.subarray(i * per, (i + 1) * per);
      const pil = meanAbs(mine, f32(`${it.out}.pil.f32`));
      const tv = meanAbs(mine, f32(`${it.out}.tensor.f32`));
      assert.ok(pil <= 0.01, `${cases[i]![0]}: mean |ours - PIL path| = ${pil}`);
      assert.ok(tv <= 1e-3, `${cases[i]![0]}: mean |ours - tensor path| = ${tv}`);
    });
  });
}

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
