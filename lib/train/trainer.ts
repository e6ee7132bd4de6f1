// The training loop: fit() trains and evaluates epoch by epoch, writes metrics, the report and a
// checkpoint each epoch (and when asked to stop) into its RunFiles, and resumes from one exactly.
import type { Device, Tensor } from '../tensor.ts';
import type { Amp } from '../device.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { LRScheduler } from '../optim/schedule.ts';
import { GradScaler } from '../optim/grad-scaler.ts';
import type { DataLoader } from '../data/loader.ts';
import { rank as distRank, worldSize as distWorldSize, type DistributedDataParallel } from '../distributed/index.ts';
import { Progress, type EpochRecord, type MetricRecord } from './metrics.ts';
import { recipeDifferences, type Recipe } from './recipe.ts';
import { RunFiles } from './run-files.ts';
import { savedRecipe, type CheckpointInfo } from './checkpoint.ts';
import { summarize, type ConfigValue, type RunSummary } from './summary.ts';
import { eagerStep, type StepFactory, type TrainStep } from './step.ts';
import { withOomRetry } from './oom-retry.ts';
import { evaluate } from './evaluate.ts';
import { freshRunning, trainEpoch, type FitState } from './epoch.ts';
import { overRanks } from './ranks.ts';
import type { ModelEma } from './ema.ts';

export interface FitOptions {
  model: Module;
  optimizer: Optimizer<{ lr: number }>;
  schedule: LRScheduler;
  train: DataLoader;
  test?: DataLoader;
  epochs: number;
  /** Where metrics.jsonl, summary.json, report.html and checkpoint.safetensors go. */
  outDir: string;
  resume?: boolean;
  /** Resume even when the checkpoint was made with a different recipe or world size. */
  forceResume?: boolean;
  labelSmoothing?: number;
  clipGradNorm?: number;
  amp?: Amp;
  /** Created for fp16 when not given. */
  scaler?: GradScaler;
  device?: Device;
  /** Kept in the checkpoint; resuming with a different one is refused (ResumeMismatchError). */
  recipe?: Recipe;
  /** Name recorded in summary.json (default: the recipe's model). */
  modelName?: string;
  /** Flags recorded in summary.json. */
  config?: { readonly [k: string]: ConfigValue };
  /** Steps per point of the training-loss curve. */
  logEvery?: number;
  quiet?: boolean;
  /** Polled after every step; true saves a checkpoint and returns with interrupted set. */
  shouldStop?: () => boolean;
  /** Makes the training step (default: eagerStep; graphStep for CUDA graphs). */
  step?: StepFactory;
  /** A CUDA out-of-memory retries the batch in smaller slices instead of ending the run (withOomRetry). */
  oomRetry?: boolean;
  /** The forward evaluate() scores (default: the model's, or the EMA's). */
  evalForward?: (x: Tensor) => Tensor;
  /**
   * A weight average (timm's --model-ema): updated after every step, evaluated instead of the model (with
   * evalForward when given), and checkpointed, so a resumed run continues it exactly.
   */
  ema?: ModelEma;
  /**
   * Data-parallel training: forward through ddp (rank 0's buffers), gradients averaged over ranks
   * after backward, metrics summed over ranks; only rank 0 writes files. The loaders must be
   * sharded (LoaderOptions.shard). Stopping and NaN checks are agreed by all ranks each step.
   */
  ddp?: DistributedDataParallel<Module>;
  /** Kept in the checkpoint for whoever uses it as weights: class names, eval preset (buildTraining fills it in). */
  info?: CheckpointInfo;
}

export interface FitResult {
  summary: RunSummary;
  /** The step and epoch records of the whole run (as metrics.jsonl holds them). */
  history: readonly MetricRecord[];
  interrupted: boolean;
}

/** --resume of a checkpoint made with another recipe or world size; `differences` names the fields. */
export class ResumeMismatchError extends Error {
  constructor(readonly differences: { field: keyof Recipe | 'worldSize'; saved: unknown; now: unknown }[]) {
    super(`the checkpoint was made with a different ${differences.map((d) => `${d.field} (${JSON.stringify(d.saved)}, now ${JSON.stringify(d.now)})`).join(', ')}`);
  }
}

