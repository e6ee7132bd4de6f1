// `npm run experiment`: a tiny degradation run that is interrupted and resumed, checked against the runs'
// own summary.json files and against parameter and multiply-add counts worked out by hand for the 6n+2
// nets and the ResNeXt bottleneck nets; report.html drawn by headless Chromium (the same page without
// curves as the control); usage errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { CARDINALITY_WIDTHS, PALETTE, writeExperimentReport, type ExperimentResults } from '../lib/experiments/index.ts';
import { data, train } from '../lib/index.ts';
import { py, root, tmp, visionPython } from './helpers.ts';

const SCRIPT = join(root, 'scripts', 'experiment.ts');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TINY = ['--limit-train', '256', '--limit-test', '200', '--epochs', '2', '--threads', '1'];
const IDS = ['plain20', 'plain56', 'resnet20', 'resnet56'];

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Conv weights of the 6n+2 net (option A: no shortcut weights) and their mult-adds on a 1x28x28 input. */
function net6n2(n: number): { params: number; macs: number } {
  const widths = [16, 32, 64];
  const sides = [28, 14, 7];
  let params = 9 * 1 * 16 + 2 * 16;
  let macs = 28 * 28 * 9 * 16;
  let inP = 16;
  widths.forEach((w, s) => {
    for (let i = 0; i < n; i++) {
      const conv = 9 * inP * w + 9 * w * w;
      params += conv + 4 * w;
      macs += sides[s]! ** 2 * conv;
      inP = w;
    }
  });
  return { params: params + 64 * 10 + 10, macs: macs + 64 * 10 };
}

/** The quick cardinality net (2 bottlenecks a stage, planes 16/32/64, shortcut B) worked out layer by layer. */
function bottleneckNet(c: number, d: number): { params: number; macs: number } {
  let params = 9 * 16 + 2 * 16;
  let macs = 28 * 28 * 9 * 16;
  let inP = 16;
  let side = 28;
  [16, 32, 64].forEach((p, s) => {
    for (let i = 0; i < 2; i++) {
      const width = Math.floor((p * d) / 64) * c;
      const out = 4 * p;
      const outSide = i === 0 && s > 0 ? side / 2 : side;
      params += inP * width + (9 * width * width) / c + width * out + 2 * (width + width + out);
      macs += side * side * inP * width + outSide * outSide * ((9 * width * width) / c + width * out);
      if (i === 0) {
        params += inP * out + 2 * out;
        macs += outSide * outSide * inP * out;
      }
      inP = out;
      side = outSide;
    }
  });
  return { params: params + 256 * 10 + 10, macs: macs + 256 * 10 };
}

/** Rows of the first markdown table in a text, as cells. */
function tableOf(md: string): string[][] {
  return md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| run ')).map((l) => l.slice(2, -2).split(' | '));
}

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;

/** Pixels of each palette colour in a Chromium screenshot of a page. */
async function colourPixels(html: string): Promise<number[]> {
  const dir = tmp();
  const png = join(dir, 'shot.png');
  const r = spawnSync(CHROMIUM, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', `--user-data-dir=${join(dir, 'profile')}`,
    '--hide-scrollbars', '--window-size=1040,1000', '--virtual-time-budget=5000', `--screenshot=${png}`, `file://${html}`,
  ], { encoding: 'utf8', timeout: 120_000 });
  assert.ok(existsSync(png), `chromium made no screenshot: ${r.stderr}`);
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const counts = PALETTE.map(() => 0);
  for (let i = 0; i < info.width * info.height * 3; i += 3) {
    PALETTE.forEach((c, k) => {
      if (Math.abs(data[i]! - c[0]) + Math.abs(data[i + 1]! - c[1]) + Math.abs(data[i + 2]! - c[2]) < 30) counts[k]!++;
    });
  }
  return counts;
}

test('--help exits 0 and names the four experiments; an unknown experiment or scale exits 2', () => {
  const help = run(['--help']);
  assert.is(help.status, 0, help.stderr);
  for (const n of ['degradation', 'shortcuts', 'cardinality', 'preact', 'transfer', '--scale', '--data']) assert.ok(help.stdout.includes(n), n);
  const bad = run(['degradations']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /degradations/);
  assert.is(run(['degradation', '--scale', 'huge']).status, 2);
  assert.is(run([]).status, 2);
});

