// Runs an experiment: each net trains with fit() in DIR/<experiment>/<run>/ (a finished run, one with a
// summary.json, is read back; an interrupted one resumes from its checkpoint), then the results are
// gathered for results.json, table.md and report.html.
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ArrayDataset } from '../data/dataset.ts';
import { writeFileAtomically } from '../io/atomic.ts';
import { summary, type Summary } from '../models/summary.ts';
import type { Module } from '../nn/module.ts';
import type { Device } from '../tensor.ts';
import { selectClasses } from '../data/dataset.ts';
import { arrayData, type TrainingData } from '../train/data.ts';
import type { EpochRecord, MetricRecord } from '../train/metrics.ts';
import { buildModel, buildTraining, type Recipe, type TrainingContext } from '../train/recipe.ts';
import { RunFiles, runPaths } from '../train/run-files.ts';
import type { RunSummary } from '../train/summary.ts';
import { fit } from '../train/trainer.ts';
import { buildRun, type Experiment, type Finding, type RunResult, type RunSpec } from './catalog.ts';
import { describeRecipe, type DataName, type ExperimentRecipe, type Scale } from './recipe.ts';

/** A run directory that holds a run made with another recipe, model or seed. */
export class RunMismatchError extends Error {}

/** How to run an experiment: scale, data, recipe, where, and how to report and stop. */
export interface ExperimentOptions {
  scale: Scale;
  data: DataName;
  /** The whole splits; the recipe's limits are applied here. */
  train: ArrayDataset;
  test: ArrayDataset;
  recipe: ExperimentRecipe;
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
  recipe: ExperimentRecipe;
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

/** What a run directory must have been made with to be continued or reused. */
function fingerprint(exp: Experiment, run: RunSpec, o: ExperimentOptions): string {
  const { block, ...spec } = run.spec;
  // Undefined fields drop out of the JSON, so the runs of the other experiments keep their fingerprints.
  const part = { classes: run.classes, perClass: run.perClass, from: run.from, runRecipe: run.recipe };
  return JSON.stringify({ experiment: exp.name, run: run.id, block: block.name, spec, shortcut: run.shortcut, data: o.data, recipe: o.recipe, seed: o.seed, ...part }, null, 2) + '\n';
}

/** A run's data (its classes and budget, when it names them) and recipe (with the weights of the run it starts from). */
function runSetup(run: RunSpec, o: ExperimentOptions, expDir: string, whole: TrainingData): { data: TrainingData; recipe: Recipe } {
  const data = run.classes ? arrayData(selectClasses(o.train, run.classes, run.perClass), selectClasses(o.test, run.classes)) : whole;
  const recipe: Recipe = { ...o.recipe, ...run.recipe, model: run.id, data: o.data, seed: o.seed };
  if (run.from !== undefined) {
    const from = runPaths(join(expDir, run.from));
    if (!existsSync(from.summary)) throw new Error(`${run.id} starts from ${run.from}, which has not finished (no ${from.summary})`);
    recipe.weights = from.checkpoint;
  }
  return { data, recipe };
}

/** The per-epoch train and test errors of a run. */
function curveOf(history: readonly MetricRecord[]): RunResult['curve'] {
  const eps = history.filter((r): r is EpochRecord => r.kind === 'epoch');
  return { epoch: eps.map((r) => r.epoch + 1), trainError: eps.map((r) => 1 - r.trainTop1), testError: eps.map((r) => 1 - (r.testTop1 ?? NaN)) };
}

/** Trains (or reads back) every run of an experiment; returns undefined when stopped by shouldStop. */
export async function runExperiment(exp: Experiment, o: ExperimentOptions): Promise<ExperimentResults | undefined> {
  const data = arrayData(o.train, o.test);
  const [channels, h, w] = o.train.shape;
  const trainImages = Math.min(o.train.labels.length, o.recipe.limitTrain ?? Infinity);
  const testImages = Math.min(o.test.labels.length, o.recipe.limitTest ?? Infinity);
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
    writeFileAtomically(join(dir, 'run.json'), fingerprint(exp, run, o));
    const { data: runData, recipe } = runSetup(run, o, expDir, data);
    const ctx: TrainingContext = { device: o.device, build: ({ inChannels, numClasses }) => buildRun(run, inChannels, numClasses) };
    const paths = runPaths(dir);
    const tag = `[${exp.name} ${i + 1}/${runs.length}] ${run.id}`;
    const size = (model: Module): Summary => summary(model, [1, channels, h, w], { depth: 0 });
    let s: Summary;
    let done: { summary: RunSummary; history: readonly MetricRecord[] };
    if (!existsSync(paths.summary)) {
      const resuming = existsSync(paths.checkpoint);
      const t = buildTraining(recipe, runData, ctx);
      s = size(t.model);
      o.log(`${tag}: ${resuming ? 'resuming' : 'training'} (${run.model}; ${s.totalParams.toLocaleString('en-US')} params, ${(s.totalMultAdds / 1e6).toFixed(2)} M mult-adds)`);
      const r = await fit({
        ...t, outDir: dir, resume: resuming, config: { experiment: exp.name, run: run.id, scale: o.scale, ...recipe }, quiet: o.quiet, shouldStop: o.shouldStop,
      });
      if (r.interrupted) return undefined;
      done = r;
    } else {
      s = size(buildModel(recipe, runData, ctx));
      o.log(`${tag}: finished earlier, reading ${paths.summary}`);
      done = RunFiles.readFinished(dir);
    }
    const sum = done.summary;
    results.push({
      id: run.id, label: run.label, model: run.model, tags: run.tags, params: s.totalParams, multAdds: s.totalMultAdds, epochs: sum.epochs,
      trainError: 1 - sum.trainAccuracy!, testError: 1 - sum.testAccuracy!, wallTime: sum.wallTime, curve: curveOf(done.history),
      trainImages: Math.min(runData.train.length, recipe.limitTrain ?? Infinity), testImages: Math.min(runData.test.length, recipe.limitTest ?? Infinity),
    });
  }
  return {
    experiment: exp.name, title: exp.title, paper: exp.paper, scale: o.scale, data: o.data, recipe: o.recipe,
    recipeText: exp.recipeText?.(o.recipe, results) ?? describeRecipe(o.recipe, trainImages, testImages), trainImages, testImages, seed: o.seed,
    hardware: o.hardware, date: new Date().toISOString(), wallTime: Number(results.reduce((a, x) => a + x.wallTime, 0).toFixed(2)),
    runs: results, finding: exp.finding(results, testImages),
  };
}
