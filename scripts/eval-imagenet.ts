// ImageNet validation: any registry model with torchvision-compatible weights, torchvision's eval
// preprocessing, top-1/top-5. A worker thread keeps decodes going (on libuv's pool) while the model holds the main thread.
//   npm run eval:imagenet -- --model resnet50 --weights IMAGENET1K_V2 --data /data/imagenet/val
//   npm run eval:imagenet -- --model resnet18 --weights r18.safetensors --data val_flat --labels LOC_val_solution.csv
import { spawnSync } from 'node:child_process';
import { createWriteStream, writeFileSync, type WriteStream } from 'node:fs';
import { availableParallelism } from 'node:os';
import { relative, resolve } from 'node:path';
import { MultiBar, Presets } from 'cli-progress';
import { Command, Option } from 'commander';
import { commandName, positiveInt } from './cli.ts';
import { softmax } from '../lib/nn/functional.ts';
import { cuda, torchVersion, withAmp } from '../lib/device.ts';
import { DecodeQueue } from '../lib/data/decode-queue.ts';
import type { DecodedImage } from '../lib/data/image-folder.ts';
import { IMAGENET_CATEGORIES, IMAGENET_WNIDS, evalBatch, labelByName, listValidationSet, type EvalSet } from '../lib/data/imagenet.ts';
import { noGrad, tidy, type Device, type Tensor } from '../lib/tensor.ts';
import type { Module } from '../lib/nn/module.ts';
import { UsageError, checkDevice, inferenceModel, loadClassifier } from './classifier.ts';

interface Options {
  model?: string;
  weights: string;
  data: string;
  labels?: string;
  synsets?: string;
  resize?: number;
  crop?: number;
  batchSize: number;
  device: string;
  amp?: 'bf16' | 'fp16';
  channelsLast: boolean;
  optimize: boolean;
  workers: number;
  limit?: number;
  output?: string;
  savePredictions?: string;
  strict: boolean;
  progress: boolean;
}

function parseOptions(argv: string[]): Options {
  const program = new Command(commandName('eval-imagenet'))
    .description('Top-1/top-5 of a model on the ImageNet validation set, with torchvision\'s eval preprocessing.')
    .option('--model <name>', 'registry model name (resnet50, resnext50_32x4d, ...; default: the net a resnet-ts checkpoint was trained as)')
    .requiredOption('--weights <name|file|url>', 'published weights (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT; downloaded into torch\'s cache), a state dict (.pth as torch.save wrote it, .safetensors) or a URL')
    .requiredOption('--data <dir>', 'class folders (ImageFolder: index = position among sorted folder names) or a flat folder of ILSVRC2012_val_*.JPEG with --labels')
    .option('--labels <file>', 'ground truth for a flat folder: ILSVRC2012_validation_ground_truth.txt (with --synsets) or LOC_val_solution.csv')
    .option('--synsets <file>', 'synset mapping naming the devkit\'s ILSVRC2012_IDs: a wnid a line in ID order, or "ID wnid" lines')
    .option('--resize <n>', 'shorter side before the crop (default: the weights\' preset, e.g. 232 for V2; 256 for other files)', positiveInt)
    .option('--crop <n>', 'center crop size (default: the weights\' preset, 224)', positiveInt)
    .option('--batch-size <n>', 'images per forward pass', positiveInt, 64)
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .addOption(new Option('--amp <dtype>', 'mixed precision (autocast)').choices(['bf16', 'fp16']))
    .option('--channels-last', 'feed the model channels-last (NHWC) batches', false)
    .option('--no-optimize', "run the model's own forward instead of its fused inference copy (CPU: BatchNorm folded, oneDNN kernels)")
    .option('--workers <n>', 'concurrent image decodes (libuv thread pool size)', positiveInt, Math.max(2, availableParallelism()))
    .option('--limit <n>', 'evaluate only the first N images (in listing order)', positiveInt)
    .option('--output <file>', 'write the results as JSON')
    .option('--save-predictions <file>', 'write per image path, label, top-5 indices and probabilities (JSON Lines)')
    .option('--strict', 'stop at the first unreadable image instead of skipping it', false)
    .option('--no-progress', 'no progress bar')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError();
  program.parse(argv);
  return program.opts<Options>();
}

/** Per-class counts and the running totals. */
class Tally {
  readonly images: number[];
  readonly top1: number[];
  readonly top5: number[];
  n = 0;
  c1 = 0;
  c5 = 0;
  constructor(numClasses: number) {
    this.images = new Array<number>(numClasses).fill(0);
    this.top1 = new Array<number>(numClasses).fill(0);
    this.top5 = new Array<number>(numClasses).fill(0);
  }
  add(label: number, topk: ArrayLike<number | bigint>): { hit1: boolean; hit5: boolean } {
    const hit1 = Number(topk[0]) === label;
    const hit5 = Array.from(topk, Number).includes(label);
    this.n++;
    this.images[label]!++;
    if (hit1) { this.c1++; this.top1[label]!++; }
    if (hit5) { this.c5++; this.top5[label]!++; }
    return { hit1, hit5 };
  }
}