test('--plan: params and mult-adds match the hand count; cardinality 1..32 stay within 5 % of each other', () => {
  const r = run(['degradation', '--plan']);
  assert.is(r.status, 0, r.stderr);
  const rows = tableOf(r.stdout);
  assert.equal(rows.map((c) => c[1]), IDS);
  for (const [id, n] of [['plain20', 3], ['plain56', 9], ['resnet20', 3], ['resnet56', 9]] as const) {
    const row = rows.find((c) => c[1] === id)!;
    assert.equal([Number(row[3]), Number(row[4])], [net6n2(n).params, net6n2(n).macs], id);
  }
  const card = run(['cardinality', '--plan']);
  assert.is(card.status, 0, card.stderr);
  const cr = tableOf(card.stdout);
  assert.equal(cr.map((c) => c[1]), CARDINALITY_WIDTHS.map(([c, d]) => `resnext20_${c}x${d}d`));
  const macs = CARDINALITY_WIDTHS.map(([c, d], i) => {
    const hand = bottleneckNet(c, d);
    assert.equal([Number(cr[i]![3]), Number(cr[i]![4])], [hand.params, hand.macs], `${c}x${d}d`);
    return hand.macs;
  });
  assert.equal(CARDINALITY_WIDTHS.map(([c]) => c), [1, 2, 4, 8, 32]);
  assert.ok(Math.max(...macs) / Math.min(...macs) - 1 <= 0.05, `spread ${Math.max(...macs) / Math.min(...macs) - 1}`);
});

const out = tmp();
const expDir = join(out, 'degradation');

