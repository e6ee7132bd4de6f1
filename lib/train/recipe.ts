// One training recipe: the Recipe type (everything that decides a run's numbers) and buildTraining(),
// which turns a recipe and its data into the model, optimizer, schedule and loaders that fit() runs.
// scripts/train.ts makes a Recipe from its flags; the paper experiments are presets of it.
import { manualSeed } from '../creation.ts';
import type { Amp } from '../device.ts';
import { DataLoader, type BatchSource } from '../data/loader.ts';
import { centerCrop, compose, normalize, randomCrop, randomHorizontalFlip, randomResizedCrop, type Transform } from '../data/transforms.ts';
import { DistributedDataParallel, convertSyncBatchNorm } from '../distributed/index.ts';
import { create, family } from '../models/registry.ts';
import type { Module } from '../nn/module.ts';
import { AdamW } from '../optim/adamw.ts';
import { noDecayOnNormAndBias } from '../optim/groups.ts';
import type { Optimizer, ParamGroup } from '../optim/optimizer.ts';
import { LRScheduler, constant, cosine, multiStep, oneCycle, warmup, type LrFn } from '../optim/schedule.ts';
import { SGD } from '../optim/sgd.ts';
import type { Device, Tensor } from '../tensor.ts';
import { randomErasing } from '../data/random-erasing.ts';
import type { TrainingData } from './data.ts';
import type { CheckpointInfo } from './checkpoint.ts';
import { applyFreeze, headParams, loadRecipeWeights, type FreezeSpec } from './transfer.ts';
import { ModelEma } from './ema.ts';
import { ttaForward } from './tta.ts';

/** Everything that decides a run's numbers: resuming with a different recipe mixes two runs. */
export interface Recipe {
  /** Registry name (or the name of the net a custom builder makes). */
  model: string;
  /** Dataset name or folder, as loadTrainingData takes it. */
  data: string;
  epochs: number;
  batchSize: number;
  evalBatchSize: number;
  optimizer: 'sgd' | 'adamw';
  /** Peak learning rate. */
  lr: number;
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  /** Decay BatchNorm weights and biases too (by default the 1-D parameters are not decayed). */
  decayNormAndBias: boolean;
  /** Stepped per batch. */
  schedule: 'cosine' | 'multistep' | 'onecycle' | 'constant';
  /** Linear warm-up from lr/10 before cosine, multistep or constant, in epochs (may be fractional). */
  warmupEpochs: number;
  /** multistep: epochs where the lr drops ×0.1 (default: 50 % and 75 % of the epochs). */
  milestones?: number[];
  labelSmoothing: number;
  /** Clip the gradient norm to this value. */
  clipGrad?: number;
  /** In-memory images: random crop with zero padding of cropPadding, horizontal flip, both or neither. */
  augment: 'crop-flip' | 'crop' | 'flip' | 'none';
  cropPadding: number;
  /** Image folders: the training crop (RandomResizedCrop) and test centre crop. */
  imageSize?: number;
  /** Only the first n training / test images (all when undefined). */
  limitTrain?: number;
  limitTest?: number;
  /** Initialisation, shuffling and augmentation. */
  seed: number;
  amp?: Amp;
  /** Data-parallel: BatchNorm statistics over the global batch. */
  syncBn: boolean;
  // Transfer learning (lib/train/transfer.ts).
  /** Start from these weights: a published name (IMAGENET1K_V2, DEFAULT), a .pth/.safetensors file or a resnet-ts checkpoint. */
  weights?: string;
  /** What stays fixed: none (the default), backbone (all but the classifier), stages:N (the stem and the first N stages). */
  freeze?: FreezeSpec;
  /** The classifier's learning rate (its own parameter groups, scheduled like the rest); default lr. */
  headLr?: number;
  /** A folder without val/: the fraction of each class held out for testing (seeded by seed). */
  valSplit?: number;
  // The pieces `train --recipe best` adds (lib/train/presets.ts); each is off when absent.
  /** torchvision's RandomErasing with this probability per training image, after normalisation (the box becomes the mean pixel). */
  randomErasing?: number;
  /** An exponential moving average of the weights with this decay (timm's --model-ema-decay), evaluated and checkpointed instead of the raw model. */
  emaDecay?: number;
  /** timm's EMA warm-up: the decay ramps as 1 - (1 + step)^(-2/3) up to emaDecay. */
  emaWarmup?: boolean;
  /** Evaluate with test-time flips: the mean of the logits of each image and its mirror. */
  tta?: boolean;
}

