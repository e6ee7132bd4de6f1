// Datasets, transforms and the loader. References: Python's own gzip+struct parse of Debian's
// Fashion-MNIST files, hand-built CIFAR records, naive JS loops over the pixels, torch's
// F.interpolate(antialias=True) for resizing and torchvision's center_crop.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gunzipSync } from 'node:zlib';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tensor, memory, tidy, dispose } from '../lib/index.ts';
import {
  loadFashionMnist, loadMnist, loadCifar10, loadCifar100, parseIdx, FASHION_MNIST_DIR, limit, arraySource, DataLoader, Rng, permutation,
  randomCrop, randomHorizontalFlip, normalize, centerCrop, resize, randomResizedCrop, compose,
} from '../lib/data/index.ts';
import { py, tmp, maxAbsDiff, visionPython } from './helpers.ts';

test('Fashion-MNIST test split parses as Python\'s gzip + struct reading of the Debian files', () => {
  const ref = py<{ dims: number[]; labels: number[]; labelSum: number; pixelSum: number; weighted: number; first: number[] }>(`
import gzip, struct, json
d = '${FASHION_MNIST_DIR}'
raw = gzip.open(d + '/t10k-images-idx3-ubyte.gz').read()
magic, n, h, w = struct.unpack('>IIII', raw[:16]); px = raw[16:]
lab = gzip.open(d + '/t10k-labels-idx1-ubyte.gz').read()[8:]
print(json.dumps({'dims': [n, h, w], 'labels': list(lab[:50]), 'labelSum': sum(lab), 'pixelSum': sum(px),
  'weighted': sum((i % 997) * v for i, v in enumerate(px)) % 1000003, 'first': list(px[28*14:28*15])}))`, { python: visionPython });
  const ds = loadFashionMnist('test');
  assert.equal([ds.labels.length, ds.shape[1], ds.shape[2]], ref.dims);
  assert.equal(Array.from(ds.labels.subarray(0, 50)), ref.labels);
  assert.is(ds.labels.reduce((a, b) => a + b, 0), ref.labelSum);
  let sum = 0;
  let weighted = 0;
  ds.images.forEach((v, i) => {
    sum += v;
    weighted = (weighted + (i % 997) * v) % 1000003;
  });
  assert.is(sum, ref.pixelSum);
  assert.is(weighted, ref.weighted);
  assert.equal(Array.from(ds.images.subarray(28 * 14, 28 * 15)), ref.first);
  assert.equal(ds.classes.length, 10);
});

test('plain (un-gzipped) IDX files load the same as the gzipped ones, also as MNIST', () => {
  const dir = tmp();
  for (const f of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(dir, f), gunzipSync(readFileSync(join(FASHION_MNIST_DIR, `${f}.gz`))));
  const a = loadFashionMnist('test');
  const b = loadMnist('test', dir);
  assert.ok(Buffer.from(a.images).equals(Buffer.from(b.images)));
  assert.ok(Buffer.from(a.labels).equals(Buffer.from(b.labels)));
  assert.equal(b.mean, [0.1307]);
});

test('malformed or missing IDX files are clear errors naming the problem', () => {
  const dir = tmp();
  assert.throws(() => loadMnist('train', dir), /missing .*train-images-idx3-ubyte/);
  const header = (dims: number[]): Buffer => {
    const b = Buffer.alloc(4 + 4 * dims.length);
    b.writeUInt32BE(0x0800 + dims.length, 0);
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    return b;
  };
  assert.throws(() => parseIdx(Buffer.concat([header([2, 2, 2]), Buffer.alloc(7)]), 'x'), /declares 2x2x2 = 8 bytes .* holds 7/);
  assert.throws(() => parseIdx(Buffer.from([1, 2, 3, 4]), 'x'), /not an IDX file/);
  assert.throws(() => parseIdx(Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 0]), 'x'), /element type 0xd/);
  assert.throws(() => parseIdx(Buffer.from([0x1f, 0x8b, 1, 2, 3]), 'x'), /corrupt gzip/);
  assert.throws(() => parseIdx(header([0xffffffff, 0xffffffff]), 'x'), /declares/);
  // Images and labels that disagree in count.
  writeFileSync(join(dir, 'train-images-idx3-ubyte'), Buffer.concat([header([3, 2, 2]), Buffer.alloc(12)]));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), Buffer.concat([header([2]), Buffer.from([1, 2])]));
  assert.throws(() => loadMnist('train', dir), /3 images but 2 labels/);
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), Buffer.concat([header([3]), Buffer.from([1, 2, 10])]));
  assert.throws(() => loadMnist('train', dir), /label 10 at index 2/);
});