test('Ctrl-C saves the run in progress and exits 130; rerunning reads finished runs back and resumes the rest', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, 'degradation', ...TINY, '--out', out], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const t0 = Date.now();
  while (!existsSync(join(expDir, 'plain56', 'run.json'))) {
    assert.ok(Date.now() - t0 < 120_000, `plain56 never started: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGINT');
  assert.is(await done, 130, err);
  assert.ok(existsSync(join(expDir, 'plain20', 'summary.json')));
  assert.ok(existsSync(join(expDir, 'plain56', 'checkpoint.safetensors')));
  assert.ok(!existsSync(join(expDir, 'plain56', 'summary.json')));
  assert.ok(!existsSync(join(expDir, 'results.json')));
  const plain20Summary = statSync(join(expDir, 'plain20', 'summary.json')).mtimeMs;

  const r = run(['degradation', ...TINY, '--out', out]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /plain20: finished earlier/);
  assert.match(r.stdout, /plain56: resuming/);
  assert.match(r.stdout, /resnet56: training/);
  assert.is(statSync(join(expDir, 'plain20', 'summary.json')).mtimeMs, plain20Summary);
  for (const f of ['results.json', 'table.md', 'report.html']) assert.ok(existsSync(join(expDir, f)), f);
});

test('results.json and table.md: errors from each run\'s summary.json, sizes from the hand count, the finding from the numbers', () => {
  const res = JSON.parse(readFileSync(join(expDir, 'results.json'), 'utf8')) as ExperimentResults;
  const rows = tableOf(readFileSync(join(expDir, 'table.md'), 'utf8'));
  assert.is(res.experiment, 'degradation');
  assert.is(res.scale, 'quick');
  assert.is(res.trainImages, 256);
  assert.is(res.testImages, 200);
  assert.equal(res.runs.map((r) => r.id), IDS);
  const err: Record<string, { train: number; test: number }> = {};
  res.runs.forEach((r, i) => {
    const s = JSON.parse(readFileSync(join(expDir, r.id, 'summary.json'), 'utf8'));
    const hand = net6n2(r.id.endsWith('56') ? 9 : 3);
    err[r.id] = { train: 1 - s.trainAccuracy, test: 1 - s.testAccuracy };
    assert.is(s.epochs, 2);
    assert.is(r.trainError, 1 - s.trainAccuracy, r.id);
    assert.is(r.testError, 1 - s.testAccuracy, r.id);
    assert.is(r.wallTime, s.wallTime);
    assert.equal([r.params, r.multAdds], [hand.params, hand.macs], r.id);
    assert.equal(r.curve.epoch, [1, 2]);
    assert.is(r.curve.trainError[1], r.trainError);
    assert.is(r.curve.testError[1], r.testError);
    const row = rows[i]!;
    assert.equal(
      [row[2], row[3], row[4], row[5], row[6]],
      [hand.params.toLocaleString('en-US'), `${(hand.macs / 1e6).toFixed(2)} M`, pct(1 - s.trainAccuracy), pct(1 - s.testAccuracy), `${Math.round(s.wallTime)} s`],
      r.id,
    );
  });
  const plainDegrades = err.plain56!.train > err.plain20!.train;
  const resImproves = err.resnet56!.train <= err.resnet20!.train;
  const reproduced = plainDegrades && resImproves ? true : plainDegrades || resImproves ? null : false;
  assert.is(res.finding.reproduced, reproduced);
  assert.match(res.finding.text, { true: /direction was reproduced/, null: /only half reproduced/, false: /NOT reproduced/ }[String(reproduced)]!);
  assert.ok(res.finding.text.includes(`plain-56 ${pct(err.plain56!.train)} vs plain-20 ${pct(err.plain20!.train)}`), res.finding.text);
  const md = readFileSync(join(expDir, 'table.md'), 'utf8');
  assert.ok(md.includes(`Finding (${{ true: 'reproduced', null: 'partly reproduced', false: 'not reproduced' }[String(reproduced)]}): ${res.finding.text}`));
});

/** The pids of the `--jobs` children, from the parent's log. */
const childPids = (log: string): number[] => [...log.matchAll(/training in process (\d+)/g)].map((m) => Number(m[1]));

/** Starts a tiny `degradation --jobs 2` run in a fresh directory and waits until plain20 and plain56, which start together, have both begun. */
async function startJobsRun() {
  const par = tmp();
  const parDir = join(par, 'degradation');
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, 'degradation', ...TINY, '--jobs', '2', '--out', par], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const t0 = Date.now();
  const started = (): boolean => ['plain20', 'plain56'].every((id) => existsSync(join(parDir, id, 'run.json')) && new RegExp(`${id}: training in process \\d+`).test(out));
  while (!started()) {
    assert.ok(Date.now() - t0 < 120_000, `the runs never started: ${out} ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { par, parDir, child, done, out: () => out, err: () => err };
}

test('--jobs 2: two runs at a time in child processes; SIGTERM stops both with checkpoints (exit 143), rerunning finishes, and every run equals the one-at-a-time run', async () => {
  const { par, parDir, child, done, out, err } = await startJobsRun();
  child.kill('SIGTERM');
  assert.is(await done, 143, out() + err());
  const pids = childPids(out());
  assert.is(pids.length, 2, out());
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), undefined, `child ${pid} outlived the parent`);
  assert.ok(!existsSync(join(parDir, 'results.json')));
  assert.ok(!existsSync(join(parDir, 'resnet20', 'run.json')), 'no run starts after the stop');
  for (const id of ['plain20', 'plain56']) {
    const d = join(parDir, id);
    assert.ok(existsSync(join(d, 'summary.json')) || existsSync(join(d, 'checkpoint.safetensors')), `${id} kept neither a checkpoint nor a summary`);
  }

  const r = run(['degradation', ...TINY, '--jobs', '2', '--out', par]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /training [2-4] runs, 2 at a time \(1 thread each\)/);
  const res = JSON.parse(readFileSync(join(parDir, 'results.json'), 'utf8')) as ExperimentResults;
  assert.match(res.hardware, /2 runs at a time, 1 thread each/);
  for (const id of IDS) {
    const a = JSON.parse(readFileSync(join(expDir, id, 'summary.json'), 'utf8'));
    const b = JSON.parse(readFileSync(join(parDir, id, 'summary.json'), 'utf8'));
    assert.equal([b.trainLoss, b.trainAccuracy, b.testLoss, b.testAccuracy], [a.trainLoss, a.trainAccuracy, a.testLoss, a.testAccuracy], id);
  }
});

test('--jobs 2: a child killed with SIGKILL fails the experiment naming it (exit 1), the other child stops with its checkpoint, and a rerun finishes', async () => {
  const { par, parDir, done, out, err } = await startJobsRun();
  const victim = Number(/plain56: training in process (\d+)/.exec(out())?.[1]);
  assert.ok(victim > 0, out());
  process.kill(victim, 'SIGKILL');
  assert.is(await done, 1, out() + err());
  assert.match(err(), /plain56 failed \(its process was killed by SIGKILL\); rerun the same command/);
  const pids = childPids(out());
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), undefined, `child ${pid} outlived the parent`);
  assert.ok(!existsSync(join(parDir, 'results.json')));
  assert.ok(existsSync(join(parDir, 'plain20', 'summary.json')) || existsSync(join(parDir, 'plain20', 'checkpoint.safetensors')), 'plain20 kept neither a checkpoint nor a summary');
  const r = run(['degradation', ...TINY, '--jobs', '2', '--out', par]);
  assert.is(r.status, 0, r.stderr);
  assert.ok(existsSync(join(parDir, 'results.json')));
});

