// randomErasing against torchvision 0.14 (Debian's python3): the boxes our Rng draws, erased by
// torchvision.transforms.functional.erase, equal our batch output exactly; and 20,000 boxes from erasingParams have
// the distribution of 20,000 from torchvision's RandomErasing.get_params (fallback rate, means, histograms).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { data, rand, Tensor } from '../lib/index.ts';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { py, tmp, visionPython } from './helpers.ts';

const values = (t: Tensor): number[] => Array.from(t.toArray() as Float32Array);

test('each image\'s box, erased by torchvision\'s F.erase, is exactly our output (0, per-channel values, random noise)', () => {
  const shape = [5, 3, 20, 24] as const;
  const x = rand([...shape]);
  const cases: data.RandomErasingOptions[] = [{ p: 0.7 }, { p: 1, value: [0.1, -0.2, 0.3], scale: [0.1, 0.5] }, { p: 1, value: 'random', ratio: [0.5, 2] }];
  const runs = cases.map((o, k) => {
    const out = data.randomErasing(o)(x, new data.Rng(7, k));
    // The same stream replayed: the boxes the transform drew.
    const rng = new data.Rng(7, k);
    const boxes = Array.from({ length: shape[0] }, () => data.erasingParams([3, 20, 24], o, rng));
    const ours = data.eraseBoxes(x, boxes);
    assert.ok(out.equal(ours), 'the transform erases the boxes erasingParams draws');
    return { out: values(out), boxes: boxes.map((b) => b && { ...b, value: Array.from(b.value), dims: b.value.length === 3 * b.height * b.width ? [3, b.height, b.width] : [b.value.length, 1, 1] }) };
  });
  assert.ok(runs.every((r) => r.boxes.some((b) => b !== null)), 'every case erased something');
  const input = join(tmp('erasing-'), 'input.json');
  writeFileSync(input, JSON.stringify({ x: values(x), runs: runs.map((r) => r.boxes) }));
  const ref = py<number[][]>(`
import json, torch
import torchvision.transforms.functional as F
with open(${JSON.stringify(input)}) as f:
    payload = json.load(f)
x = torch.tensor(payload['x']).view(${shape.join(',')})
runs = payload['runs']
out = []
for boxes in runs:
    imgs = [img if b is None else F.erase(img, b['top'], b['left'], b['height'], b['width'], torch.tensor(b['value']).view(*b['dims'])) for img, b in zip(x, boxes)]
    out.append(torch.stack(imgs).flatten().tolist())
print(json.dumps(out))`, { python: visionPython });
  rmSync(dirname(input), { recursive: true, force: true });
  runs.forEach((r, k) => {
    let diff = 0;
    r.out.forEach((v, i) => { diff = Math.max(diff, Math.abs(v - ref[k]![i]!)); });
    assert.is(diff, 0, `case ${k}`);
  });
});

interface Stats { n: number; fallback: number; h: number[]; w: number[]; top: number[]; left: number[] }

/** Mean and variance of a list. */
const moments = (a: number[]): [number, number] => {
  const m = a.reduce((s, v) => s + v, 0) / a.length;
  return [m, a.reduce((s, v) => s + (v - m) ** 2, 0) / (a.length - 1)];
};

/** Total variation distance between the histograms of two integer samples. */
function tv(a: number[], b: number[]): number {
  const count = (xs: number[]): Map<number, number> => xs.reduce((m, v) => m.set(v, (m.get(v) ?? 0) + 1), new Map<number, number>());
  const [ca, cb] = [count(a), count(b)];
  let d = 0;
  for (const k of new Set([...ca.keys(), ...cb.keys()])) d += Math.abs((ca.get(k) ?? 0) / a.length - (cb.get(k) ?? 0) / b.length);
  return d / 2;
}

