// Runs an experiment: each net trains with fit() in DIR/<experiment>/<run>/ (DIR/<experiment>/<run>-seed<s>/ with
// several seeds; a finished run, one with a summary.json, is read back; an interrupted one resumes from its
// checkpoint), then the results (means and ranges over the seeds) are gathered for results.json, table.md and report.html.
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
  /** Each net trains once per seed; the table shows the mean and the range. */
  seeds: number[];
  device: Device;
  /** Channels-last images and weights (speed only: what is learned does not change). */
  channelsLast?: boolean;
  /** Described in results.json (e.g. '2 CPU threads'). */
  hardware: string;
  quiet: boolean;
  shouldStop: () => boolean;
  log: (line: string) => void;
  /** Trains the unfinished jobs elsewhere (e.g. `--jobs N` child processes) before the results are read back; false when stopped. */
  trainJobs?: (pending: ExperimentJob[]) => Promise<boolean>;
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
  seeds: number[];
  hardware: string;
  date: string;
  /** Sum of the runs' wall times, seconds. */
  wallTime: number;
  runs: RunResult[];
  finding: Finding;
}

/** What a run directory must have been made with to be continued or reused. */
function fingerprint(exp: Experiment, run: RunSpec, o: ExperimentOptions, seed: number): string {
  // Undefined fields drop out of the JSON, so the runs of the other experiments keep their fingerprints.
  const part = { classes: run.classes, perClass: run.perClass, from: run.from, runRecipe: run.recipe };
  const common = { data: o.data, recipe: o.recipe, seed, ...part };
  if (run.densenet) return JSON.stringify({ experiment: exp.name, run: run.id, densenet: run.densenet, ...common }, null, 2) + '\n';
  const { block, ...spec } = run.spec!;
  return JSON.stringify({ experiment: exp.name, run: run.id, block: block.name, spec, shortcut: run.shortcut, ...common }, null, 2) + '\n';
}

