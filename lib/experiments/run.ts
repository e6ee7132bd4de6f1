// Runs an experiment: each net trains with fit() in DIR/<experiment>/<run>/ (a finished run, one with a
// summary.json, is read back; an interrupted one resumes from its checkpoint), then the results are
// gathered for results.json, table.md and report.html.
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { manualSeed } from '../creation.ts';
import { DataLoader, arraySource } from '../data/loader.ts';
import { limit, sizeOf, type ArrayDataset } from '../data/dataset.ts';
import { compose, normalize, randomCrop, randomHorizontalFlip, type Transform } from '../data/transforms.ts';
import { summary } from '../models/summary.ts';
import { SGD } from '../optim/sgd.ts';
import { LRScheduler, cosine, multiStep, warmup } from '../optim/schedule.ts';
import { noDecayOnNormAndBias } from '../optim/groups.ts';
import type { Device } from '../tensor.ts';
import { fit } from '../train/trainer.ts';
import type { EpochRecord, MetricRecord } from '../train/metrics.ts';
import { buildRun, type Experiment, type Finding, type RunResult, type RunSpec } from './catalog.ts';
import { describeRecipe, type DataName, type Recipe, type Scale } from './recipe.ts';

/** A run directory that holds a run made with another recipe, model or seed. */
export class RunMismatchError extends Error {}

/** How to run an experiment: scale, data, recipe, where, and how to report and stop. */
export interface ExperimentOptions {
  scale: Scale;
  data: DataName;
  /** The whole splits; the recipe's limits are applied here. */
  train: ArrayDataset;
  test: ArrayDataset;
  recipe: Recipe;
  /** DIR: the experiment writes DIR/<name>/. */
  outDir: string;
  seed: number;
  device: Device;
  /** Described in results.json (e.g. '2 CPU threads'). */
  hardware: string;
  quiet: boolean;
  shouldStop: () => boolean;
  log: (line: string) => void;
}

/** What results.json holds. */
export interface ExperimentResults {
  experiment: string;
  title: string;
  paper: string;
  scale: Scale;
  data: DataName;
  recipe: Recipe;
  recipeText: string;
  trainImages: number;
  testImages: number;
  seed: number;
  hardware: string;
  date: string;
  /** Sum of the runs' wall times, seconds. */
  wallTime: number;
  runs: RunResult[];
  finding: Finding;
}

function trainTransform(r: Recipe, d: ArrayDataset): Transform {
  const steps: Transform[] = [];
  if (r.augment === 'crop-flip') steps.push(randomCrop(d.shape[1], r.cropPadding));
  steps.push(randomHorizontalFlip(), normalize(d.mean, d.std));
  return compose(...steps);
}

/** The recipe's learning rate as a function of the step. */
function lrSchedule(r: Recipe, stepsPerEpoch: number): (step: number, base: number) => number {
  const total = r.epochs * stepsPerEpoch;
  const warm = Math.min(Math.round(r.warmupEpochs * stepsPerEpoch), total - 1);
  if (r.schedule === 'multistep') return warmup(warm, multiStep(r.milestones!.map((e) => e * stepsPerEpoch - warm)), 0.1);
  return warmup(warm, cosine(total - warm), 0.1);
}

/** What a run directory must have been made with to be continued or reused. */
function fingerprint(exp: Experiment, run: RunSpec, o: ExperimentOptions): string {
  const { block, ...spec } = run.spec;
  return JSON.stringify({ experiment: exp.name, run: run.id, block: block.name, spec, shortcut: run.shortcut, data: o.data, recipe: o.recipe, seed: o.seed }, null, 2) + '\n';
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** The per-epoch train and test errors of a run, from its metrics.jsonl. */
function readCurve(dir: string): RunResult['curve'] {
  const recs = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as MetricRecord);
  const eps = recs.filter((r): r is EpochRecord => r.kind === 'epoch');
  return { epoch: eps.map((r) => r.epoch + 1), trainError: eps.map((r) => 1 - r.trainTop1), testError: eps.map((r) => 1 - (r.testTop1 ?? NaN)) };
}