/** A recipe that cannot be built from; field names the part at fault. */
export class RecipeError extends Error {
  constructor(readonly field: keyof Recipe, message: string) {
    super(message);
  }
}

/** Where and how the run executes: none of it changes what is learned. */
export interface TrainingContext {
  device: Device;
  /** Data-parallel rank and world size (the loaders are sharded and the model wrapped when world > 1). */
  rank?: number;
  world?: number;
  /** Batches prepared ahead of the one training. */
  workers?: number;
  channelsLast?: boolean;
  /** Builds the net instead of the registry (the experiments' nets are not registry names). */
  build?: (o: { inChannels: number; numClasses: number }) => Module;
}

/** A recipe built: what fit() runs (spread it into fit's options). */
export interface Training {
  model: Module;
  optimizer: Optimizer<{ lr: number }>;
  schedule: LRScheduler;
  train: DataLoader;
  test: DataLoader;
  /** The data-parallel wrapper (world > 1); the replicas start from rank 0's weights. */
  ddp?: DistributedDataParallel<Module>;
  device: Device;
  epochs: number;
  labelSmoothing: number;
  clipGradNorm?: number;
  amp?: Amp;
  recipe: Recipe;
  /** What the checkpoint records for inference: the classes and, for folders, the eval preset. */
  info: CheckpointInfo;
  /** The weight average fit() updates after each step and evaluates (recipe.emaDecay). */
  ema?: ModelEma;
  /** What evaluation scores when it is not the plain forward (recipe.tta). */
  evalForward?: (x: Tensor) => Tensor;
}

/** The recipe's net for the data's channels and classes, seeded, with its weights loaded and its freeze applied, on the device. */
export function buildModel(r: Recipe, data: Pick<TrainingData, 'channels' | 'classes'>, ctx: Pick<TrainingContext, 'device' | 'build'>): Module {
  manualSeed(r.seed);
  const opts = { inChannels: data.channels, numClasses: data.classes.length };
  let model: Module;
  try {
    model = ctx.build ? ctx.build(opts) : create(r.model, opts);
  } catch (e) {
    throw new RecipeError('model', (e as Error).message);
  }
  if (!ctx.build && family(r.model) === 'imagenet' && data.channels !== 3) {
    throw new RecipeError('model', `${r.model} expects 3-channel images; use a CIFAR-family model (e.g. resnet20) for ${r.data}`);
  }
  loadRecipeWeights(r, model, data.classes);
  applyFreeze(model, r.freeze);
  return model.to(ctx.device);
}

// Frozen parameters stay out; the classifier's get groups of their own when the recipe has a headLr.
function optimizerOf(r: Recipe, model: Module): Optimizer<{ lr: number }> {
  const named = model.namedParameters().filter(([, p]) => p.requiresGrad);
  const head = headParams(r, model);
  const split = (ps: [string, Tensor][], lr?: number): ParamGroup<{ lr: number; weightDecay: number }>[] =>
    (r.decayNormAndBias ? [{ params: ps.map(([, p]) => p) }] : noDecayOnNormAndBias<{ lr: number; weightDecay: number }>(ps, r.weightDecay))
      .map((g) => (lr === undefined ? g : { ...g, options: { ...g.options, lr } }));
  const groups = [...split(named.filter(([, p]) => !head.has(p))), ...split(named.filter(([, p]) => head.has(p)), r.headLr)].filter((g) => g.params.length);
  if (!groups.length) throw new RecipeError('freeze', `${r.freeze}: nothing is left to train`);
  return r.optimizer === 'sgd'
    ? new SGD(groups, { lr: r.lr, momentum: r.momentum, nesterov: r.nesterov, weightDecay: r.weightDecay })
    : new AdamW(groups, { lr: r.lr, weightDecay: r.weightDecay });
}

