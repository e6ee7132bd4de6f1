// The paper experiments as data: each names the nets it trains (rows of the CIFAR table, or new rows
// built the same way), the paper's figure or table it revisits, and how its finding is judged.
import { BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck } from '../models/blocks.ts';
import { CIFAR, CifarResNet, type CifarSpec } from '../models/cifar.ts';
import { DenseNet } from '../models/densenet.ts';
import type { CifarDenseNetSpec } from '../models/cifar-densenet.ts';
import type { Module } from '../nn/module.ts';
import type { ExperimentRecipe, Scale } from './recipe.ts';
import { transfer } from './transfer.ts';

/** One net an experiment trains. */
export interface RunSpec {
  /** Directory name under DIR/<experiment>/ and key in results.json. */
  id: string;
  /** Legend label. */
  label: string;
  /** What the net is, in words, for the table. */
  model: string;
  /** A CIFAR ResNet (or plain net) with this shortcut option, or else a DenseNet-BC (`densenet`). */
  spec?: CifarSpec;
  shortcut?: 'A' | 'B' | 'C';
  densenet?: CifarDenseNetSpec;
  /** What the finding compares: depth, residual, shortcut, cardinality, preact. */
  tags: Record<string, string | number | boolean>;
  // Runs on part of the data, or starting from another run (the transfer experiment).
  /** Train and test on these classes only (relabelled 0..k-1 in this order); with perClass, the first perClass training images of each. */
  classes?: readonly number[];
  perClass?: number;
  /** Start from the final weights of this earlier run of the experiment (its id); the classifier is new when the classes differ. */
  from?: string;
  /** Recipe fields this run sets (freeze, lr, headLr, epochs, ...). */
  recipe?: Partial<ExperimentRecipe>;
}

/** A trained run's numbers, as results.json holds them. */
export interface RunResult {
  id: string;
  label: string;
  model: string;
  tags: RunSpec['tags'];
  params: number;
  multAdds: number;
  epochs: number;
  /**
   * Final-epoch errors as fractions, the mean over the seeds: train is the running error over the last epoch (as
   * the papers plot it).
   */
  trainError: number;
  testError: number;
  /** Seconds of training and evaluation (summed over resumed sessions and over the seeds). */
  wallTime: number;
  /** Images the run trained and was tested on. */
  trainImages: number;
  testImages: number;
  /** Mean errors per epoch; with several seeds also their least and greatest. */
  curve: { epoch: number[]; trainError: number[]; testError: number[]; trainMin?: number[]; trainMax?: number[]; testMin?: number[]; testMax?: number[] };
  /** Each seed's final errors and time (one entry for a single seed). */
  seeds: { seed: number; trainError: number; testError: number; wallTime: number }[];
}

/** The verdict on the paper's claim: true reproduced, false not reproduced, null partly reproduced. */
export interface Finding {
  reproduced: boolean | null;
  text: string;
}

/** A paper experiment: its nets at each scale and how its finding is judged from their results. */
export interface Experiment {
  name: string;
  title: string;
  /** The paper, figure or table, and what it found. */
  paper: string;
  runs(scale: Scale): RunSpec[];
  finding(runs: RunResult[], testImages: number): Finding;
  /** The recipe in words, when the shared description does not fit (runs on other data). */
  recipeText?(recipe: ExperimentRecipe, runs: RunResult[]): string;
}

/** Builds a run's net for the data's channels and classes. */
export function buildRun(r: RunSpec, inChannels: number, numClasses: number): Module {
  if (r.densenet) {
    // DenseNet-BC for 32x32 inputs (cifar-densenet.ts): (L - 4) / 6 bottleneck layers a block, a 2k-channel 3x3 stem.
    const n = (r.densenet.depth - 4) / 6;
    return new DenseNet({ numClasses, inChannels, growthRate: r.densenet.growthRate, blockConfig: [n, n, n], numInitFeatures: 2 * r.densenet.growthRate, stem: 'cifar' });
  }
  if (!r.spec) throw new Error(`run ${r.id} names no net`);
  return new CifarResNet(r.spec, { inChannels, numClasses, shortcut: r.shortcut });
}