/** Trains (or reads back) every run of an experiment; returns undefined when stopped by shouldStop. */
export async function runExperiment(exp: Experiment, o: ExperimentOptions): Promise<ExperimentResults | undefined> {
  const r = o.recipe;
  const train = limit(o.train, r.limitTrain);
  const test = limit(o.test, r.limitTest);
  const [channels, h, w] = train.shape;
  const runs = exp.runs(o.scale);
  const expDir = join(o.outDir, exp.name);
  const results: RunResult[] = [];
  // Refuse a mismatched directory before any training starts.
  for (const run of runs) {
    const path = join(expDir, run.id, 'run.json');
    if (existsSync(path) && readFileSync(path, 'utf8') !== fingerprint(exp, run, o)) {
      throw new RunMismatchError(`${join(expDir, run.id)} holds a run made with another recipe, data or seed (see its run.json); ` +
        'choose another --out or delete that directory');
    }
  }
  for (const [i, run] of runs.entries()) {
    const dir = join(expDir, run.id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'run.json'), fingerprint(exp, run, o));
    manualSeed(o.seed);
    const model = buildRun(run, channels, train.classes.length).to(o.device);
    const s = summary(model, [1, channels, h, w], { depth: 0 });
    const tag = `[${exp.name} ${i + 1}/${runs.length}] ${run.id}`;
    if (!existsSync(join(dir, 'summary.json'))) {
      const resuming = existsSync(join(dir, 'checkpoint.safetensors'));
      o.log(`${tag}: ${resuming ? 'resuming' : 'training'} (${run.model}; ${s.totalParams.toLocaleString('en-US')} params, ${(s.totalMultAdds / 1e6).toFixed(2)} M mult-adds)`);
      const optimizer = new SGD(noDecayOnNormAndBias(model.namedParameters(), r.weightDecay), { lr: r.lr, momentum: r.momentum, weightDecay: r.weightDecay });
      const common = { device: o.device, seed: o.seed, prefetch: 2 };
      const trainLoader = new DataLoader(arraySource(train), { ...common, batchSize: r.batchSize, shuffle: true, dropLast: sizeOf(train) > r.batchSize, transform: trainTransform(r, train) });
      const testLoader = new DataLoader(arraySource(test), { ...common, batchSize: 500, transform: normalize(test.mean, test.std) });
      const scheduler = new LRScheduler(optimizer, lrSchedule(r, trainLoader.numBatches));
      const { interrupted } = await fit({
        model, optimizer, scheduler, trainLoader, testLoader, epochs: r.epochs, outDir: dir, resume: resuming, device: o.device,
        modelName: run.id, config: { experiment: exp.name, run: run.id, scale: o.scale, data: o.data, seed: o.seed, ...r },
        quiet: o.quiet, shouldStop: o.shouldStop,
      });
      if (interrupted) return undefined;
    } else {
      o.log(`${tag}: finished earlier, reading ${join(dir, 'summary.json')}`);
    }
    const sum = readJson<{ trainAccuracy: number; testAccuracy: number; epochs: number; wallTime: number }>(join(dir, 'summary.json'));
    results.push({
      id: run.id, label: run.label, model: run.model, tags: run.tags, params: s.totalParams, multAdds: s.totalMultAdds, epochs: sum.epochs,
      trainError: 1 - sum.trainAccuracy, testError: 1 - sum.testAccuracy, wallTime: sum.wallTime, curve: readCurve(dir),
    });
  }
  const testImages = sizeOf(test);
  return {
    experiment: exp.name, title: exp.title, paper: exp.paper, scale: o.scale, data: o.data, recipe: r,
    recipeText: describeRecipe(r, sizeOf(train), testImages), trainImages: sizeOf(train), testImages, seed: o.seed,
    hardware: o.hardware, date: new Date().toISOString(), wallTime: Number(results.reduce((a, x) => a + x.wallTime, 0).toFixed(2)),
    runs: results, finding: exp.finding(results, testImages),
  };
}
