// The CIFAR family: He et al. 2015 sec. 4.2 ResNets and plain nets, pre-activation ResNets (He et al. 2016),
// ResNeXt-29 (Xie et al. 2017) — 32x32 inputs, three stages, global average pool, fc.
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, ReLU, Sequential, chain } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor.ts';
import { BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ZeroPadShortcut, checkPositiveInts, conv1x1, conv3x3, projection } from './blocks.ts';
import { initResNet } from './resnet.ts';

/** Options of every CIFAR model. */
export interface CifarOptions {
  numClasses?: number;
  /** 1 for Fashion-MNIST / MNIST, 3 for CIFAR. */
  inChannels?: number;
  /**
   * The paper's shortcut options: A zero-padded identity (parameter-free, the CIFAR default), B projection
   * only when the shape changes, C projection everywhere. ResNeXt-29 and the pre-activation nets use B.
   */
  shortcut?: 'A' | 'B' | 'C';
  zeroInitResidual?: boolean;
}

/** One row of the CIFAR table. */
export interface CifarSpec {
  block: typeof BasicBlock | typeof Bottleneck | typeof PreActBasicBlock | typeof PreActBottleneck;
  /** Blocks per stage. */
  n: number;
  /** Stem output channels. */
  stem: number;
  /** Planes of the three stages (block output = planes * expansion). */
  planes: readonly [number, number, number];
  residual?: boolean;
  groups?: number;
  widthPerGroup?: number;
  shortcut?: 'A' | 'B' | 'C';
  /** Bottlenecks put the stride on their first 1x1. */
  strideOn1x1?: boolean;
}

/** The shortcut of a block whose input has inPlanes channels and output out channels. */
function shortcutFor(kind: 'A' | 'B' | 'C', inPlanes: number, out: number, stride: number, preact: boolean): Module | null {
  const changes = stride !== 1 || inPlanes !== out;
  if (kind === 'A') return changes ? new ZeroPadShortcut(inPlanes, out, stride) : null;
  if (kind === 'B' && !changes) return null;
  // Pre-activation units project the already normalised input, so the projection is a bare conv.
  return preact ? new Sequential(conv1x1(inPlanes, out, stride)) : projection(inPlanes, out, stride);
}

/**
 * A CIFAR network: 3x3 stem, three stages with strides 1, 2, 2, global average pool, fc. Post-activation
 * blocks get a stem BN-ReLU; pre-activation nets instead end with a final BN-ReLU (`final_bn`).
 */
export class CifarResNet extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d | null;
  relu: ReLU;
  layer1: Sequential;
  layer2: Sequential;
  layer3: Sequential;
  finalBn: BatchNorm2d | null;
  avgpool: AdaptiveAvgPool2d;
  fc: Linear;

  constructor(spec: CifarSpec, opts: CifarOptions = {}) {
    super();
    const { numClasses = 10, inChannels = 3, zeroInitResidual = false } = opts;
    checkPositiveInts('CifarResNet', { numClasses, inChannels });
    const { block, n, stem, planes, residual = true, groups = 1, widthPerGroup = 64, strideOn1x1 = false } = spec;
    const shortcut = opts.shortcut ?? spec.shortcut ?? 'A';
    if (!['A', 'B', 'C'].includes(shortcut)) throw new Error(`shortcut must be 'A', 'B' or 'C'; got ${String(shortcut)}`);
    const preact = block === PreActBasicBlock || block === PreActBottleneck;
    this.conv1 = this.registerModule('conv1', conv3x3(inChannels, stem));
    this.bn1 = preact ? null : this.registerModule('bn1', new BatchNorm2d(stem));
    this.relu = this.registerModule('relu', new ReLU(true));
    let inplanes = stem;
    const stage = (p: number, stride: number): Sequential => {
      const out = p * block.expansion;
      const list: Module[] = [];
      for (let i = 0; i < n; i++) {
        const s = i === 0 ? stride : 1;
        const downsample = residual ? shortcutFor(shortcut, inplanes, out, s, preact) : null;
        list.push(new block(inplanes, p, { stride: s, downsample, groups, baseWidth: widthPerGroup, residual, strideOn1x1 }));
        inplanes = out;
      }
      return new Sequential(...list);
    };
    this.layer1 = this.registerModule('layer1', stage(planes[0], 1));
    this.layer2 = this.registerModule('layer2', stage(planes[1], 2));
    this.layer3 = this.registerModule('layer3', stage(planes[2], 2));
    this.finalBn = preact ? this.registerModule('final_bn', new BatchNorm2d(inplanes)) : null;
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(inplanes, numClasses));
    initResNet(this, zeroInitResidual);
  }

  forward(x: Tensor): Tensor {
    const stem = this.bn1 ? [this.conv1, this.bn1, this.relu] : [this.conv1];
    const tail = this.finalBn ? [this.finalBn, this.relu] : [];
    const pooled = chain(x, ...stem, this.layer1, this.layer2, this.layer3, ...tail, this.avgpool);
    const flat = pooled.flatten(1);
    pooled.dispose();
    const y = this.fc.forward(flat);
    flat.dispose();
    return y;
  }
}