/** What one launched batch left on the device until its results are read. */
interface InFlight {
  paths: string[];
  labels: number[];
  indices: Tensor;
  scores?: Tensor;
}

// Starts one batch on the device; finish() reads it after the next launch, so a GPU is never left waiting.
function launch(model: Module, images: DecodedImage[], o: Options & { device: Device; resize: number; crop: number }, k: number): Pick<InFlight, 'indices' | 'scores'> {
  return tidy(() => {
    let x = evalBatch(images, { resize: o.resize, crop: o.crop, device: o.device });
    if (o.channelsLast) x = x.contiguous('channelsLast');
    const forward = (): Tensor => model.forward(x);
    const logits = noGrad(() => withAmp(o.amp, o.device, forward)).float();
    const { indices } = logits.topk(k, 1);
    return { indices, scores: o.savePredictions ? softmax(logits, 1).gather(1, indices) : undefined };
  });
}

async function evaluate(o: Options): Promise<Record<string, unknown>> {
  const device = checkDevice(o.device);
  let set: EvalSet;
  try {
    set = listValidationSet(o.data, { labels: o.labels, synsets: o.synsets });
  } catch (e) {
    const hint = /no class folders/.test((e as Error).message) ? ' (a flat folder of validation images needs --labels)' : '';
    throw new UsageError(`${(e as Error).message}${hint}`);
  }
  if (set.samples.length === 0) throw new UsageError(`no images found in ${o.data}`);
  const { model, name, numClasses, path, entry, ...preset } = await loadClassifier(o.model, o.weights, device);
  const [resize, crop] = [o.resize ?? preset.resize, o.crop ?? preset.crop];
  if (set.classes.length > numClasses) throw new UsageError(`${o.data} has ${set.classes.length} classes but the weights give ${numClasses} outputs`);
  // Class folders named by wnid take their ImageNet index, folders named as a checkpoint's classes their index there (a
  // part of the classes scores right); other names take their sorted place (ImageFolder's rule), which only means
  // something when the model has those classes in that order.
  const byWnid = !o.labels && numClasses === 1000 ? labelByName(set, IMAGENET_WNIDS) : null;
  const byName = !o.labels && !byWnid && preset.categories && preset.categories !== IMAGENET_CATEGORIES ? labelByName(set, preset.categories) : null;
  if (byWnid || byName) {
    if (set.classes.length < numClasses) console.log(`eval: ${set.classes.length} class folders named by ${byWnid ? 'ImageNet wnid' : 'the checkpoint\'s class names'}: each is scored as its class`);
    set = (byWnid ?? byName)!;
  } else if (!o.labels && set.classes.length !== numClasses) {
    const first = set.classes.slice(0, 3).map((c, i) => `${c} as ${preset.categories?.[i] ?? `class ${i}`}`).join(', ');
    console.warn(`eval: warning: ${set.classes.length} class folders for a model with ${numClasses} outputs; folder i (sorted) is scored as class i: ${first}${set.classes.length > 3 ? ', ...' : ''}`);
  }
  const samples = o.limit ? set.samples.slice(0, o.limit) : set.samples;
  if (device !== 'cpu') cuda.setCudnnBenchmark(true);
  const k = Math.min(5, numClasses);
  const { net, fused, amp } = inferenceModel(model, { optimize: o.optimize, amp: o.amp, device });
  const opts = { ...o, amp, device, resize, crop };

  const queue = new DecodeQueue(samples.map((s) => s[0]), o.workers, Math.max(2 * o.batchSize, o.workers));
  const tally = new Tally(numClasses);
  const skipped: Array<{ path: string; error: string }> = [];
  const preds: WriteStream | undefined = o.savePredictions ? createWriteStream(o.savePredictions) : undefined;
  const bars = new MultiBar({ format: ' {bar} {value}/{total} | top-1 {top1}% top-5 {top5}% | {ips} img/s | ETA {eta_formatted}', hideCursor: true, stream: process.stderr }, Presets.shades_classic);
  const bar = o.progress && process.stderr.isTTY ? bars.create(samples.length, 0, { top1: '-', top5: '-', ips: '-' }) : undefined;
  const t0 = performance.now();
  let modelMs = 0;
  let done = 0;

  const finish = (f: InFlight): void => {
    const t = performance.now();
    const idx = f.indices.toArray() as BigInt64Array;
    const sc = f.scores?.toArray() as Float32Array | undefined;
    modelMs += performance.now() - t;
    f.indices.dispose();
    f.scores?.dispose();
    f.labels.forEach((label, i) => {
      const top = idx.subarray(i * k, (i + 1) * k);
      tally.add(label, top);
      if (preds) preds.write(JSON.stringify({ path: relative(resolve(o.data), resolve(f.paths[i]!)), label, top5: Array.from(top, Number), scores: Array.from(sc!.subarray(i * k, (i + 1) * k)) }) + '\n');
    });
    done += f.labels.length;
    const pct = (c: number): string => (tally.n ? ((100 * c) / tally.n).toFixed(2) : '-');
    bar?.update(done + skipped.length, { top1: pct(tally.c1), top5: pct(tally.c5), ips: (done / ((performance.now() - t0) / 1000)).toFixed(0) });
  };

  let inFlight: InFlight | undefined;
  let batch: { images: DecodedImage[]; paths: string[]; labels: number[] } = { images: [], paths: [], labels: [] };
  try {
    for (;;) {
      const r = await queue.next();
      if (r) {
        if (r.error) {
          if (o.strict) throw new Error(`cannot decode ${r.path}: ${r.error.message}`);
          skipped.push({ path: r.path, error: r.error.message });
          if (bar) bars.log(`skipped ${r.path}: ${r.error.message}\n`);
          else console.error(`skipped ${r.path}: ${r.error.message}`);
        } else {
          batch.images.push(r.image!);
          batch.paths.push(r.path);
          batch.labels.push(samples[r.index]![1]);
        }
      }
      if (batch.images.length === o.batchSize || (!r && batch.images.length)) {
        const t = performance.now();
        const launched = { ...launch(net, batch.images, opts, k), paths: batch.paths, labels: batch.labels };
        modelMs += performance.now() - t;
        if (inFlight) finish(inFlight); // read the previous batch while this one runs on the GPU
        inFlight = launched;
        batch = { images: [], paths: [], labels: [] };
      }
      if (!r) break;
    }
    if (inFlight) finish(inFlight);
    bar?.update(samples.length);
  } finally {
    if (bar) bars.stop();
    await queue.close();
  }
  if (preds) await new Promise((res) => preds.end(res));
  const wall = (performance.now() - t0) / 1000;

  const perClass: Record<string, { index: number; images: number; top1: number; top5: number }> = {};
  tally.images.forEach((n, i) => {
    if (n) perClass[set.classes[i] ?? String(i)] = { index: i, images: n, top1: tally.top1[i]! / n, top5: tally.top5[i]! / n };
  });
  return {
    model: name, weights: resolve(path), weightsEntry: entry ? `${entry.enum}.${entry.name}` : null, data: resolve(o.data),
    labels: o.labels ? resolve(o.labels) : null, device, amp: o.amp ?? null, fused, channelsLast: o.channelsLast, resize, crop, batchSize: o.batchSize, workers: o.workers,
    images: tally.n, skipped: skipped.length, skippedFiles: skipped,
    top1: tally.n ? tally.c1 / tally.n : 0, top5: tally.n ? tally.c5 / tally.n : 0, correct1: tally.c1, correct5: tally.c5,
    wallTimeSec: wall, imagesPerSec: tally.n / wall,
    decodeImagesPerSec: (queue.busyMs ? (samples.length * o.workers) / (queue.busyMs / 1000) : 0),
    modelImagesPerSec: modelMs ? tally.n / (modelMs / 1000) : 0,
    torch: torchVersion(), perClass,
  };
}