/** The least and greatest of a run's final errors over its seeds. */
export function seedRange(r: RunResult, which: 'trainError' | 'testError'): [number, number] {
  const v = r.seeds.map((s) => s[which]);
  return [Math.min(...v), Math.max(...v)];
}

/** Whether a's errors lie wholly above b's over the seeds (always false with one seed: no spread is known). */
const above = (a: RunResult, b: RunResult, which: 'trainError' | 'testError'): boolean => a.seeds.length > 1 && b.seeds.length > 1 && seedRange(a, which)[0] > seedRange(b, which)[1];
/** How two runs' seed ranges sit, in words (nothing with one seed). */
const rangeWords = (a: RunResult, b: RunResult, which: 'trainError' | 'testError'): string => {
  if (a.seeds.length < 2 || b.seeds.length < 2) return '';
  return above(a, b, which) || above(b, a, which) ? ', the seed ranges apart' : ', the seed ranges overlapping';
};

const C16 = [16, 32, 64] as const;
const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
/** Standard error of a difference of two error rates measured on n images each. */
const seDiff = (a: number, b: number, n: number): number => Math.sqrt((a * (1 - a) + b * (1 - b)) / n);
const noise = (a: number, b: number, n: number): string => (Math.abs(a - b) < 2 * seDiff(a, b, n) ? 'within noise' : 'beyond noise');
const tagged = (runs: RunResult[], k: string, v: string | number | boolean): RunResult[] => runs.filter((r) => r.tags[k] === v);
const only = (runs: RunResult[], what: string): RunResult => {
  if (runs.length !== 1) throw new Error(`expected one ${what} run; got ${runs.length}`);
  return runs[0]!;
};

const cifarRow = (name: string, label: string, model: string, tags: RunSpec['tags']): RunSpec => ({ id: name, label, model, spec: CIFAR[name]!, shortcut: 'A', tags });

const degradation: Experiment = {
  name: 'degradation',
  title: 'Degradation: plain vs residual nets, 20 and 56 layers',
  paper: 'He et al. 2015, Fig. 6 / sec. 4.2 (CIFAR-10): the deeper plain net (56 layers) has higher training error than the ' +
    'shallower one (20 layers), while the deeper ResNet has lower training (and test) error than the shallower.',
  runs: () => [
    cifarRow('plain20', 'plain-20', 'plain 6n+2 net, n=3 (no shortcuts)', { depth: 20, residual: false }),
    cifarRow('plain56', 'plain-56', 'plain 6n+2 net, n=9 (no shortcuts)', { depth: 56, residual: false }),
    cifarRow('resnet20', 'ResNet-20', 'ResNet 6n+2, n=3, shortcut A', { depth: 20, residual: true }),
    cifarRow('resnet56', 'ResNet-56', 'ResNet 6n+2, n=9, shortcut A', { depth: 56, residual: true }),
  ],
  finding(runs, n) {
    const get = (residual: boolean, depth: number): RunResult => only(tagged(tagged(runs, 'residual', residual), 'depth', depth), `${residual ? 'residual' : 'plain'}-${depth}`);
    const [p20, p56, r20, r56] = [get(false, 20), get(false, 56), get(true, 20), get(true, 56)];
    const plainDegrades = p56.trainError > p20.trainError;
    const resImproves = r56.trainError <= r20.trainError;
    const reproduced = plainDegrades && resImproves ? true : plainDegrades || resImproves ? null : false;
    const seeds = p20.seeds.length > 1 ? ` (means over ${p20.seeds.length} seeds)` : '';
    const text =
      `Training error${seeds}: plain-56 ${pct(p56.trainError)} vs plain-20 ${pct(p20.trainError)}${rangeWords(p56, p20, 'trainError')} — the deeper plain net is ` +
      `${plainDegrades ? 'worse (degradation, as in the paper)' : 'not worse (no degradation, unlike the paper)'}; ` +
      `ResNet-56 ${pct(r56.trainError)} vs ResNet-20 ${pct(r20.trainError)}${rangeWords(r56, r20, 'trainError')} — the deeper residual net is ` +
      `${resImproves ? 'no worse (as in the paper)' : 'worse (unlike the paper)'}. ` +
      `Test error: plain-56 ${pct(p56.testError)}, plain-20 ${pct(p20.testError)}, ResNet-56 ${pct(r56.testError)}, ResNet-20 ${pct(r20.testError)} ` +
      `(ResNet-56 vs -20 ${noise(r56.testError, r20.testError, n)} on ${n} test images). ` +
      (reproduced === true ? 'The paper\'s direction was reproduced at this budget.'
        : reproduced === null ? `The paper's direction was only half reproduced at this budget: ${plainDegrades ? 'the plain net degrades with depth, but the deeper ResNet did not train to a lower error' : 'the deeper ResNet trains to a lower error, but the plain net did not degrade with depth'}.`
        : 'The paper\'s direction was NOT reproduced at this budget.');
    return { reproduced, text };
  },
};

