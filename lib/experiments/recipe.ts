// The training recipe every run of an experiment shares, per scale, as a preset of the one Recipe:
// `quick` fits 2 CPU cores in minutes, `medium` trains on the whole training set with two seeds (degradation: 65 minutes
// on 2 CPU cores with `--jobs 2`, measured), `full` is the papers' CIFAR schedule (He et al. 2015 sec. 4.2) for a GPU.
import type { Recipe } from '../train/recipe.ts';
import { transferRecipe } from './transfer.ts';

export type Scale = 'quick' | 'medium' | 'full';
export type DataName = 'fashion-mnist' | 'cifar10';

export const SCALES: readonly Scale[] = ['quick', 'medium', 'full'];
export const DATASETS: readonly DataName[] = ['fashion-mnist', 'cifar10'];

/** An experiment's recipe: the training Recipe without what each run or invocation sets (the net, the data, the seed). */
export type ExperimentRecipe = Omit<Recipe, 'model' | 'data' | 'seed'>;

/**
 * The recipe of a scale. quick: SGD 0.1, cosine with a short warm-up, 4 epochs on a training subset, flips
 * (plus 4-pixel crops on CIFAR); the bottleneck nets of `cardinality` are ~2.5x slower per image on CPU,
 * so they see fewer images. full: 164 epochs, lr 0.1 divided by 10 at 50 % and 75 %, weight decay 1e-4,
 * batch 128, crops (4 pixels on CIFAR, 2 on Fashion-MNIST) and flips, and one warm-up epoch from lr 0.01
 * (the paper's 400 iterations for ResNet-110).
 */
export function recipeFor(scale: Scale, data: DataName, experiment: string): ExperimentRecipe {
  if (experiment === 'transfer') return transferRecipe(scale, data);
  const common = { batchSize: 128, evalBatchSize: 500, optimizer: 'sgd', lr: 0.1, momentum: 0.9, nesterov: false, decayNormAndBias: false, labelSmoothing: 0, cropPadding: data === 'cifar10' ? 4 : 2, syncBn: false } as const;
  if (scale === 'quick') {
    return {
      ...common, epochs: 4, limitTrain: experiment === 'cardinality' ? 5000 : 8000, limitTest: 4000,
      weightDecay: 5e-4, schedule: 'cosine', warmupEpochs: 0.3, augment: data === 'cifar10' ? 'crop-flip' : 'flip',
    };
  }
  if (scale === 'medium') {
    // Every training and test image; the epochs are what 2 CPU cores fit: 4 for degradation (~1,900 steps a
    // net, two seeds), 3 for the slower DenseNets.
    return { ...common, epochs: experiment === 'densenet' ? 3 : 4, weightDecay: 5e-4, schedule: 'cosine', warmupEpochs: 0.3, augment: data === 'cifar10' ? 'crop-flip' : 'flip' };
  }
  return { ...common, epochs: 164, weightDecay: 1e-4, schedule: 'multistep', warmupEpochs: 1, milestones: [82, 123], augment: 'crop-flip' };
}

/** The seeds each net of an experiment trains with at a scale: two at medium (to show the run-to-run spread), else one. */
export function seedsFor(scale: Scale, seed = 0): number[] {
  return scale === 'medium' ? [seed, seed + 1] : [seed];
}

/** The recipe with command-line overrides (a changed epoch count moves multistep milestones with it). */
export function withOverrides(r: ExperimentRecipe, o: { epochs?: number; limitTrain?: number; limitTest?: number }): ExperimentRecipe {
  const out: ExperimentRecipe = { ...r };
  if (o.epochs !== undefined) {
    out.epochs = o.epochs;
    if (r.milestones) out.milestones = [Math.round(o.epochs * 0.5), Math.round(o.epochs * 0.75)];
    out.warmupEpochs = Math.min(r.warmupEpochs, o.epochs / 4);
  }
  if (o.limitTrain !== undefined) out.limitTrain = o.limitTrain;
  if (o.limitTest !== undefined) out.limitTest = o.limitTest;
  return out;
}

/** One line describing a recipe, for tables and reports. */
export function describeRecipe(r: ExperimentRecipe, trainImages: number | 'all', testImages: number | 'all'): string {
  const sched = r.schedule === 'multistep' ? `÷10 at epochs ${r.milestones!.join(', ')}` : r.schedule;
  const aug = { 'crop-flip': `${r.cropPadding}-px crop + flip`, crop: `${r.cropPadding}-px crop`, flip: 'flip', none: 'no augmentation' }[r.augment];
  return `${trainImages} train / ${testImages} test images, ${r.epochs} epoch${r.epochs === 1 ? '' : 's'}, batch ${r.batchSize}, SGD lr ${r.lr} (${sched}, ` +
    `${r.warmupEpochs}-epoch warm-up), momentum ${r.momentum}, weight decay ${r.weightDecay}, ${aug}`;
}