function report(r: Record<string, unknown>): void {
  const pct = (v: unknown): string => `${(100 * (v as number)).toFixed(2)}%`;
  const num = (v: unknown): string => (v as number).toFixed(0);
  console.log(`${r.model} on ${r.images} images (${r.skipped} skipped), resize ${r.resize} crop ${r.crop}, ${r.device}${r.amp ? ` ${r.amp}` : ''}`);
  console.log(`top-1 ${pct(r.top1)}  top-5 ${pct(r.top5)}`);
  console.log(`${num(r.imagesPerSec)} img/s end to end in ${(r.wallTimeSec as number).toFixed(1)} s; decode ${num(r.decodeImagesPerSec)} img/s (${r.workers} workers), model ${num(r.modelImagesPerSec)} img/s`);
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv);
  // libuv sizes its thread pool (where sharp decodes) on first use, before this module runs: set it and start again.
  if (!process.env.UV_THREADPOOL_SIZE && o.workers > 4) {
    const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, UV_THREADPOOL_SIZE: String(o.workers) } });
    process.exit(r.status ?? 1);
  }
  try {
    const results = await evaluate(o);
    report(results);
    if (o.output) writeFileSync(o.output, JSON.stringify(results, null, 2) + '\n');
  } catch (e) {
    console.error(`eval-imagenet: ${(e as Error).message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  }
}

await main();