const SHORTCUT_WORDS = { A: 'A: zero-padded identity', B: 'B: projection where the shape changes', C: 'C: projection everywhere' } as const;

const shortcuts: Experiment = {
  name: 'shortcuts',
  title: 'Shortcut options A, B and C',
  paper: 'He et al. 2015, Table 3 (ImageNet, ResNet-34, top-1 error 10-crop): A 25.03 %, B 24.52 %, C 24.19 % — B is slightly better ' +
    'than A, C marginally better than B; the differences are small, so projections are not essential.',
  runs(scale) {
    const name = scale === 'quick' ? 'resnet20' : 'resnet56';
    const n = (CIFAR[name]!.n * 6) + 2;
    return (['A', 'B', 'C'] as const).map((s) => ({
      id: `${name}_${s}`, label: `ResNet-${n} ${s}`, model: `ResNet 6n+2, n=${CIFAR[name]!.n}, shortcut ${SHORTCUT_WORDS[s]}`,
      spec: CIFAR[name]!, shortcut: s, tags: { shortcut: s },
    }));
  },
  finding(runs, n) {
    const [a, b, c] = (['A', 'B', 'C'] as const).map((s) => only(tagged(runs, 'shortcut', s), s)) as [RunResult, RunResult, RunResult];
    // The paper's order is A ≥ B ≥ C in error; each step is judged against two standard errors of the difference.
    const step = (hi: RunResult, lo: RunResult, x: string, y: string) => {
      const d = hi.testError - lo.testError;
      const sig = Math.abs(d) >= 2 * seDiff(hi.testError, lo.testError, n);
      return { agrees: d >= 0, sig, text: `${y} ${d >= 0 ? 'better' : 'worse'} than ${x} by ${pct(Math.abs(d))} (${sig ? 'beyond' : 'within'} noise)` };
    };
    const steps = [step(a, b, 'A', 'B'), step(b, c, 'B', 'C')];
    const reproduced = steps.every((s) => s.agrees) ? true : steps.some((s) => !s.agrees && s.sig) ? false : null;
    const text =
      `Test error: A ${pct(a.testError)}, B ${pct(b.testError)}, C ${pct(c.testError)} (train error A ${pct(a.trainError)}, ` +
      `B ${pct(b.trainError)}, C ${pct(c.trainError)}): ${steps.map((s) => s.text).join('; ')}, noise being two standard errors ` +
      `of the difference on ${n} test images; the paper has B 0.51 % better than A and C 0.33 % better than B. ` +
      (reproduced === true ? 'The paper\'s order A ≥ B ≥ C holds.'
        : reproduced === null ? 'The paper\'s order holds except for a reversal within noise.'
        : 'The paper\'s order is contradicted beyond noise.');
    return { reproduced, text };
  },
};

/**
 * Xie et al. 2017, Table 2's templates at equal complexity: cardinality C with torchvision's width per group
 * (the 3x3 has floor(planes·d/64)·C channels). On the CIFAR stages the same pairs keep multiply-adds within
 * 5 % of each other (checked by the test and shown in the table).
 */
export const CARDINALITY_WIDTHS: readonly (readonly [number, number])[] = [[1, 64], [2, 40], [4, 24], [8, 14], [32, 4]];