/** A run's data (its classes and budget, when it names them) and recipe (with the weights of the same seed's run it starts from). */
function runSetup(run: RunSpec, o: ExperimentOptions, expDir: string, whole: TrainingData, seed: number): { data: TrainingData; recipe: Recipe } {
  const data = run.classes ? arrayData(selectClasses(o.train, run.classes, run.perClass), selectClasses(o.test, run.classes)) : whole;
  const recipe: Recipe = { ...o.recipe, ...run.recipe, model: run.id, data: o.data, seed };
  if (run.from !== undefined) {
    const from = runPaths(runDir(expDir, run.from, seed, o.seeds));
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

const mean = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;

/** The curves of one net's seeds as their mean, and least and greatest when there are several. */
function curvesOf(curves: RunResult['curve'][]): RunResult['curve'] {
  if (curves.length === 1) return curves[0]!;
  const at = (k: 'trainError' | 'testError', f: (v: number[]) => number) => curves[0]!.epoch.map((_, i) => f(curves.map((c) => c[k][i]!)));
  return {
    epoch: curves[0]!.epoch, trainError: at('trainError', mean), testError: at('testError', mean),
    trainMin: at('trainError', (v) => Math.min(...v)), trainMax: at('trainError', (v) => Math.max(...v)),
    testMin: at('testError', (v) => Math.min(...v)), testMax: at('testError', (v) => Math.max(...v)),
  };
}

/** The directory of a net's run with a seed: DIR/<experiment>/<run>, or <run>-seed<s> when there are several seeds. */
const runDir = (expDir: string, id: string, seed: number, seeds: number[]): string => join(expDir, seeds.length > 1 ? `${id}-seed${seed}` : id);

/** One net of an experiment with one seed, and its run directory. */
export interface ExperimentJob {
  run: RunSpec;
  seed: number;
  dir: string;
}

/** A finished job: its summary and metrics, the net's size, and the images it saw. */
interface JobOutcome {
  seed: number;
  summary: RunSummary;
  history: readonly MetricRecord[];
  size: Summary;
  sizes: { trainImages: number; testImages: number };
}

/** Every job of an experiment (runs in order, each with every seed); a run directory made with another recipe, data or seed is refused here, before any training. */
export function experimentJobs(exp: Experiment, o: ExperimentOptions): ExperimentJob[] {
  const expDir = join(o.outDir, exp.name);
  const jobs = exp.runs(o.scale).flatMap((run) => o.seeds.map((seed) => ({ run, seed, dir: runDir(expDir, run.id, seed, o.seeds) })));
  for (const { run, seed, dir } of jobs) {
    const path = join(dir, 'run.json');
    if (existsSync(path) && readFileSync(path, 'utf8') !== fingerprint(exp, run, o, seed)) {
      throw new RunMismatchError(`${dir} holds a run made with another recipe, data or seed (see its run.json); ` +
        'choose another --out or delete that directory');
    }
  }
  return jobs;
}

/** Whether a job has finished (its summary.json exists). */
export const jobFinished = (job: ExperimentJob): boolean => existsSync(runPaths(job.dir).summary);

/** Trains a job (resuming its checkpoint) or reads it back when it has finished; undefined when stopped by shouldStop. */
async function runJob(exp: Experiment, o: ExperimentOptions, job: ExperimentJob, tag: string): Promise<JobOutcome | undefined> {
  const { run, seed, dir } = job;
  const [channels, h, w] = o.train.shape;
  const size = (model: Module): Summary => summary(model, [1, channels, h, w], { depth: 0 });
  mkdirSync(dir, { recursive: true });
  writeFileAtomically(join(dir, 'run.json'), fingerprint(exp, run, o, seed));
  const { data: runData, recipe } = runSetup(run, o, join(o.outDir, exp.name), arrayData(o.train, o.test), seed);
  const sizes = { trainImages: Math.min(runData.train.length, recipe.limitTrain ?? Infinity), testImages: Math.min(runData.test.length, recipe.limitTest ?? Infinity) };
  const ctx: TrainingContext = { device: o.device, channelsLast: o.channelsLast, build: ({ inChannels, numClasses }) => buildRun(run, inChannels, numClasses) };
  const paths = runPaths(dir);
  if (existsSync(paths.summary)) {
    o.log(`${tag}: finished earlier, reading ${paths.summary}`);
    return { seed, ...RunFiles.readFinished(dir), size: size(buildModel(recipe, runData, ctx)), sizes };
  }
  const resuming = existsSync(paths.checkpoint);
  const t = buildTraining(recipe, runData, ctx);
  const s = size(t.model);
  o.log(`${tag}: ${resuming ? 'resuming' : 'training'} (${run.model}; ${s.totalParams.toLocaleString('en-US')} params, ${(s.totalMultAdds / 1e6).toFixed(2)} M mult-adds)`);
  const r = await fit({
    ...t, outDir: dir, resume: resuming, config: { experiment: exp.name, run: run.id, scale: o.scale, ...recipe }, quiet: o.quiet, shouldStop: o.shouldStop,
  });
  return r.interrupted ? undefined : { seed, ...r, size: s, sizes };
}

/** Trains (or finishes) one job of an experiment, named by run id and seed (what `experiment --job` does in each process of `--jobs N`); false when stopped by shouldStop. */
export async function runExperimentJob(exp: Experiment, o: ExperimentOptions, id: string, seed: number): Promise<boolean> {
  const job = experimentJobs(exp, o).find((j) => j.run.id === id && j.seed === seed);
  if (!job) throw new Error(`${exp.name} has no run ${id} with seed ${seed} (runs: ${exp.runs(o.scale).map((r) => r.id).join(', ')}; seeds: ${o.seeds.join(', ')})`);
  return (await runJob(exp, o, job, `[${exp.name}] ${id} seed ${seed}`)) !== undefined;
}

/**
 * Trains (or reads back) every run of an experiment and gathers the results; undefined when stopped by shouldStop.
 * With o.trainJobs, the unfinished jobs are handed to it first (e.g. to train them in parallel processes), and
 * every run is then read back from its directory.
 */
export async function runExperiment(exp: Experiment, o: ExperimentOptions): Promise<ExperimentResults | undefined> {
  const trainImages = Math.min(o.train.labels.length, o.recipe.limitTrain ?? Infinity);
  const testImages = Math.min(o.test.labels.length, o.recipe.limitTest ?? Infinity);
  const runs = exp.runs(o.scale);
  const jobs = experimentJobs(exp, o);
  if (o.trainJobs) {
    const pending = jobs.filter((j) => !jobFinished(j));
    if (pending.length > 0 && !(await o.trainJobs(pending))) return undefined;
  }
  const results: RunResult[] = [];
  for (const [i, run] of runs.entries()) {
    const done: JobOutcome[] = [];
    for (const job of jobs.filter((j) => j.run.id === run.id)) {
      const r = await runJob(exp, o, job, `[${exp.name} ${i + 1}/${runs.length}] ${run.id}${o.seeds.length > 1 ? ` seed ${job.seed}` : ''}`);
      if (!r) return undefined;
      done.push(r);
    }
    const s = done[0]!.size;
    const seeds = done.map((d) => ({ seed: d.seed, trainError: 1 - d.summary.trainAccuracy!, testError: 1 - d.summary.testAccuracy!, wallTime: d.summary.wallTime }));
    results.push({
      id: run.id, label: run.label, model: run.model, tags: run.tags, params: s.totalParams, multAdds: s.totalMultAdds, epochs: done[0]!.summary.epochs,
      trainError: mean(seeds.map((x) => x.trainError)), testError: mean(seeds.map((x) => x.testError)),
      wallTime: Number(seeds.reduce((a, x) => a + x.wallTime, 0).toFixed(2)), curve: curvesOf(done.map((d) => curveOf(d.history))), seeds, ...done[0]!.sizes,
    });
  }
  return {
    experiment: exp.name, title: exp.title, paper: exp.paper, scale: o.scale, data: o.data, recipe: o.recipe,
    recipeText: exp.recipeText?.(o.recipe, results) ?? describeRecipe(o.recipe, trainImages, testImages), trainImages, testImages, seeds: o.seeds,
    hardware: o.hardware, date: new Date().toISOString(), wallTime: Number(results.reduce((a, x) => a + x.wallTime, 0).toFixed(2)),
    runs: results, finding: exp.finding(results, testImages),
  };
}