const C16 = [16, 32, 64] as const;
const resnetRow = (depth: number, residual = true): CifarSpec => ({ block: BasicBlock, n: (depth - 2) / 6, stem: 16, planes: C16, residual });

/** The CIFAR model table. */
export const CIFAR: Record<string, CifarSpec> = {
  resnet20: resnetRow(20),
  resnet32: resnetRow(32),
  resnet44: resnetRow(44),
  resnet56: resnetRow(56),
  resnet110: resnetRow(110),
  resnet1202: resnetRow(1202),
  plain20: resnetRow(20, false),
  plain32: resnetRow(32, false),
  plain44: resnetRow(44, false),
  plain56: resnetRow(56, false),
  plain110: resnetRow(110, false),
  preact_resnet110: { block: PreActBasicBlock, n: 18, stem: 16, planes: C16, shortcut: 'B' },
  // The authors' code (KaimingHe/resnet-1k-layers) strides the first 1x1 of a stage's first unit.
  preact_resnet164: { block: PreActBottleneck, n: 18, stem: 16, planes: C16, shortcut: 'B', strideOn1x1: true },
  preact_resnet1001: { block: PreActBottleneck, n: 111, stem: 16, planes: C16, shortcut: 'B', strideOn1x1: true },
  resnext29_8x64d: { block: Bottleneck, n: 3, stem: 64, planes: [64, 128, 256], groups: 8, widthPerGroup: 64, shortcut: 'B' },
  resnext29_16x64d: { block: Bottleneck, n: 3, stem: 64, planes: [64, 128, 256], groups: 16, widthPerGroup: 64, shortcut: 'B' },
};

/** Builds a row of the CIFAR table. */
export function buildCifar(name: string, opts: CifarOptions = {}): CifarResNet {
  const spec = CIFAR[name];
  if (!spec) throw new Error(`unknown CIFAR model '${name}'`);
  return new CifarResNet(spec, opts);
}

/** ResNet-20 for CIFAR (He et al. 2015, 0.27 M parameters). */
export const resnet20 = (opts?: CifarOptions): CifarResNet => buildCifar('resnet20', opts);
/** ResNet-32 for CIFAR (0.46 M). */
export const resnet32 = (opts?: CifarOptions): CifarResNet => buildCifar('resnet32', opts);
/** ResNet-44 for CIFAR (0.66 M). */
export const resnet44 = (opts?: CifarOptions): CifarResNet => buildCifar('resnet44', opts);
/** ResNet-56 for CIFAR (0.85 M). */
export const resnet56 = (opts?: CifarOptions): CifarResNet => buildCifar('resnet56', opts);
/** ResNet-110 for CIFAR (1.7 M). */
export const resnet110 = (opts?: CifarOptions): CifarResNet => buildCifar('resnet110', opts);
/** ResNet-1202 for CIFAR (19.4 M). */
export const resnet1202 = (opts?: CifarOptions): CifarResNet => buildCifar('resnet1202', opts);
/** Plain-20: ResNet-20 without shortcuts. */
export const plain20 = (opts?: CifarOptions): CifarResNet => buildCifar('plain20', opts);
/** Plain-32. */
export const plain32 = (opts?: CifarOptions): CifarResNet => buildCifar('plain32', opts);
/** Plain-44. */
export const plain44 = (opts?: CifarOptions): CifarResNet => buildCifar('plain44', opts);
/** Plain-56. */
export const plain56 = (opts?: CifarOptions): CifarResNet => buildCifar('plain56', opts);
/** Plain-110. */
export const plain110 = (opts?: CifarOptions): CifarResNet => buildCifar('plain110', opts);
/** Pre-activation ResNet-110, basic blocks (He et al. 2016, 1.7 M). */
export const preact_resnet110 = (opts?: CifarOptions): CifarResNet => buildCifar('preact_resnet110', opts);
/** Pre-activation ResNet-164, bottlenecks (1.7 M). */
export const preact_resnet164 = (opts?: CifarOptions): CifarResNet => buildCifar('preact_resnet164', opts);
/** Pre-activation ResNet-1001, bottlenecks (10.2 M). */
export const preact_resnet1001 = (opts?: CifarOptions): CifarResNet => buildCifar('preact_resnet1001', opts);
/** ResNeXt-29 8x64d for CIFAR (Xie et al. 2017, 34.4 M). */
export const resnext29_8x64d = (opts?: CifarOptions): CifarResNet => buildCifar('resnext29_8x64d', opts);
/** ResNeXt-29 16x64d for CIFAR (68.1 M). */
export const resnext29_16x64d = (opts?: CifarOptions): CifarResNet => buildCifar('resnext29_16x64d', opts);