/** The learning rate (and, for one-cycle, momentum) as functions of the step. */
function scheduleOf(r: Recipe, stepsPerEpoch: number): { lr: LrFn; momentum?: (step: number) => number } {
  const total = r.epochs * stepsPerEpoch;
  const warm = Math.min(Math.round(r.warmupEpochs * stepsPerEpoch), total - 1);
  switch (r.schedule) {
    case 'onecycle':
      return oneCycle(total, { maxMomentum: r.optimizer === 'sgd' ? Math.max(r.momentum, 0.85) : 0.95 });
    case 'multistep': {
      const ms = r.milestones ?? [Math.round(r.epochs * 0.5), Math.round(r.epochs * 0.75)];
      return { lr: warmup(warm, multiStep(ms.map((e) => e * stepsPerEpoch - warm)), 0.1) };
    }
    case 'constant':
      return { lr: warmup(warm, constant(), 0.1) };
    default:
      return { lr: warmup(warm, cosine(total - warm), 0.1) };
  }
}

/** Training augmentation then normalisation; image folders always take a random resized crop and a flip. */
export function trainTransform(r: Recipe, d: TrainingData): Transform {
  const steps: Transform[] = [];
  if (d.folder) steps.push(randomResizedCrop(d.size));
  else if (r.augment === 'crop-flip' || r.augment === 'crop') steps.push(randomCrop(d.size, r.cropPadding));
  if (r.augment === 'crop-flip' || r.augment === 'flip' || d.folder) steps.push(randomHorizontalFlip());
  steps.push(normalize(d.mean, d.std));
  if (r.randomErasing) steps.push(randomErasing({ p: r.randomErasing }));
  return compose(...steps);
}

/** Test preprocessing: the centre crop of image folders, then normalisation. */
export function evalTransform(d: TrainingData): Transform {
  return d.folder ? compose(centerCrop(d.size), normalize(d.mean, d.std)) : normalize(d.mean, d.std);
}

/** The EMA and the test-time forward a recipe evaluates with: timm's --model-ema and airbench's flip TTA. */
function scoring(r: Recipe, model: Module): Pick<Training, 'ema' | 'evalForward'> {
  // The average starts as a copy of the initial weights; with warm-up its first updates copy the model instead.
  const ema = r.emaDecay !== undefined ? new ModelEma(model, { decay: r.emaDecay, warmup: r.emaWarmup ?? false }) : undefined;
  const scored = ema ?? model;
  return { ema, evalForward: r.tta ? (x) => ttaForward(scored, x) : undefined };
}

const first = (s: BatchSource, n?: number): BatchSource => (n !== undefined && n < s.length ? { length: n, load: (i) => s.load(i) } : s);

const CHOICES = { optimizer: ['sgd', 'adamw'], schedule: ['cosine', 'multistep', 'onecycle', 'constant'], augment: ['crop-flip', 'crop', 'flip', 'none'] } as const;

/**
 * The fields every run reads, checked before anything is built: a RecipeError naming the field, where a value out of
 * range or a misspelt choice ('SGD', 'Cosine') would otherwise fail deep inside, or silently pick another branch.
 */