/** Restores a checkpoint into the run, after refusing one of a different recipe or world size. */
function resumeFrom(files: RunFiles, o: FitOptions, scaler: GradScaler | undefined, world: number): FitState {
  let ck: ReturnType<RunFiles['readCheckpoint']>;
  try {
    ck = files.readCheckpoint(o.model, o.optimizer, o.ema?.module);
  } catch (e) {
    // Another --model (or optimizer) does not fit the checkpoint's tensors: name the flags that differ, as below.
    const saved = savedRecipe(files.paths.checkpoint);
    const diffs = saved && o.recipe ? recipeDifferences(saved as unknown as Recipe, o.recipe) : [];
    if (diffs.length && !o.forceResume) throw new ResumeMismatchError(diffs);
    throw e;
  }
  try {
    const st = ck.state;
    const run = st.run ?? { history: [], running: freshRunning(), wallTime: 0, worldSize: world };
    const diffs: ResumeMismatchError['differences'] = run.recipe && o.recipe ? recipeDifferences(run.recipe, o.recipe) : [];
    if (run.worldSize !== world) diffs.push({ field: 'worldSize', saved: run.worldSize, now: world });
    if (diffs.length && !o.forceResume) throw new ResumeMismatchError(diffs);
    ck.apply();
    // A checkpoint of a run without an average (resumed with --force-resume): the average starts from its weights.
    if (o.ema && !ck.hasEma) o.ema.set(o.model);
    o.schedule.loadStateDict(st.scheduler);
    if (scaler && st.scaler) scaler.loadStateDict(st.scaler);
    // Mid-epoch sums are the totals over ranks: rank 0 resumes them, the others start from zero.
    if (files.writer) return { ...st, run: { ...run, recipe: o.recipe, worldSize: world } };
    return { ...st, run: { ...run, running: { ...freshRunning(), windowLoss: run.running.windowLoss, windowSteps: run.running.windowSteps }, recipe: o.recipe, worldSize: world } };
  } finally {
    ck.dispose();
  }
}