test('CIFAR-10 and CIFAR-100 binary records parse to hand-built labels and planes', () => {
  const dir = tmp();
  const sub = join(dir, 'cifar-10-batches-bin');
  mkdirSync(sub);
  const rec = (labels: number[], seed: number): Buffer => Buffer.concat([Buffer.from(labels), Buffer.from(Array.from({ length: 3072 }, (_, i) => (i * seed + 7) % 256))]);
  for (let k = 1; k <= 5; k++) writeFileSync(join(sub, `data_batch_${k}.bin`), Buffer.concat([rec([k], k), rec([9 - k], k + 10)]));
  writeFileSync(join(sub, 'test_batch.bin'), rec([3], 5));
  const tr = loadCifar10('train', dir);
  assert.equal(Array.from(tr.labels), [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
  assert.equal(tr.shape, [3, 32, 32]);
  // Sample 3 (batch 2's second record), green plane pixel (row 1, col 2) = byte 1024 + 34 of its record.
  assert.is(tr.images[3 * 3072 + 1024 + 34], ((1024 + 34) * 12 + 7) % 256);
  assert.is(loadCifar10('test', dir).labels[0], 3);
  writeFileSync(join(sub, 'test_batch.bin'), Buffer.alloc(3000));
  assert.throws(() => loadCifar10('test', dir), /3000 bytes is not a whole number of 3073-byte records/);
  const c100 = tmp();
  writeFileSync(join(c100, 'train.bin'), Buffer.concat([rec([4, 42], 3), rec([19, 99], 4)]));
  assert.equal(Array.from(loadCifar100('train', c100).labels), [42, 99]);
  assert.throws(() => loadCifar100('test', c100), /missing .*test\.bin/);
});

const img = (n: number, c: number, h: number, w: number) => Float32Array.from({ length: n * c * h * w }, (_, i) => (i * 37) % 101);

test('randomCrop with padding equals a naive loop with the same offsets', () => {
  const [n, c, h, w, pad, size] = [5, 2, 6, 7, 2, 6];
  const data = img(n, c, h, w);
  const out = randomCrop(size, pad)(tensor(data, { shape: [n, c, h, w] }), new Rng(1, 2, 3));
  assert.equal(out.shape, [n, c, size, size]);
  const rng = new Rng(1, 2, 3);
  const got = out.toArray() as Float32Array;
  for (let s = 0; s < n; s++) {
    const top = rng.int(h + 2 * pad - size + 1);
    const left = rng.int(w + 2 * pad - size + 1);
    for (let ch = 0; ch < c; ch++) for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
      const sy = y + top - pad;
      const sx = x + left - pad;
      const want = sy < 0 || sy >= h || sx < 0 || sx >= w ? 0 : data[((s * c + ch) * h + sy) * w + sx]!;
      assert.is(got[((s * c + ch) * size + y) * size + x], want);
    }
  }
});

test('randomHorizontalFlip mirrors exactly the samples a naive loop picks', () => {
  const [n, c, h, w] = [16, 1, 2, 5];
  const data = img(n, c, h, w);
  const got = randomHorizontalFlip()(tensor(data, { shape: [n, c, h, w] }), new Rng(9)).toArray() as Float32Array;
  const rng = new Rng(9);
  let flipped = 0;
  for (let s = 0; s < n; s++) {
    const flip = rng.next() < 0.5;
    flipped += flip ? 1 : 0;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) assert.is(got[(s * h + y) * w + x], data[(s * h + y) * w + (flip ? w - 1 - x : x)]);
  }
  assert.ok(flipped > 0 && flipped < n);
});

test('normalize and centerCrop match hand computation', () => {
  const x = tensor([0, 0.5, 1, 0.25, 0.2, 0.4, 0.6, 0.8], { shape: [1, 2, 2, 2] });
  assert.ok(maxAbsDiff(normalize([0.5, 0.2], [0.5, 0.4])(x).toArray() as Float32Array, [-1, 0, 1, -0.5, 0, 0.5, 1, 1.5]) < 1e-6);
  const y = tensor(img(1, 1, 5, 6), { shape: [1, 1, 5, 6] });
  const cc = centerCrop(3)(y).contiguous().toArray() as Float32Array;
  const d = img(1, 1, 5, 6);
  assert.equal(Array.from(cc), [1, 2, 3].flatMap((r) => [2, 3, 4].map((col) => d[r * 6 + col]!)));
  assert.throws(() => centerCrop(9)(y), /exceeds the image 5x6/);
  assert.throws(() => normalize([0.5], [0.5])(x), /2 channels but 1 means/);
});

