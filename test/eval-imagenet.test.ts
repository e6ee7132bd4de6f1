// scripts/eval-imagenet.ts end to end against torchvision (test/reference/imagenet_eval.py: ImageFolder
// listing, PIL loading, the weights' eval preset, random-init resnet18 saved with torch.save), plus the
// ground-truth parsers against hand-written files and the CLI's errors.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IMAGENET_WNIDS, parseDevkitGroundTruth, parseLocSolution, parseSynsetMapping } from '../lib/data/imagenet.ts';
import { root, tmp, visionPython } from './helpers.ts';

const dir = tmp('imagenet-eval-');
const weights = join(dir, 'resnet18-random.pth');
const [RESIZE, CROP] = [72, 64]; // small crops keep resnet18 quick on 2 cores; the preset's logic is the same
const N = 12;

interface OracleResult { top1: number; top5: number; images: number; skipped: number; preds: Array<[string, number, ...number[]]> }

function oracle(spec: Record<string, unknown>): OracleResult {
  const path = join(dir, `spec-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify({ arch: 'resnet18', weights, resize: RESIZE, crop: CROP, ...spec }));
  const out = execFileSync(visionPython, [join(root, 'test/reference/imagenet_eval.py'), path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  return JSON.parse(out.trim().split('\n').pop()!) as OracleResult;
}

function evalScript(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/eval-imagenet.ts'), '--resize', String(RESIZE), '--crop', String(CROP), '--batch-size', '5', '--workers', '2', ...args],
    { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, UV_THREADPOOL_SIZE: '4' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const readJson = <T>(p: string): T => JSON.parse(readFileSync(p, 'utf8')) as T;

// Images with varied sizes; torchvision predicts them, then each is filed under a class chosen from
// its prediction so that top-1 and top-5 are neither 0 nor 1: its top-1 class, its 3rd class, or neither.
const staged: string[] = [];
const labels: number[] = [];
let expected: OracleResult;
const folderRoot = join(dir, 'val');

test('setup: torchvision predicts generated images; an ImageFolder set is built from them', async () => {
  mkdirSync(join(dir, 'stage'));
  for (let i = 0; i < N; i++) {
    const [w, h] = [60 + 23 * i, 140 - 7 * i];
    const px = Buffer.alloc(w * h * 3);
    for (let j = 0; j < px.length; j++) px[j] = (j * 2654435761 + i * 97) >>> 24;
    const path = join(dir, 'stage', `img${i}.JPEG`);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).blur(2).jpeg({ quality: 92 }).toFile(path);
    staged.push(path);
  }
  const pred = oracle({ images: staged, init_seed: 0 });
  pred.preds.forEach(([, , ...top5], i) => {
    const other = [...Array(1000).keys()].map((c) => (c + 500) % 1000).find((c) => !top5.includes(c))!;
    labels.push(i % 3 === 0 ? top5[0]! : i % 3 === 1 ? top5[2]! : other);
  });
  for (const w of IMAGENET_WNIDS) mkdirSync(join(folderRoot, w), { recursive: true });
  staged.forEach((p, i) => copyFileSync(p, join(folderRoot, IMAGENET_WNIDS[labels[i]!]!, `img${i}.JPEG`)));
  expected = oracle({ root: folderRoot });
  assert.is(expected.images, N);
  assert.is(expected.top1, 4 / N);
  assert.is(expected.top5, 8 / N);
});

test('ImageFolder layout: top-1/top-5, per-class counts and every top-5 equal torchvision', () => {
  const out = join(dir, 'folder.json');
  const preds = join(dir, 'folder.jsonl');
  const r = evalScript(['--model', 'resnet18', '--weights', weights, '--data', folderRoot, '--output', out, '--save-predictions', preds]);
  assert.is(r.code, 0, r.stderr);
  const res = readJson<Record<string, unknown> & { perClass: Record<string, { index: number; images: number }> }>(out);
  assert.equal([res.top1, res.top5, res.images, res.skipped], [expected.top1, expected.top5, N, 0]);
  for (const k of ['decodeImagesPerSec', 'modelImagesPerSec', 'wallTimeSec']) assert.ok((res[k] as number) > 0, k);
  const perClassImages = Object.values(res.perClass).reduce((s, c) => s + c.images, 0);
  assert.is(perClassImages, N);
  const ours = readFileSync(preds, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; label: number; top5: number[]; scores: number[] });
  assert.equal(ours.map((p) => [join(folderRoot, p.path), p.label, ...p.top5]), expected.preds);
  for (const p of ours) assert.ok(p.scores.every((s, i) => s > 0 && s < 1 && (i === 0 || s <= p.scores[i - 1]!)));
  assert.match(r.stdout, /top-1 33\.33%\s+top-5 66\.67%/);
});

test('a part of the validation set (only the wnid folders that hold images): the numbers torchvision gives on the whole layout', () => {
  const part = join(dir, 'val-part');
  staged.forEach((p, i) => {
    mkdirSync(join(part, IMAGENET_WNIDS[labels[i]!]!), { recursive: true });
    copyFileSync(p, join(part, IMAGENET_WNIDS[labels[i]!]!, `img${i}.JPEG`));
  });
  const out = join(dir, 'part.json');
  const preds = join(dir, 'part.jsonl');
  const r = evalScript(['--model', 'resnet18', '--weights', weights, '--data', part, '--output', out, '--save-predictions', preds]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /class folders named by ImageNet wnid: each is scored as its class/);
  const res = readJson<{ top1: number; top5: number; perClass: Record<string, { index: number }> }>(out);
  assert.equal([res.top1, res.top5], [expected.top1, expected.top5]);
  const ours = readFileSync(preds, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; label: number; top5: number[] });
  assert.equal(ours.map((p) => [join(folderRoot, p.path), p.label, ...p.top5]), expected.preds);
  for (const [wnid, c] of Object.entries(res.perClass)) assert.is(c.index, IMAGENET_WNIDS.indexOf(wnid));
  // Folders of other names keep ImageFolder's sorted order, and a count that differs from the model's outputs is said.
  const named = join(dir, 'val-named');
  for (const [i, c] of ['cat', 'dog'].entries()) {
    mkdirSync(join(named, c), { recursive: true });
    copyFileSync(staged[i]!, join(named, c, 'a.JPEG'));
  }
  const w = evalScript(['--model', 'resnet18', '--weights', weights, '--data', named, '--output', join(dir, 'named.json')]);
  assert.is(w.code, 0, w.stderr);
  assert.match(w.stderr, /warning: 2 class folders for a model with 1000 outputs; folder i \(sorted\) is scored as class i: cat as tench, dog as goldfish/);
});

// The same images as a flat folder of ILSVRC2012_val_*.JPEG.
const flat = join(dir, 'flat');
function makeFlat(): void {
  mkdirSync(flat, { recursive: true });
  staged.forEach((p, i) => copyFileSync(p, join(flat, `ILSVRC2012_val_${String(i + 1).padStart(8, '0')}.JPEG`)));
}

test('flat folder + devkit ground truth with its synset mapping: same numbers as torchvision', () => {
  makeFlat();
  // A devkit-like ID order (not the sorted one): ILSVRC2012_ID k names the (k * 7 mod 1000)-th sorted wnid.
  const idOf = new Map<number, number>();
  const mapping = IMAGENET_WNIDS.map((_, k) => { const c = (k * 7) % 1000; idOf.set(c, k + 1); return `${k + 1} ${IMAGENET_WNIDS[c]}`; });
  writeFileSync(join(dir, 'synsets.txt'), mapping.join('\n') + '\n');
  writeFileSync(join(dir, 'ILSVRC2012_validation_ground_truth.txt'), labels.map((c) => idOf.get(c)).join('\n') + '\n');
  const out = join(dir, 'devkit.json');
  const r = evalScript(['--model', 'resnet18', '--weights', weights, '--data', flat, '--labels', join(dir, 'ILSVRC2012_validation_ground_truth.txt'), '--synsets', join(dir, 'synsets.txt'), '--output', out]);
  assert.is(r.code, 0, r.stderr);
  const res = readJson<{ top1: number; top5: number; images: number }>(out);
  assert.equal([res.top1, res.top5, res.images], [expected.top1, expected.top5, N]);
});

test('flat folder + LOC_val_solution.csv: same numbers as torchvision', () => {
  makeFlat();
  const rows = labels.map((c, i) => `ILSVRC2012_val_${String(i + 1).padStart(8, '0')},${IMAGENET_WNIDS[c]} 10 20 30 40 ${IMAGENET_WNIDS[c]} 1 2 3 4 `);
  writeFileSync(join(dir, 'LOC_val_solution.csv'), ['ImageId,PredictionString', ...rows.reverse()].join('\n') + '\n');
  const out = join(dir, 'loc.json');
  const r = evalScript(['--model', 'resnet18', '--weights', weights, '--data', flat, '--labels', join(dir, 'LOC_val_solution.csv'), '--output', out]);
  assert.is(r.code, 0, r.stderr);
  const res = readJson<{ top1: number; top5: number; images: number }>(out);
  assert.equal([res.top1, res.top5, res.images], [expected.top1, expected.top5, N]);
});

test('ground-truth parsers on hand-written files', () => {
  const synsets = parseSynsetMapping('1 n02119789 kit fox\n2 n02100735 English setter\n\n3 n02110185 husky\n');
  assert.equal(synsets, ['n02119789', 'n02100735', 'n02110185']);
  assert.equal(parseSynsetMapping('n01440764 tench, Tinca tinca\nn01443537 goldfish\n'), ['n01440764', 'n01443537']);
  assert.equal([...parseDevkitGroundTruth('3\n1\n', synsets)], [['ILSVRC2012_val_00000001', 'n02110185'], ['ILSVRC2012_val_00000002', 'n02119789']]);
  assert.equal([...parseDevkitGroundTruth('n01443537\n')], [['ILSVRC2012_val_00000001', 'n01443537']]);
  assert.throws(() => parseDevkitGroundTruth('3\n'), /synset mapping/);
  assert.throws(() => parseDevkitGroundTruth('4\n', synsets), /ILSVRC2012_ID 4/);
  const loc = parseLocSolution('ImageId,PredictionString\r\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295 \r\n');
  assert.equal([...loc], [['ILSVRC2012_val_00008726', 'n02119789']]);
  assert.throws(() => parseLocSolution('id,label\n'), /ImageId/);
});

test('corrupt images are skipped and named (torchvision numbers without them); --strict fails', () => {
  const bad = join(folderRoot, IMAGENET_WNIDS[labels[0]!]!);
  writeFileSync(join(bad, 'truncated.JPEG'), readFileSync(staged[1]!).subarray(0, 600));
  writeFileSync(join(bad, 'garbage.jpg'), 'this is not a JPEG');
  const ref = oracle({ root: folderRoot });
  assert.is(ref.skipped, 2);
  const out = join(dir, 'corrupt.json');
  const r = evalScript(['--model', 'resnet18', '--weights', weights, '--data', folderRoot, '--output', out]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /skipped .*truncated\.JPEG/);
  assert.match(r.stderr, /skipped .*garbage\.jpg/);
  const res = readJson<{ top1: number; top5: number; images: number; skipped: number }>(out);
  assert.equal([res.top1, res.top5, res.images, res.skipped], [ref.top1, ref.top5, N, 2]);
  const strict = evalScript(['--model', 'resnet18', '--weights', weights, '--data', folderRoot, '--strict']);
  assert.is(strict.code, 1);
  assert.match(strict.stderr, /cannot decode .*(garbage\.jpg|truncated\.JPEG)/);
});

test('predict: top-5 names and probabilities; the indices are torchvision\'s', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/predict.ts'), '--model', 'resnet18', '--weights', weights,
    '--resize', String(RESIZE), '--crop', String(CROP), '--json', staged[0]!, staged[1]!], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Array<{ file: string; top: Array<{ index: number; wnid: string; label: string; probability: number }> }>;
  const ref = oracle({ images: staged.slice(0, 2) });
  assert.equal(out.map((o) => [o.file, 0, ...o.top.map((g) => g.index)]), ref.preds);
  for (const g of out[0]!.top) assert.is(g.wnid, IMAGENET_WNIDS[g.index]);
  assert.ok(out[0]!.top.every((g, i) => g.probability > 0 && (i === 0 || g.probability <= out[0]!.top[i - 1]!.probability)));
});

test('wrong weights, unknown model, missing folder, missing ground truth: clear message, exit code 2', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--model', 'resnet34', '--weights', weights, '--data', folderRoot], /weights .* do not match resnet34.*Missing key/s],
    [['--model', 'resnet18', '--weights', join(dir, 'ILSVRC2012_validation_ground_truth.txt'), '--data', folderRoot], /cannot read weights/],
    [['--model', 'resnet18', '--weights', join(dir, 'none.pth'), '--data', folderRoot], /weights file not found/],
    [['--model', 'resnet19', '--weights', weights, '--data', folderRoot], /unknown model 'resnet19'/],
    [['--model', 'resnet18', '--weights', weights, '--data', join(dir, 'nowhere')], /folder not found/],
    [['--model', 'resnet18', '--weights', weights, '--data', flat], /needs --labels/],
    [['--model', 'resnet18', '--weights', weights, '--data', flat, '--labels', join(dir, 'ILSVRC2012_validation_ground_truth.txt')], /--synsets/],
    [['--model', 'resnet18', '--weights', weights, '--data', folderRoot, '--amp', 'fp32'], /choices/],
  ];
  for (const [args, message] of cases) {
    const r = evalScript(args);
    assert.is(r.code, 2, `${args.join(' ')}\n${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
