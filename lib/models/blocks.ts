// Residual blocks: BasicBlock and Bottleneck (ResNet, ResNeXt, Wide ResNet), their pre-activation forms, and shortcut A.
import * as F from '../nn/functional.ts';
import { BatchNorm2d, Conv2d, ReLU, Sequential, chain } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor.ts';

/** Model options that must be positive integers (numClasses, inChannels, ...): a TypeError naming the model and the option. */
export function checkPositiveInts(model: string, options: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(options)) {
    if (!Number.isInteger(v) || (v as number) < 1) throw new TypeError(`${model}: ${k} must be a positive integer; got ${typeof v === 'string' ? `'${v}'` : String(v)}`);
  }
}

/** 3x3 convolution with padding = dilation, no bias (torchvision's conv3x3). */
export const conv3x3 = (inPlanes: number, outPlanes: number, stride = 1, groups = 1, dilation = 1): Conv2d =>
  new Conv2d(inPlanes, outPlanes, 3, { stride, padding: dilation, groups, dilation, bias: false });

/** 1x1 convolution, no bias (torchvision's conv1x1). */
export const conv1x1 = (inPlanes: number, outPlanes: number, stride = 1): Conv2d => new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false });

/** Projection shortcut (option B/C of the ResNet paper): 1x1 conv + BN, keys `downsample.0`, `downsample.1`. */
export const projection = (inPlanes: number, outPlanes: number, stride: number): Sequential =>
  new Sequential(conv1x1(inPlanes, outPlanes, stride), new BatchNorm2d(outPlanes));

/**
 * Option A of the ResNet paper (sec. 4.2): the identity, subsampled by the stride and padded with zero
 * channels up to outPlanes — a shortcut with no parameters.
 */
export class ZeroPadShortcut extends Module {
  constructor(readonly inPlanes: number, readonly outPlanes: number, readonly stride: number) {
    super();
    if (outPlanes < inPlanes) throw new Error(`ZeroPadShortcut: cannot shrink ${inPlanes} channels to ${outPlanes}`);
  }

  forward(x: Tensor): Tensor {
    if (this.stride === 1) return F.pad(x, [0, 0, 0, 0, 0, this.outPlanes - this.inPlanes]);
    const rows = x.slice(2, null, null, this.stride);
    const sub = rows.slice(3, null, null, this.stride);
    const out = F.pad(sub, [0, 0, 0, 0, 0, this.outPlanes - this.inPlanes]);
    rows.dispose();
    sub.dispose();
    return out;
  }

  protected override extraRepr(): string {
    return `${this.inPlanes}, ${this.outPlanes}, stride=${this.stride}`;
  }
}

/** Options shared by the blocks (torchvision's Bottleneck arguments, camelCased, plus the paper's variants). */
export interface BlockOptions {
  stride?: number;
  /** The shortcut when the shape changes (or always, for option C); the identity when omitted. */
  downsample?: Module | null;
  /** Cardinality: the 3x3 is a grouped convolution (ResNeXt). */
  groups?: number;
  /** Channels per group at planes = 64 (torchvision's base_width). */
  baseWidth?: number;
  dilation?: number;
  /** Put the stride on the first 1x1 (original ResNet, "v1") instead of the 3x3 ("v1.5", torchvision). */
  strideOn1x1?: boolean;
  /** false builds the plain (shortcut-free) block of the paper's plain nets. */
  residual?: boolean;
}

/** The last step of a residual block: out += shortcut(x), then ReLU; plain blocks skip the addition. */
function addShortcut(out: Tensor, x: Tensor, downsample: Module | null, residual: boolean): Tensor {
  if (!residual) return out;
  const identity = downsample ? downsample.forward(x) : x;
  out.add_(identity);
  if (identity !== x) identity.dispose();
  return out;
}

/** Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets). */
export class BasicBlock extends Module {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Module | null;
  readonly residual: boolean;

  constructor(inPlanes: number, planes: number, { stride = 1, downsample = null, groups = 1, baseWidth = 64, dilation = 1, residual = true }: BlockOptions = {}) {
    super();
    if (groups !== 1 || baseWidth !== 64) throw new Error('BasicBlock only supports groups=1 and widthPerGroup=64');
    if (dilation > 1) throw new Error('Dilation > 1 not supported in BasicBlock');
    this.conv1 = this.registerModule('conv1', conv3x3(inPlanes, planes, stride));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.relu = this.registerModule('relu', new ReLU(true));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.downsample = downsample ? this.registerModule('downsample', downsample) : null;
    this.residual = residual;
  }

  /** The BN whose weight zeroInitResidual sets to 0, so the block starts as the identity. */
  get lastBn(): BatchNorm2d {
    return this.bn2;
  }