/** Trains for o.epochs epochs (continuing a checkpoint with o.resume) and returns the summary. */
export async function fit(o: FitOptions): Promise<FitResult> {
  const { model, optimizer, schedule, epochs, device = 'cpu', amp, ddp } = o;
  const world = distWorldSize();
  if (world > 1 && !ddp) throw new Error('fit: a distributed process group is initialised but no ddp wrapper was given');
  if (world > 1 && (!o.train.options.shard || (o.test && !o.test.options.shard))) throw new Error('fit: data-parallel training needs sharded loaders (LoaderOptions.shard)');
  const files = new RunFiles(o.outDir, distRank() === 0);
  const scaler = o.scaler ?? (amp === 'fp16' ? new GradScaler() : undefined);
  const resuming = o.resume === true && files.checkpointExists();
  const kept = resuming ? undefined : files.keepPrevious();
  if (kept && !o.quiet) console.log(`${o.outDir} held an earlier run's checkpoint (not resumed): its files are now in ${kept}`);
  const st: FitState = resuming ? resumeFrom(files, o, scaler, world)
    : { epoch: 0, batch: 0, globalStep: 0, scheduler: { steps: 0 }, run: { history: [], running: freshRunning(), wallTime: 0, worldSize: world, recipe: o.recipe } };
  if (resuming && !o.quiet && files.writer) console.log(`resuming at epoch ${st.epoch + 1} of ${epochs}, batch ${st.batch} (step ${st.globalStep})`);
  files.startMetrics(st.run.history);
  const sessionStart = performance.now();
  const wall = (): number => st.run.wallTime + (performance.now() - sessionStart) / 1000;
  // Mid-epoch running sums are per rank: the checkpoint holds their totals.
  const save = (s: FitState): void => {
    const [lossSum, top1, top5, seen] = overRanks([s.run.running.lossSum, s.run.running.top1, s.run.running.top5, s.run.running.seen]) as [number, number, number, number];
    files.saveCheckpoint(model, optimizer, { ...s, scheduler: schedule.stateDict(), scaler: scaler?.stateDict(), run: { ...s.run, running: { ...s.run.running, lossSum, top1, top5, seen }, wallTime: wall() } }, o.info, o.ema?.module);
  };
  const summary = (): RunSummary => summarize(st.run.history, { steps: st.globalStep, wallTime: wall(), model: o.modelName ?? o.recipe?.model, worldSize: world, device, flags: o.config ?? {} });
  const title = `${o.modelName ?? o.recipe?.model ?? 'model'} training report`;
  const progress = new Progress((o.quiet ?? false) || !files.writer);
  const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const factory = o.oomRetry
    ? withOomRetry(o.step ?? eagerStep, (chunks, n, e) =>
      progress.log(`CUDA out of memory on a batch of ${n} (asked ${mib(e.requestedBytes)}, ${mib(e.freeBytes)} free); training it in ${chunks} slices from now on`))
    : o.step ?? eagerStep;
  const step = withEma(factory({ model, ddp, optimizer, scaler, clipGradNorm: o.clipGradNorm, labelSmoothing: o.labelSmoothing ?? 0, amp, device }), model, o.ema, st);
  const epochOptions = { loader: o.train, step, schedule, optimizer, epochs, logEvery: o.logEvery ?? 50, progress, files, shouldStop: o.shouldStop };
  model.train();
  for (; st.epoch < epochs; st.epoch++) {
    const end = await trainEpoch(st, epochOptions);
    if (end.stopped) {
      save(st);
      progress.log(`stopped at epoch ${st.epoch + 1}, batch ${st.batch}/${o.train.numBatches}; checkpoint saved to ${files.paths.checkpoint} (continue with --resume)`);
      return { summary: summary(), history: st.run.history, interrupted: true };
    }
    const test = o.test ? await evaluate(o.ema ?? model, o.test, { amp, device, labelSmoothing: o.labelSmoothing, forward: o.evalForward }) : undefined;
    const rec = epochRecord(st, end, test, optimizer.groups[0]!.lr);
    st.run.history.push(rec);
    files.appendMetric(rec);
    progress.log(describeEpoch(rec, epochs));
    st.batch = 0;
    st.run.running = freshRunning();
    save({ ...st, epoch: st.epoch + 1 });
    files.writeReport(title, st.run.history, summary());
  }
  const s = summary();
  files.writeSummary(s);
  files.writeReport(title, st.run.history, s);
  return { summary: s, history: st.run.history, interrupted: false };
}

/** The step followed by the average's update (timm's model_ema.update(model, step=num_updates)) when the step was applied. */
function withEma(step: TrainStep, model: Module, ema: ModelEma | undefined, st: FitState): TrainStep {
  if (!ema) return step;
  return (b, agree) => {
    const r = step(b, agree);
    if (Number.isFinite(r.loss)) ema.update(model, st.globalStep + 1);
    return r;
  };
}

/** The epoch's record: training sums over all ranks, the test numbers, throughput and time. */
function epochRecord(st: FitState, end: { images: number; startedAt: number; trainSeconds: number }, test: { loss: number; top1: number; top5: number } | undefined, lr: number): EpochRecord {
  const r = st.run.running;
  const [lossSum, top1, top5, seen, images] = overRanks([r.lossSum, r.top1, r.top5, r.seen, end.images]) as [number, number, number, number, number];
  return {
    kind: 'epoch', epoch: st.epoch, step: st.globalStep, lr,
    trainLoss: lossSum / seen, trainTop1: top1 / seen, trainTop5: top5 / seen,
    testLoss: test?.loss, testTop1: test?.top1, testTop5: test?.top5,
    imagesPerSec: Number((images / end.trainSeconds).toFixed(1)), epochTime: Number(((performance.now() - end.startedAt) / 1000).toFixed(2)),
  };
}

function describeEpoch(rec: EpochRecord, epochs: number): string {
  return `epoch ${rec.epoch + 1}/${epochs}: train loss ${rec.trainLoss.toFixed(4)} top1 ${(100 * rec.trainTop1).toFixed(2)}%` +
    (rec.testTop1 !== undefined ? ` | test loss ${rec.testLoss!.toFixed(4)} top1 ${(100 * rec.testTop1).toFixed(2)}% top5 ${(100 * rec.testTop5!).toFixed(2)}%` : '') +
    ` | ${rec.imagesPerSec} img/s | ${rec.epochTime}s`;
}