const cardinality: Experiment = {
  name: 'cardinality',
  title: 'Cardinality at equal multiply-adds (ResNeXt)',
  paper: 'Xie et al. 2017, Table 3 (ImageNet, ResNeXt-50 at ~4.1 G mult-adds, top-1 error): 1×64d 23.9 %, 2×40d 23.0 %, 4×24d 22.6 %, ' +
    '8×14d 22.3 %, 32×4d 22.2 % — more groups of narrower transforms beat a wider single path at the same complexity.',
  runs(scale) {
    // quick: two bottlenecks a stage on 16/32/64 planes (ResNeXt-20 at a quarter of the width); full: ResNeXt-29's layout.
    const [n, stem, planes] = scale === 'quick' ? [2, 16, C16] as const : [3, 64, [64, 128, 256] as const] as const;
    const depth = 9 * n + 2;
    return CARDINALITY_WIDTHS.map(([c, d]) => {
      const widths = planes.map((p) => Math.floor((p * d) / 64) * c).join('/');
      return {
        id: `resnext${depth}_${c}x${d}d`, label: `C=${c} (${c}×${d}d)`,
        model: `ResNeXt-${depth} bottleneck, planes ${planes.join('/')}, cardinality ${c}, 3x3 widths ${widths}, shortcut B`,
        spec: { block: Bottleneck, n, stem, planes, groups: c, widthPerGroup: d, shortcut: 'B' }, shortcut: 'B', tags: { cardinality: c },
      };
    });
  },
  finding(runs, n) {
    const sorted = [...runs].sort((a, b) => (a.tags.cardinality as number) - (b.tags.cardinality as number));
    const rho = spearman(sorted.map((r) => r.tags.cardinality as number), sorted.map((r) => r.testError));
    const first = sorted[0]!;
    const last = sorted[sorted.length - 1]!;
    const macs = runs.map((r) => r.multAdds);
    const spread = Math.max(...macs) / Math.min(...macs) - 1;
    const falls = last.testError < first.testError && rho < 0;
    const rises = sorted.slice(1).flatMap((r, i) => (r.testError > sorted[i]!.testError
      ? [`C=${sorted[i]!.tags.cardinality}→${r.tags.cardinality} (+${pct(r.testError - sorted[i]!.testError)})`] : []));
    const reproduced = falls && !rises.length ? true : falls ? null : false;
    const text =
      `Mult-adds within ${(100 * spread).toFixed(2)} % of each other. Test error by cardinality: ` +
      sorted.map((r) => `${r.tags.cardinality}: ${pct(r.testError)}`).join(', ') +
      ` (Spearman ρ between cardinality and test error ${rho.toFixed(2)}; C=${last.tags.cardinality} vs C=${first.tags.cardinality} ` +
      `${noise(last.testError, first.testError, n)} on ${n} test images). ` +
      (reproduced === true ? 'The paper\'s trend (error falls with every rise in cardinality) was reproduced at this budget.'
        : reproduced === null ? `The paper's trend was only partly reproduced at this budget: error falls from C=${first.tags.cardinality} to C=${last.tags.cardinality} overall, but not at every step (it rises at ${rises.join(', ')}).`
        : 'The paper\'s trend (error falls as cardinality rises) was NOT reproduced at this budget.');
    return { reproduced, text };
  },
};

