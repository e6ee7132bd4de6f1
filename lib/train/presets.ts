// Named recipes for `train --recipe <name>`: a preset sets recipe fields, and every flag given on the command
// line overrides its field. `best` is what the fast-training literature (airbench, timm) uses, tuned on 2 CPU
// cores for Fashion-MNIST: crop-flip, random erasing, label smoothing, an EMA of the weights and flip TTA.
import type { Recipe } from './recipe.ts';

/** The recipe fields a preset sets. */
export type Preset = Partial<Omit<Recipe, 'data' | 'seed'>>;

/** The presets by name ('default' sets nothing: the flags' own defaults). */
export const PRESETS: Readonly<Record<string, Preset>> = {
  default: {},
  best: {
    model: 'resnet20',
    // 25 epochs: 88–100 s each as two single-thread ranks on 2 EPYC cores (README), ≈ 40 min with room under 45
    // for a slow epoch; 27 epochs took 45 min 52 s (94.89 %), 30 epochs reached ≥ 94.5 % from epoch 25.
    epochs: 25,
    batchSize: 128,
    optimizer: 'sgd',
    lr: 0.1,
    momentum: 0.9,
    nesterov: true,
    weightDecay: 5e-4,
    schedule: 'cosine',
    warmupEpochs: 1,
    labelSmoothing: 0.1,
    augment: 'crop-flip',
    cropPadding: 2,
    randomErasing: 0.5,
    emaDecay: 0.999,
    tta: true,
  },
};
