// The one training recipe every run of an experiment shares, per scale: `quick` fits 2 CPU cores in
// minutes, `full` is the papers' CIFAR schedule (He et al. 2015 sec. 4.2) for a GPU.

export type Scale = 'quick' | 'full';
export type DataName = 'fashion-mnist' | 'cifar10';

export const SCALES: readonly Scale[] = ['quick', 'full'];
export const DATASETS: readonly DataName[] = ['fashion-mnist', 'cifar10'];

/** Everything that decides a run's numbers besides the model and the seed. */
export interface Recipe {
  epochs: number;
  /** First n training / test images (all when undefined). */
  limitTrain?: number;
  limitTest?: number;
  batchSize: number;
  lr: number;
  momentum: number;
  /** Applied to conv and fc weights; BN parameters and biases are not decayed. */
  weightDecay: number;
  schedule: 'cosine' | 'multistep';
  /** Linear warm-up from lr/10, in epochs. */
  warmupEpochs: number;
  /** multistep: epochs where the lr drops ×0.1. */
  milestones?: number[];
  /** Random crop with zero padding of cropPadding, then horizontal flip; or the flip alone. */
  augment: 'crop-flip' | 'flip';
  cropPadding: number;
}

/**
 * The recipe of a scale. quick: SGD 0.1, cosine with a short warm-up, 4 epochs on a training subset, flips
 * (plus 4-pixel crops on CIFAR); the bottleneck nets of `cardinality` are ~2.5x slower per image on CPU,
 * so they see fewer images. full: 164 epochs, lr 0.1 divided by 10 at 50 % and 75 %, weight decay 1e-4,
 * batch 128, crops (4 pixels on CIFAR, 2 on Fashion-MNIST) and flips, and one warm-up epoch from lr 0.01
 * (the paper's 400 iterations for ResNet-110).
 */
export function recipeFor(scale: Scale, data: DataName, experiment: string): Recipe {
  const cropPadding = data === 'cifar10' ? 4 : 2;
  if (scale === 'quick') {
    return {
      epochs: 4, limitTrain: experiment === 'cardinality' ? 5000 : 8000, limitTest: 4000, batchSize: 128,
      lr: 0.1, momentum: 0.9, weightDecay: 5e-4, schedule: 'cosine', warmupEpochs: 0.3, augment: data === 'cifar10' ? 'crop-flip' : 'flip', cropPadding,
    };
  }
  return {
    epochs: 164, batchSize: 128, lr: 0.1, momentum: 0.9, weightDecay: 1e-4, schedule: 'multistep', warmupEpochs: 1,
    milestones: [82, 123], augment: 'crop-flip', cropPadding,
  };
}

/** The recipe with command-line overrides (a changed epoch count moves multistep milestones with it). */
export function withOverrides(r: Recipe, o: { epochs?: number; limitTrain?: number; limitTest?: number }): Recipe {
  const out: Recipe = { ...r };
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
export function describeRecipe(r: Recipe, trainImages: number | 'all', testImages: number | 'all'): string {
  const sched = r.schedule === 'cosine' ? 'cosine' : `÷10 at epochs ${r.milestones!.join(', ')}`;
  const aug = r.augment === 'crop-flip' ? `${r.cropPadding}-px crop + flip` : 'flip';
  return `${trainImages} train / ${testImages} test images, ${r.epochs} epoch${r.epochs === 1 ? '' : 's'}, batch ${r.batchSize}, SGD lr ${r.lr} (${sched}, ` +
    `${r.warmupEpochs}-epoch warm-up), momentum ${r.momentum}, weight decay ${r.weightDecay}, ${aug}`;
}
