// Transfer learning on real data (issue 17 item 5), after Yosinski et al. 2014: a ResNet-20 pretrained on one half
// of the classes (0-4, all their training images) learns the other half (5-9) from a small budget, with its
// backbone frozen or fine-tuned, against the same net from scratch; same steps, seed and head initialisation.
import { CIFAR } from '../models/cifar.ts';
import type { Experiment, RunResult, RunSpec } from './catalog.ts';
import type { DataName, ExperimentRecipe, Scale } from './recipe.ts';

/** Training images of each target class the three target runs learn from. */
export const TRANSFER_PER_CLASS = 100;
const SOURCE = [0, 1, 2, 3, 4];
const TARGET = [5, 6, 7, 8, 9];

/**
 * The target runs' recipe: batch 25 over the 500 images, 15 epochs (300 SGD steps) at quick scale, SGD 0.9 with a
 * cosine decay from lr 0.1, weight decay 5e-4, flips (and crops on CIFAR); all test images of the target classes.
 * The fine-tune run lowers the backbone's lr to 0.01 (the classifier keeps 0.1); the pretraining has its own.
 */
export function transferRecipe(scale: Scale, data: DataName): ExperimentRecipe {
  return {
    epochs: scale === 'quick' ? 15 : 60, batchSize: 25, evalBatchSize: 500, optimizer: 'sgd', lr: 0.1, momentum: 0.9, nesterov: false,
    weightDecay: 5e-4, decayNormAndBias: false, schedule: 'cosine', warmupEpochs: 0.5, labelSmoothing: 0,
    augment: data === 'cifar10' ? 'crop-flip' : 'flip', cropPadding: data === 'cifar10' ? 4 : 2, syncBn: false,
  };
}

const net = (what: string): string => `ResNet-20 (n=3, shortcut A), ${what}`;
const target = (id: string, label: string, what: string, role: string, extra: Partial<RunSpec>): RunSpec => ({
  id, label, model: net(what), spec: CIFAR.resnet20!, shortcut: 'A', tags: { role }, classes: TARGET, perClass: TRANSFER_PER_CLASS, ...extra,
});

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;

/** Transfer: pretrain, then frozen backbone, full fine-tune and from scratch on the target budget. */
export const transfer: Experiment = {
  name: 'transfer',
  title: `Transfer: classes 5–9 from ${TRANSFER_PER_CLASS} images a class, with and without features learned on classes 0–4`,
  paper: 'Yosinski et al. 2014 ("How transferable are features in deep neural networks?"), Fig. 2 (ImageNet split into two halves ' +
    'of 500 classes): a net whose layers are copied from one trained on the other half and then fine-tuned (AnB+) generalises ' +
    'at least as well as one trained on the target half alone (BnB), and better with little target data; with the copied layers ' +
    'frozen (AnB) it does worse the more layers are frozen, as the top features are specific to their classes.',
  runs: (scale) => [
    {
      id: 'pretrain', label: 'pretrain (classes 0–4)', model: net(`classes 0–4, all their training images, ${scale === 'quick' ? 5 : 30} epochs at batch 128, lr 0.1 (test error on classes 0–4)`),
      spec: CIFAR.resnet20!, shortcut: 'A', tags: { role: 'pretrain' }, classes: SOURCE, recipe: { epochs: scale === 'quick' ? 5 : 30, batchSize: 128, warmupEpochs: 0.3 },
    },
    target('frozen', 'frozen backbone', 'pretrained backbone frozen (BN statistics kept), new classifier, lr 0.1', 'frozen', { from: 'pretrain', recipe: { freeze: 'backbone' } }),
    target('finetune', 'fine-tuned', 'pretrained backbone fine-tuned at lr 0.01, new classifier at lr 0.1', 'finetune', { from: 'pretrain', recipe: { lr: 0.01, headLr: 0.1 } }),
    target('scratch', 'from scratch', 'random init, lr 0.1', 'scratch', {}),
  ],
  recipeText: (r, runs) => {
    const t = runs.find((x) => x.tags.role === 'scratch');
    return `target runs: ${t?.trainImages ?? 5 * TRANSFER_PER_CLASS} training images (the first ${TRANSFER_PER_CLASS} of each of classes 5–9), all ${t?.testImages ?? 'the'} test images of classes 5–9, ` +
      `${r.epochs} epochs at batch ${r.batchSize} (${r.epochs * Math.ceil((t?.trainImages ?? 500) / r.batchSize)} SGD steps each), momentum ${r.momentum}, cosine lr with a ${r.warmupEpochs}-epoch warm-up, ` +
      `weight decay ${r.weightDecay} (not on BN and biases), ${r.augment === 'crop-flip' ? `${r.cropPadding}-px crop + flip` : r.augment}; ` +
      'the three start from the same random initialisation (the same seed), the transferred ones then take the pretrained backbone';
  },
  finding(runs) {
    const role = (r: string): RunResult => runs.find((x) => x.tags.role === r)!;
    const [frozen, finetune, scratch, pre] = [role('frozen'), role('finetune'), role('scratch'), role('pretrain')];
    const n = scratch.testImages;
    const se = (a: number, b: number): number => Math.sqrt((a * (1 - a) + b * (1 - b)) / n);
    const vs = (r: RunResult): { better: boolean; sig: boolean; text: string } => {
      const d = scratch.testError - r.testError;
      const sig = Math.abs(d) >= 2 * se(r.testError, scratch.testError);
      return { better: d > 0, sig, text: `${r.label} ${pct(r.testError)} (${d > 0 ? `${pct(d)} better` : `${pct(-d)} worse`} than from scratch, ${sig ? 'beyond' : 'within'} noise)` };
    };
    const [f, t] = [vs(frozen), vs(finetune)];
    const helped = (f.better && f.sig) || (t.better && t.sig);
    const hurt = [f, t].filter((x) => !x.better && x.sig).length;
    const reproduced = t.better && t.sig ? (hurt ? null : true) : helped ? null : false;
    const text = `Pretraining on classes 0–4 reached ${pct(pre.testError)} test error there. On classes 5–9 with ${scratch.trainImages} training images, ` +
      `test error from scratch ${pct(scratch.testError)}; ${f.text}; ${t.text}; noise being two standard errors of the difference on ${n} test images. ` +
      (helped ? `Transfer helped: the best transferred run has ${pct(Math.min(frozen.testError, finetune.testError))} test error against ${pct(scratch.testError)} from scratch, at the same number of steps.`
        : hurt ? 'Transfer did not help: training from scratch was better beyond noise.' : 'Transfer made no difference beyond noise at this budget.');
    return { reproduced, text };
  },
};