test('centerCrop rounds half offsets to even and pads small images, as torchvision\'s center_crop', () => {
  // Offsets (h - size) / 2 of 0.5, 1.5, 2.5 and 3.5 are where Math.round and Python's round() disagree.
  const cases: [number, number, number, boolean][] = [[4, 6, 3, false], [5, 8, 2, false], [9, 10, 2, false], [4, 6, 7, true], [3, 8, 5, true]];
  const ref = py<number[][]>(`
import json, torch, torchvision.transforms.functional as F
out = []
for h, w, s, _ in json.loads('${JSON.stringify(cases)}'):
    out.append(F.center_crop(torch.arange(float(h * w)).reshape(1, 1, h, w), [s, s]).flatten().tolist())
print(json.dumps(out))`, { python: visionPython });
  cases.forEach(([h, w, size, pad], i) => {
    const x = tensor(Float32Array.from({ length: h * w }, (_, k) => k), { shape: [1, 1, h, w] });
    assert.equal(Array.from(centerCrop(size, { pad })(x).contiguous().toArray() as Float32Array), ref[i], `${h}x${w} -> ${size}`);
  });
});

test('resize (shorter side, antialiased) matches torch F.interpolate(antialias=True)', () => {
  const data = img(1, 3, 12, 20);
  const ours = resize(6)(tensor(data, { shape: [1, 3, 12, 20] }));
  assert.equal(ours.shape, [1, 3, 6, 10]);
  const ref = py<number[]>(`
import torch, json
x = torch.tensor(json.loads('${JSON.stringify(Array.from(data))}'), dtype=torch.float32).reshape(1, 3, 12, 20)
print(json.dumps(torch.nn.functional.interpolate(x, size=(6, 10), mode='bilinear', align_corners=False, antialias=True).flatten().tolist()))`);
  assert.ok(maxAbsDiff(ours.toArray() as Float32Array, ref) < 1e-4);
});

test('randomResizedCrop gives size x size crops, reproducible from the Rng', () => {
  const x = tensor(img(4, 3, 20, 30), { shape: [4, 3, 20, 30] });
  const a = randomResizedCrop(8)(x, new Rng(5));
  const b = randomResizedCrop(8)(x, new Rng(5));
  assert.equal(a.shape, [4, 3, 8, 8]);
  assert.ok(a.equal(b));
  assert.ok(!a.equal(randomResizedCrop(8)(x, new Rng(6))));
  assert.throws(() => randomResizedCrop(8)(x), /needs an Rng/);
});

test('loader: each epoch is a seeded permutation, drop-last counts, resuming at a batch repeats it exactly', async () => {
  const ds = limit(loadFashionMnist('test'), 100);
  const src = arraySource(ds);
  const t = compose(randomCrop(28, 2), randomHorizontalFlip(), normalize(ds.mean, ds.std));
  const loader = new DataLoader(src, { batchSize: 32, shuffle: true, dropLast: true, seed: 7, transform: t });
  assert.is(loader.numBatches, 3);
  assert.is(new DataLoader(src, { batchSize: 32 }).numBatches, 4);
  const o0 = loader.order(0);
  assert.equal([...o0].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
  assert.not.equal(Array.from(o0), Array.from(loader.order(1)));
  assert.equal(Array.from(o0), Array.from(permutation(100, new Rng(7, 0))));
  const before = memory().tensors;
  const all: number[][] = [];
  const labels: number[] = [];
  for await (const b of loader.epoch(0)) {
    assert.equal(b.x.shape, [32, 1, 28, 28]);
    all.push(Array.from(b.x.toArray() as Float32Array));
    labels.push(...Array.from(b.y.toArray() as BigInt64Array, Number));
    dispose([b.x, b.y]);
  }
  assert.equal(labels, Array.from(o0.subarray(0, 96), (i) => ds.labels[i]!));
  for await (const b of loader.epoch(0, 2)) {
    assert.is(b.index, 2);
    assert.equal(Array.from(b.x.toArray() as Float32Array), all[2]);
    dispose([b.x, b.y]);
  }
  // Breaking out early frees the prefetched batches.
  for await (const b of loader.epoch(1)) {
    dispose([b.x, b.y]);
    break;
  }
  await new Promise((r) => setTimeout(r, 10));
  // Garbage from earlier tests may be finalised meanwhile, so the count can only have dropped.
  assert.ok(memory().tensors <= before, `${memory().tensors} live tensors, ${before} before`);
  // Unnormalised pixels are the bytes / 255.
  const plain = new DataLoader(src, { batchSize: 4 });
  for await (const b of plain.epoch(0)) {
    assert.ok(maxAbsDiff(b.x.toArray() as Float32Array, Array.from(ds.images.subarray(0, 4 * 784), (v) => v / 255)) < 1e-7);
    dispose([b.x, b.y]);
    break;
  }
  tidy(() => undefined);
});

test.run();