function checkRecipe(r: Recipe): void {
  if (!r || typeof r !== 'object') throw new TypeError('buildTraining: the recipe must be an object (train.Recipe)');
  for (const [k, allowed] of Object.entries(CHOICES) as [keyof typeof CHOICES, readonly string[]][]) {
    if (!allowed.includes(r[k])) throw new RecipeError(k, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}; got ${JSON.stringify(r[k])}`);
  }
  const check = (k: keyof Recipe, ok: (v: number) => boolean, what: string): void => {
    const v = r[k];
    if (typeof v !== 'number' || !ok(v)) throw new RecipeError(k, `must be ${what}; got ${JSON.stringify(v)}`);
  };
  for (const k of ['epochs', 'batchSize', 'evalBatchSize'] as const) check(k, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  check('lr', (v) => Number.isFinite(v) && v > 0, 'a number > 0');
  check('momentum', (v) => v >= 0 && v < 1, 'in [0, 1)');
  check('weightDecay', (v) => Number.isFinite(v) && v >= 0, 'a number >= 0');
  check('warmupEpochs', (v) => Number.isFinite(v) && v >= 0, 'a number of epochs >= 0');
  check('labelSmoothing', (v) => v >= 0 && v < 1, 'in [0, 1)');
  check('cropPadding', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
  check('seed', Number.isSafeInteger, 'an integer');
  for (const k of ['nesterov', 'decayNormAndBias', 'syncBn'] as const) {
    if (typeof r[k] !== 'boolean') throw new RecipeError(k, `must be true or false; got ${JSON.stringify(r[k])}`);
  }
}

/** Builds model, optimizer (no decay on BN and biases unless asked), schedule and loaders from a recipe. */
export function buildTraining(r: Recipe, data: TrainingData, ctx: TrainingContext): Training {
  checkRecipe(r);
  const { device, rank = 0, world = 1 } = ctx;
  if (r.emaDecay !== undefined && !(r.emaDecay >= 0 && r.emaDecay < 1)) throw new RecipeError('emaDecay', `must be in [0, 1); got ${r.emaDecay}`);
  if (r.randomErasing !== undefined && !(r.randomErasing >= 0 && r.randomErasing <= 1)) throw new RecipeError('randomErasing', `must be a probability in [0, 1]; got ${r.randomErasing}`);
  const model = buildModel(r, data, ctx);
  // As torch's model.to(memory_format=torch.channels_last): the weights too, or every conv converts them per call.
  if (ctx.channelsLast) model.toChannelsLast();
  // Replicas take rank 0's parameters and buffers here (a collective: every rank reaches it).
  if (world > 1 && r.syncBn) convertSyncBatchNorm(model);
  const ddp = world > 1 ? new DistributedDataParallel(model) : undefined;
  const optimizer = optimizerOf(r, model);
  const train = first(data.train, r.limitTrain);
  const common = { device, channelsLast: ctx.channelsLast ?? false, prefetch: ctx.workers ?? 2, seed: r.seed };
  const shard = (pad: boolean) => (world > 1 ? { shard: { rank, worldSize: world, pad } } : {});
  const trainLoader = new DataLoader(train, {
    ...common, ...shard(true), batchSize: r.batchSize, shuffle: true, dropLast: train.length / world > r.batchSize, transform: trainTransform(r, data),
  });
  const testLoader = new DataLoader(first(data.test, r.limitTest), { ...common, ...shard(false), batchSize: r.evalBatchSize, transform: evalTransform(data) });
  const s = scheduleOf(r, trainLoader.numBatches);
  const { ema, evalForward } = scoring(r, model);
  return {
    model, optimizer, schedule: new LRScheduler(optimizer, s.lr, s.momentum), train: trainLoader, test: testLoader, ddp,
    device, epochs: r.epochs, labelSmoothing: r.labelSmoothing, clipGradNorm: r.clipGrad, amp: r.amp, recipe: r, info: infoOf(r, data), ema, evalForward,
  };
}

function infoOf(r: Recipe, d: TrainingData): CheckpointInfo {
  const transforms = d.folder ? { resize: d.resize ?? Math.round(d.size / 0.875), crop: d.size, mean: d.mean, std: d.std } : undefined;
  return { model: r.model, classes: [...d.classes], ...(transforms ? { transforms } : {}) };
}

// Fields that may change when a run is resumed: they do not change what is trained.
const RESUME_NEUTRAL: ReadonlySet<keyof Recipe> = new Set(['evalBatchSize']);

/** The fields in which two recipes differ (those that change the run), with both values. */
export function recipeDifferences(saved: Recipe, now: Recipe): { field: keyof Recipe; saved: unknown; now: unknown }[] {
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(now)])] as (keyof Recipe)[];
  return keys
    .filter((k) => !RESUME_NEUTRAL.has(k) && JSON.stringify(saved[k]) !== JSON.stringify(now[k]))
    .map((k) => ({ field: k, saved: saved[k], now: now[k] }));
}