  forward(x: Tensor): Tensor {
    const out = chain(x, this.conv1, this.bn1, this.relu, this.conv2, this.bn2);
    return addShortcut(out, x, this.downsample, this.residual).relu_();
  }
}

/**
 * 1x1 → 3x3 → 1x1 with expansion 4. One class for ResNet, ResNeXt and Wide ResNet: the 3x3 has
 * width = planes * baseWidth/64 * groups channels in `groups` groups (ResNeXt's aggregated transform, form (c)).
 */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly relu: ReLU;
  readonly downsample: Module | null;
  readonly residual: boolean;

  constructor(inPlanes: number, planes: number, { stride = 1, downsample = null, groups = 1, baseWidth = 64, dilation = 1, strideOn1x1 = false, residual = true }: BlockOptions = {}) {
    super();
    const width = Math.floor(planes * (baseWidth / 64)) * groups;
    this.conv1 = this.registerModule('conv1', conv1x1(inPlanes, width, strideOn1x1 ? stride : 1));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(width));
    this.conv2 = this.registerModule('conv2', conv3x3(width, width, strideOn1x1 ? 1 : stride, groups, dilation));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(width));
    this.conv3 = this.registerModule('conv3', conv1x1(width, planes * Bottleneck.expansion));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(planes * Bottleneck.expansion));
    this.relu = this.registerModule('relu', new ReLU(true));
    this.downsample = downsample ? this.registerModule('downsample', downsample) : null;
    this.residual = residual;
  }

  /** The BN whose weight zeroInitResidual sets to 0. */
  get lastBn(): BatchNorm2d {
    return this.bn3;
  }

  forward(x: Tensor): Tensor {
    const out = chain(x, this.conv1, this.bn1, this.relu, this.conv2, this.bn2, this.relu, this.conv3, this.bn3);
    return addShortcut(out, x, this.downsample, this.residual).relu_();
  }
}

/**
 * Pre-activation basic block (He et al. 2016, "Identity Mappings"): BN-ReLU-conv twice, nothing after the
 * addition. A projection shortcut (1x1 conv) reads the pre-activated input, as the paper's code does.
 */
export class PreActBasicBlock extends Module {
  static readonly expansion = 1;
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly relu: ReLU;
  readonly downsample: Module | null;

  constructor(inPlanes: number, planes: number, { stride = 1, downsample = null }: BlockOptions = {}) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', conv3x3(inPlanes, planes, stride));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes));
    this.relu = this.registerModule('relu', new ReLU(true));
    this.downsample = downsample ? this.registerModule('downsample', downsample) : null;
  }

  forward(x: Tensor): Tensor {
    const pre = chain(x, this.bn1, this.relu);
    const out = chain(pre, this.conv1, this.bn2, this.relu, this.conv2);
    return finishPreAct(out, x, pre, this.downsample);
  }
}

/**
 * Pre-activation bottleneck (He et al. 2016): BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (expansion 4). The stride
 * sits on the 3x3 unless strideOn1x1, which is where the authors' CIFAR code (resnet-1k-layers) puts it.
 */
export class PreActBottleneck extends Module {
  static readonly expansion = 4;
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly relu: ReLU;
  readonly downsample: Module | null;

  constructor(inPlanes: number, planes: number, { stride = 1, downsample = null, strideOn1x1 = false }: BlockOptions = {}) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', conv1x1(inPlanes, planes, strideOn1x1 ? stride : 1));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes, strideOn1x1 ? 1 : stride));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(planes));
    this.conv3 = this.registerModule('conv3', conv1x1(planes, planes * PreActBottleneck.expansion));
    this.relu = this.registerModule('relu', new ReLU(true));
    this.downsample = downsample ? this.registerModule('downsample', downsample) : null;
  }

  forward(x: Tensor): Tensor {
    const pre = chain(x, this.bn1, this.relu);
    const out = chain(pre, this.conv1, this.bn2, this.relu, this.conv2, this.bn3, this.relu, this.conv3);
    return finishPreAct(out, x, pre, this.downsample);
  }
}

/** out + shortcut: the untouched input, or the projection of the pre-activated input when the shape changes. */
function finishPreAct(out: Tensor, x: Tensor, pre: Tensor, downsample: Module | null): Tensor {
  const identity = downsample ? downsample.forward(pre) : x;
  out.add_(identity);
  if (identity !== x) identity.dispose();
  pre.dispose();
  return out;
}

/** Any of the four block classes. */
export type BlockClass = typeof BasicBlock | typeof Bottleneck | typeof PreActBasicBlock | typeof PreActBottleneck;