test('box sampling matches torchvision\'s get_params over 20,000 draws: fallback rate, mean h, w, area, corner, histograms', () => {
  const N = 20_000;
  const configs = [
    { size: [28, 28], scale: [0.02, 0.33], ratio: [0.3, 3.3] },
    // Large, mostly tall boxes (an asymmetric ratio range tells h from w): many tries fail, some images get no box.
    { size: [12, 20], scale: [0.3, 0.9], ratio: [0.5, 4] },
  ] as const;
  const ref = py<Stats[]>(`
import json, torch
from torchvision.transforms import RandomErasing
torch.manual_seed(0)
res = []
for (H, W), scale, ratio in ${JSON.stringify(configs.map((c) => [c.size, c.scale, c.ratio]))}:
    img = torch.zeros(1, H, W)
    s = {'n': ${N}, 'fallback': 0, 'h': [], 'w': [], 'top': [], 'left': []}
    for _ in range(${N}):
        i, j, h, w, v = RandomErasing.get_params(img, scale=scale, ratio=ratio, value=[0.0])
        if h == H and w == W:
            s['fallback'] += 1
            continue
        s['h'].append(h); s['w'].append(w); s['top'].append(i); s['left'].append(j)
    res.append(s)
print(json.dumps(res))`, { python: visionPython });
  configs.forEach((c, k) => {
    const rng = new data.Rng(42, k);
    const ours: Stats = { n: N, fallback: 0, h: [], w: [], top: [], left: [] };
    for (let i = 0; i < N; i++) {
      const b = data.erasingParams([1, c.size[0], c.size[1]], { p: 1, scale: c.scale, ratio: c.ratio }, rng);
      if (!b) { ours.fallback++; continue; }
      ours.h.push(b.height); ours.w.push(b.width); ours.top.push(b.top); ours.left.push(b.left);
    }
    const theirs = ref[k]!;
    // Fallback rates: two binomial proportions, within 4 standard errors.
    const [pa, pb] = [ours.fallback / N, theirs.fallback / N];
    const se = Math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / N) || 1 / N;
    assert.ok(Math.abs(pa - pb) < 4 * se + 1e-9, `config ${k}: fallback ${pa} vs ${pb}`);
    const area = (s: Stats): number[] => s.h.map((h, i) => (h * s.w[i]!) / (c.size[0] * c.size[1]));
    for (const [what, a, b] of [['h', ours.h, theirs.h], ['w', ours.w, theirs.w], ['top', ours.top, theirs.top], ['left', ours.left, theirs.left], ['area', area(ours), area(theirs)]] as const) {
      const [ma, va] = moments(a);
      const [mb, vb] = moments(b);
      const z = Math.abs(ma - mb) / Math.sqrt(va / a.length + vb / b.length);
      assert.ok(z < 4, `config ${k}: mean ${what} ${ma.toFixed(3)} vs torchvision ${mb.toFixed(3)} (z = ${z.toFixed(2)})`);
    }
    for (const [what, a, b] of [['h', ours.h, theirs.h], ['w', ours.w, theirs.w]] as const) {
      assert.ok(tv(a, b) < 0.03, `config ${k}: histogram of ${what}, total variation ${tv(a, b)}`);
    }
    // Boxes are strictly smaller than the image and inside it.
    assert.ok(ours.h.every((h, i) => h < c.size[0] && ours.w[i]! < c.size[1] && ours.top[i]! + h <= c.size[0] && ours.left[i]! + ours.w[i]! <= c.size[1]));
  });
});

test('p: the share of erased images is p; noise is N(0, 1); a box that never fits leaves the image alone; bad options throw', () => {
  const rng = new data.Rng(3);
  let hits = 0;
  const noise: number[] = [];
  for (let i = 0; i < 4000; i++) {
    const b = data.erasingParams([2, 16, 16], { p: 0.3, value: 'random' }, rng);
    if (b) { hits++; noise.push(...b.value); }
  }
  assert.ok(Math.abs(hits / 4000 - 0.3) < 4 * Math.sqrt(0.3 * 0.7 / 4000), `${hits} of 4000`);
  const [m, v] = moments(noise);
  assert.ok(Math.abs(m) < 0.02 && Math.abs(v - 1) < 0.03, `noise mean ${m}, variance ${v}`);
  const x = rand([2, 1, 10, 10]);
  assert.ok(data.randomErasing({ p: 1, scale: [0.99, 1], ratio: [1, 1] })(x, new data.Rng(1)).equal(x));
  assert.throws(() => data.randomErasing({ p: 2 }), /p must be in \[0, 1\]/);
  assert.throws(() => data.randomErasing({ scale: [0.5, 0.1] }), /scale must be \[min, max\] within \[0, 1\]/);
  assert.throws(() => data.randomErasing({ value: 'noise' as 'random' }), /value must be a number, a list of numbers or 'random'/);
  assert.throws(() => data.randomErasing({ value: [1, 2] })(rand([1, 3, 8, 8]), new data.Rng(1)), /either a single value or 3 \(number of input channels\)/);
  assert.throws(() => data.randomErasing()(x), /needs an Rng/);
});

test.run();