test('report.html draws every run\'s curves in headless Chromium (the same page without curves as the control), self-contained', async () => {
  const path = join(expDir, 'report.html');
  const html = readFileSync(path, 'utf8');
  assert.not.match(html, /<script[^>]+src=/);
  assert.match(html, /Chart\.js v\d/);
  const res = JSON.parse(readFileSync(join(expDir, 'results.json'), 'utf8')) as ExperimentResults;
  const control = join(tmp(), 'control.html');
  writeExperimentReport(control, { ...res, runs: res.runs.map((r) => ({ ...r, curve: { epoch: [], trainError: [], testError: [] } })) });
  const drawn = await colourPixels(path);
  const blank = await colourPixels(control);
  // The legend boxes carry the colours on both pages; only drawn curves add to them.
  res.runs.forEach((r, i) => assert.ok(drawn[i]! - blank[i]! > 150, `${r.id}: ${drawn[i]} pixels of its colour vs ${blank[i]} without curves`));
});

test('transfer: the target runs see the first 100 images of each of classes 5-9 (numpy on the same files); frozen keeps the pretrained backbone bit for bit', () => {
  const ref = py<{ sums: number[]; labels: number[]; testCount: number }>(`import gzip, json, numpy as np
d = '/usr/share/datasets/fashion-mnist'
x = np.frombuffer(gzip.open(d + '/train-images-idx3-ubyte.gz').read(), np.uint8, offset=16).reshape(-1, 784)
y = np.frombuffer(gzip.open(d + '/train-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
yt = np.frombuffer(gzip.open(d + '/t10k-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
idx = np.sort(np.concatenate([np.where(y == c)[0][:100] for c in range(5, 10)]))
print(json.dumps({'sums': x[idx].astype(np.int64).sum(1).tolist(), 'labels': (y[idx] - 5).tolist(), 'testCount': int((yt >= 5).sum())}))`, { python: visionPython });
  const sub = data.selectClasses(data.loadFashionMnist('train'), [5, 6, 7, 8, 9], 100);
  assert.equal(Array.from(sub.labels), ref.labels);
  assert.equal(Array.from({ length: sub.labels.length }, (_, i) => sub.images.subarray(i * 784, (i + 1) * 784).reduce((a, v) => a + v, 0)), ref.sums);
  assert.equal(sub.classes, ['Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']);
  const dir = tmp();
  const r = run(['transfer', '--epochs', '1', '--limit-train', '150', '--limit-test', '300', '--threads', '1', '--out', dir]);
  assert.is(r.status, 0, r.stderr);
  const res = JSON.parse(readFileSync(join(dir, 'transfer', 'results.json'), 'utf8')) as ExperimentResults;
  assert.equal(res.runs.map((x) => [x.id, x.trainImages, x.testImages]), [['pretrain', 150, 300], ['frozen', 150, 300], ['finetune', 150, 300], ['scratch', 150, 300]]);
  assert.match(res.finding.text, new RegExp(`from scratch ${pct(res.runs[3]!.testError)}; frozen backbone ${pct(res.runs[1]!.testError)}`));
  assert.ok(ref.testCount === 5000 && res.recipeText.includes('the first 100 of each of classes 5–9'), res.recipeText);
  const ck = (id: string) => train.checkpointWeights(join(dir, 'transfer', id, 'checkpoint.safetensors'));
  const [pre, frozen, ft] = [ck('pretrain'), ck('frozen'), ck('finetune')];
  assert.equal(frozen.info.classes, sub.classes);
  const backbone = Object.keys(pre.stateDict).filter((k) => !k.startsWith('fc.'));
  assert.ok(backbone.every((k) => frozen.stateDict[k]!.equal(pre.stateDict[k]!)), 'the frozen backbone (or its BN statistics) moved');
  assert.ok(!frozen.stateDict['fc.weight']!.equal(pre.stateDict['fc.weight']!), 'the classifier did not train');
  assert.ok(backbone.some((k) => !ft.stateDict[k]!.equal(pre.stateDict[k]!)), 'the fine-tuned backbone did not move');
});

test('a run directory made with another recipe is refused (exit 2) rather than mixed in', () => {
  const r = run(['degradation', ...TINY.map((a, i) => (TINY[i - 1] === '--epochs' ? '3' : a)), '--out', out]);
  assert.is(r.status, 2);
  assert.match(r.stderr, /another recipe/);
});

test.run();