/** Spearman's rank correlation (ties get their mean rank). */
export function spearman(x: readonly number[], y: readonly number[]): number {
  const rank = (v: readonly number[]): number[] => {
    const idx = v.map((_, i) => i).sort((a, b) => v[a]! - v[b]!);
    const r = new Array<number>(v.length);
    for (let i = 0; i < idx.length;) {
      let j = i;
      while (j + 1 < idx.length && v[idx[j + 1]!] === v[idx[i]!]) j++;
      for (let k = i; k <= j; k++) r[idx[k]!] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const [rx, ry] = [rank(x), rank(y)];
  const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
  const [mx, my] = [mean(rx), mean(ry)];
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < rx.length; i++) {
    sxy += (rx[i]! - mx) * (ry[i]! - my);
    sxx += (rx[i]! - mx) ** 2;
    syy += (ry[i]! - my) ** 2;
  }
  return sxx && syy ? sxy / Math.sqrt(sxx * syy) : 0;
}

const preactPair = (depth: number, bottleneck: boolean): RunSpec[] => {
  const n = bottleneck ? (depth - 2) / 9 : (depth - 2) / 6;
  const kind = bottleneck ? 'bottleneck' : 'basic';
  // The authors' CIFAR code strides the first 1x1 of a bottleneck stage (see preact_resnet164 in the CIFAR table).
  const common = { n, stem: 16, planes: C16, shortcut: 'B' as const, strideOn1x1: bottleneck };
  return [
    { id: `resnet${depth}_B`, label: `ResNet-${depth} original`, model: `original units (conv-BN-ReLU, ReLU after the addition), ${kind} blocks, n=${n}, shortcut B`,
      spec: { ...common, block: bottleneck ? Bottleneck : BasicBlock }, shortcut: 'B', tags: { depth, preact: false } },
    { id: `preact_resnet${depth}`, label: `ResNet-${depth} pre-act`, model: `pre-activation units (BN-ReLU-conv, identity after the addition), ${kind} blocks, n=${n}, shortcut B`,
      spec: { ...common, block: bottleneck ? PreActBottleneck : PreActBasicBlock }, shortcut: 'B', tags: { depth, preact: true } },
  ];
};

const preact: Experiment = {
  name: 'preact',
  title: 'Original vs pre-activation residual units at equal depth',
  paper: 'He et al. 2016 ("Identity Mappings"), Table 3 (CIFAR-10 test error): ResNet-110 6.61 % original vs 6.37 % pre-activation, ' +
    'ResNet-164 5.93 % vs 5.46 % — the pre-activation unit is better at equal depth.',
  runs: (scale) => (scale === 'quick' ? preactPair(56, false) : [...preactPair(110, false), ...preactPair(164, true)]),
  finding(runs, n) {
    const depths = [...new Set(runs.map((r) => r.tags.depth as number))].sort((a, b) => a - b);
    const pairs = depths.map((d) => {
      const at = tagged(runs, 'depth', d);
      return [only(tagged(at, 'preact', false), `original-${d}`), only(tagged(at, 'preact', true), `pre-act-${d}`)] as const;
    });
    const better = pairs.map(([o, p]) => p.testError < o.testError);
    const text = pairs.map(([o, p], i) =>
      `depth ${depths[i]}: test error original ${pct(o.testError)} vs pre-activation ${pct(p.testError)} ` +
      `(${better[i] ? 'pre-activation better' : 'pre-activation not better'}, ${noise(o.testError, p.testError, n)} on ${n} test images; ` +
      `train error ${pct(o.trainError)} vs ${pct(p.trainError)})`).join('; ') +
      `. The paper's finding (pre-activation better at equal depth) was ${better.every(Boolean) ? 'reproduced' : better.some(Boolean) ? 'partly reproduced' : 'NOT reproduced'} at this budget.`;
    return { reproduced: better.every(Boolean) ? true : better.some(Boolean) ? null : false, text };
  },
};

const resnetRun = (n: number, budget: number | false): RunSpec => ({
  id: `resnet${6 * n + 2}`, label: `ResNet-${6 * n + 2}`, model: `ResNet 6n+2, n=${n}, shortcut A`,
  spec: { block: BasicBlock, n, stem: 16, planes: C16 }, shortcut: 'A', tags: { family: 'resnet', budget },
});
const denseRun = (depth: number, growthRate: number, budget: number | false): RunSpec => ({
  id: `densenet_bc_${depth}_k${growthRate}`, label: `DenseNet-BC-${depth} (k=${growthRate})`,
  model: `DenseNet-BC, L=${depth}, k=${growthRate}: 3 blocks of ${(depth - 4) / 6} bottleneck layers, compression 0.5`,
  densenet: { depth, growthRate }, tags: { family: 'densenet', budget },
});

/**
 * Huang et al. 2017's parameter-efficiency claim at sizes 2 CPU cores can train: pairs of a ResNet and a DenseNet-BC
 * (k = 12) with nearly the same parameters (ResNet-14 0.17 M / DenseNet-BC-40 0.18 M, ResNet-20 0.27 M /
 * DenseNet-BC-52 0.26 M), and ResNet-56 (0.85 M) for the "a third of the parameters" comparison; `full` adds the
 * paper's DenseNet-BC-100 (0.77 M) and ResNet-110 (1.7 M).
 */
const densenet: Experiment = {
  name: 'densenet',
  title: 'Parameter efficiency: ResNet vs DenseNet-BC at equal parameter budgets',
  paper: 'Huang et al. 2017 ("Densely Connected Convolutional Networks"), sec. 4.3 and Fig. 4 right (C10+): DenseNets are more ' +
    'parameter-efficient than ResNets — a DenseNet-BC needs about a third of the parameters of a ResNet for the same test error ' +
    '(DenseNet-BC-100, k=12, 0.8 M parameters, 4.51 % vs pre-activation ResNet-1001, 10.2 M, 4.62 %).',
  runs: (scale) => [
    resnetRun(2, 0), denseRun(40, 12, 0), resnetRun(3, 1), denseRun(52, 12, 1), resnetRun(9, false),
    ...(scale === 'full' ? [denseRun(100, 12, 2), resnetRun(18, false)] : []),
  ],
  finding(runs, n) {
    const budgets = [...new Set(runs.flatMap((r) => (r.tags.budget === false ? [] : [r.tags.budget as number])))].sort((a, b) => a - b);
    const pairs = budgets.map((b) => {
      const at = tagged(runs, 'budget', b);
      return [only(tagged(at, 'family', 'resnet'), `ResNet of budget ${b}`), only(tagged(at, 'family', 'densenet'), `DenseNet of budget ${b}`)] as const;
    });
    const better = pairs.map(([r, d]) => d.testError < r.testError);
    const pairText = pairs.map(([r, d], i) =>
      `${d.label} (${(d.params / 1e6).toFixed(2)} M) ${pct(d.testError)} vs ${r.label} (${(r.params / 1e6).toFixed(2)} M) ${pct(r.testError)} test error — ` +
      `DenseNet-BC ${better[i] ? 'better' : 'not better'} (${noise(d.testError, r.testError, n)} on ${n} test images${rangeWords(d, r, 'testError')}; ` +
      `${(d.multAdds / r.multAdds).toFixed(1)}x the mult-adds, ${(d.wallTime / r.wallTime).toFixed(1)}x the time)`).join('; ');
    // A third of the parameters: the largest DenseNet-BC with at most a third of the largest ResNet's.
    const resnets = tagged(runs, 'family', 'resnet');
    const big = resnets.reduce((a, b) => (b.params > a.params ? b : a));
    const small = tagged(runs, 'family', 'densenet').filter((d) => d.params <= big.params / 3).sort((a, b) => b.params - a.params)[0];
    const comparable = small ? small.testError <= big.testError + 2 * seDiff(small.testError, big.testError, n) : false;
    const thirdText = small
      ? `${small.label} with ${(small.params / big.params).toFixed(2)}x the parameters of ${big.label}: ${pct(small.testError)} vs ${pct(big.testError)} test error — ` +
        `${comparable ? 'comparable or better (within two standard errors or lower), as the paper says' : 'worse beyond noise, unlike the paper'}`
      : 'no DenseNet-BC with at most a third of the largest ResNet\'s parameters was trained';
    const all = better.every(Boolean) && comparable;
    const none = !better.some(Boolean) && !comparable;
    const text = `At equal parameters: ${pairText}. A third of the parameters: ${thirdText}. ` +
      (all ? 'The paper\'s parameter-efficiency claim was reproduced at this budget.'
        : none ? 'The paper\'s parameter-efficiency claim was NOT reproduced at this budget.'
        : 'The paper\'s parameter-efficiency claim was only partly reproduced at this budget.');
    return { reproduced: all ? true : none ? false : null, text };
  },
};

/** Every experiment by name, in the order `all` runs them. */
export const EXPERIMENTS: Readonly<Record<string, Experiment>> = { degradation, shortcuts, cardinality, preact, densenet, transfer };
