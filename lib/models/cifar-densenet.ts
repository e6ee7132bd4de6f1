// DenseNet-BC for 32x32 inputs (Huang et al. 2017 sec. 3 and table 2): a 3x3 stem of 2k channels, three dense
// blocks of (L - 4) / 6 bottleneck layers, compression 0.5 — torchvision's DenseNet class with the CIFAR stem.
import { DenseNet, type DenseNetOptions } from './densenet.ts';

/** One row of the CIFAR DenseNet-BC table: depth L and growth rate k. */
export interface CifarDenseNetSpec {
  depth: number;
  growthRate: number;
}

/** The paper's DenseNet-BC rows (table 2: 0.8 M, 15.3 M and 25.6 M parameters on CIFAR-100). */
export const CIFAR_DENSENET: Record<string, CifarDenseNetSpec> = {
  densenet_bc_100_k12: { depth: 100, growthRate: 12 },
  densenet_bc_250_k24: { depth: 250, growthRate: 24 },
  densenet_bc_190_k40: { depth: 190, growthRate: 40 },
};

/** Builds a row of the table; numClasses defaults to 10 and inChannels to 3 (1 for Fashion-MNIST). */
export function buildCifarDenseNet(name: string, opts: DenseNetOptions = {}): DenseNet {
  const spec = CIFAR_DENSENET[name];
  if (!spec) throw new Error(`unknown CIFAR DenseNet '${name}'`);
  // L counts the stem, the two transitions and the classifier besides 2 convolutions per bottleneck layer.
  const n = (spec.depth - 4) / 6;
  return new DenseNet({ numClasses: 10, ...opts, growthRate: spec.growthRate, blockConfig: [n, n, n], numInitFeatures: 2 * spec.growthRate, stem: 'cifar' });
}

/** DenseNet-BC L = 100, k = 12 (0.77 M parameters with 10 classes, 0.80 M with 100). */
export const densenet_bc_100_k12 = (opts?: DenseNetOptions): DenseNet => buildCifarDenseNet('densenet_bc_100_k12', opts);
/** DenseNet-BC L = 250, k = 24 (15.3 M). */
export const densenet_bc_250_k24 = (opts?: DenseNetOptions): DenseNet => buildCifarDenseNet('densenet_bc_250_k24', opts);
/** DenseNet-BC L = 190, k = 40 (25.6 M). */
export const densenet_bc_190_k40 = (opts?: DenseNetOptions): DenseNet => buildCifarDenseNet('densenet_bc_190_k40', opts);
