// The fused inference modules that inference.optimize() builds: a convolution with its BatchNorm folded in
// (and ReLU, and a residual addition, inside one oneDNN kernel), the residual unit made of them, and the
// whole network. Each is a plain Module: `new X(spec)` builds it from a JSON-able spec with placeholder
// buffers, loadStateDict() fills them, so a Worker can rebuild one from `spec` and `stateDict()`.
import { empty, zeros } from '../creation.ts';
import * as F from '../nn/functional.ts';
import { Linear, MaxPool2d, Sequential, chain } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { ZeroPadShortcut } from '../models/blocks.ts';
import type { Tensor } from '../tensor.ts';
import { convForward, onednn, planned, plannedMaxPool, releasePacks } from './onednn.ts';

/** The dtype the fused network computes in: float32, or bfloat16/float16 for `amp`. */
export type ComputeDType = 'float32' | 'bfloat16' | 'float16';

/** A convolution with its folded BatchNorm: geometry, whether ReLU follows, compute dtype. */
export interface ConvSpec {
  inChannels: number;
  outChannels: number;
  kernelSize: [number, number];
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
  relu: boolean;
  dtype: ComputeDType;
}

/** An eval-mode BatchNorm that no convolution precedes (pre-activation units): y = x * scale + shift, then ReLU. */
export interface AffineSpec {
  channels: number;
  relu: boolean;
  dtype: ComputeDType;
}

/** The shortcut of a residual unit. */
export type ShortcutSpec =
  | { kind: 'identity' }
  | { kind: 'projection'; conv: ConvSpec }
  | { kind: 'zeropad'; inPlanes: number; outPlanes: number; stride: number };

/**
 * One residual unit: optional pre-activation, the body's convolutions, and the last convolution that adds the
 * shortcut (and applies the unit's ReLU) in the same kernel. `shortcut: null` is a plain (shortcut-free) unit.
 */
export interface UnitSpec {
  pre: AffineSpec | null;
  body: ConvSpec[];
  last: ConvSpec;
  shortcut: ShortcutSpec | null;
  /** A projection shortcut reads the pre-activated input (pre-activation units); the identity is always the unit's input. */
  shortcutFromPre: boolean;
  /** ReLU after the addition (post-activation units). */
  relu: boolean;
}

/** The network: stem convolution, optional max-pool, stages of units, optional final BN-ReLU, global pool, fc. */
export interface NetSpec {
  dtype: ComputeDType;
  stem: ConvSpec;
  maxpool: { kernelSize: number; stride: number; padding: number } | null;
  stages: UnitSpec[][];
  post: AffineSpec | null;
  fc: { inFeatures: number; outFeatures: number; bias: boolean };
}

/** Conv2d + folded BatchNorm (+ ReLU); buffers `weight` [out, in/groups, kh, kw] and `bias` [out] in the compute dtype. */
export class FusedConv2d extends Module {
  readonly spec: ConvSpec;

  /** `tensors`: the weight and bias to use as they are (e.g. views of another layer's), instead of placeholders. */
  constructor(spec: ConvSpec, tensors?: { weight: Tensor; bias: Tensor }) {
    super();
    this.spec = { ...spec, kernelSize: [...spec.kernelSize], stride: [...spec.stride], padding: [...spec.padding], dilation: [...spec.dilation] };
    const { inChannels, outChannels, groups, kernelSize, dtype } = this.spec;
    this.registerBuffer('weight', tensors?.weight ?? empty([outChannels, inChannels / groups, ...kernelSize], { dtype }));
    this.registerBuffer('bias', tensors?.bias ?? zeros([outChannels], { dtype }));
    this.training = false;
  }

  get weight(): Tensor { return this.buffer('weight'); }
  get bias(): Tensor { return this.buffer('bias'); }

  /** conv(x) + bias, then ReLU when the spec says so. */
  forward(x: Tensor): Tensor {
    return convForward(this, x, null, this.spec.relu);
  }

  /**
   * conv(x) + bias + other, then ReLU when `relu`: a residual unit's last convolution and its shortcut, in one
   * kernel. With `overwrite` the result may be written over `other` (which the caller no longer needs) and returned.
   */
  forwardAdd(x: Tensor, other: Tensor, relu: boolean, overwrite = false): Tensor {
    return convForward(this, x, other, relu, overwrite);
  }

  /** Frees the reordered weights (they are rebuilt on the next forward). */
  override dispose(): void {
    releasePacks(this);
    super.dispose();
  }

  /** New weights were copied in: the reordered copies and plans made from the old ones go. */
  protected override stateLoaded(): void {
    releasePacks(this);
  }

  protected override extraRepr(): string {
    const s = this.spec;
    return `${s.inChannels}, ${s.outChannels}, kernel_size=(${s.kernelSize}), stride=(${s.stride})` +
      (s.padding.some(Boolean) ? `, padding=(${s.padding})` : '') +
      (s.dilation.some((d) => d !== 1) ? `, dilation=(${s.dilation})` : '') +
      (s.groups !== 1 ? `, groups=${s.groups}` : '') + `, bn folded${s.relu ? ', relu' : ''}, ${s.dtype}`;
  }
}

/** x * scale + shift per channel (an eval BatchNorm), then ReLU: the pre-activation BN that has no conv before it. */
export class FusedAffine extends Module {
  readonly spec: AffineSpec;

  constructor(spec: AffineSpec) {
    super();
    this.spec = { ...spec };
    this.registerBuffer('scale', empty([spec.channels], { dtype: spec.dtype }));
    this.registerBuffer('shift', empty([spec.channels], { dtype: spec.dtype }));
    this.training = false;
  }

  forward(x: Tensor): Tensor {
    const c = this.spec.channels;
    const scale = this.buffer('scale').view(1, c, 1, 1);
    const shift = this.buffer('shift').view(1, c, 1, 1);
    const y = x.mul(scale).add_(shift);
    scale.dispose();
    shift.dispose();
    return this.spec.relu ? y.relu_() : y;
  }

  protected override extraRepr(): string {
    return `${this.spec.channels}${this.spec.relu ? ', relu' : ''}, ${this.spec.dtype}`;
  }
}

/** A residual unit of fused convolutions (children conv1..convN, `downsample`, `pre`). */
export class FusedResidual extends Module {
  readonly spec: UnitSpec;
  private readonly pre: FusedAffine | null;
  private readonly body: FusedConv2d[];
  private readonly last: FusedConv2d;
  private readonly shortcut: Module | null;

  constructor(spec: UnitSpec) {
    super();
    this.spec = structuredClone(spec);
    this.pre = spec.pre ? this.registerModule('pre', new FusedAffine(spec.pre)) : null;
    this.body = spec.body.map((c, i) => this.registerModule(`conv${i + 1}`, new FusedConv2d(c)));
    this.last = this.registerModule(`conv${spec.body.length + 1}`, new FusedConv2d(spec.last));
    const s = spec.shortcut;
    this.shortcut = s?.kind === 'projection'
      ? this.registerModule('downsample', new FusedConv2d(s.conv))
      : s?.kind === 'zeropad'
        ? this.registerModule('downsample', new ZeroPadShortcut(s.inPlanes, s.outPlanes, s.stride))
        : null;
    this.training = false;
  }

  forward(x: Tensor): Tensor {
    return this.run(x, false);
  }

  /**
   * forward() for a caller that owns x and drops it afterwards (FusedNet): the output may be written over x's
   * memory (an identity shortcut) and is then a new handle on it, so the caller disposes x as usual.
   */
  forwardConsuming(x: Tensor): Tensor {
    return this.run(x, true);
  }

  private run(x: Tensor, consume: boolean): Tensor {
    const pre = this.pre ? this.pre.forward(x) : x;
    const h = chain(pre, ...this.body);
    let out: Tensor;
    if (!this.spec.shortcut) {
      out = this.last.forward(h);
    } else {
      const from = this.shortcut && this.spec.shortcutFromPre ? pre : x;
      const identity = this.shortcut ? this.shortcut.forward(from) : from;
      // A shortcut's own output is ours to overwrite; the unit's input only when the caller gave it up.
      out = this.last.forwardAdd(h, identity, this.spec.relu, identity !== from || consume);
      if (identity !== from) identity.dispose();
    }
    if (h !== pre) h.dispose();
    if (pre !== x) pre.dispose();
    return out;
  }
}

/**
 * The fused network. forward() takes NCHW (or channels-last) float32 images and returns float32 logits; inside,
 * activations are channels-last in the compute dtype. Children: stem, maxpool, layer1..N, post, fc (float32).
 */
export class FusedNet extends Module {
  readonly spec: NetSpec;
  private readonly layers: Module[];
  private readonly pool: MaxPool2d | null;

  constructor(spec: NetSpec) {
    super();
    this.spec = structuredClone(spec);
    const stem = this.registerModule('stem', new FusedConv2d(spec.stem));
    const pool = spec.maxpool
      ? this.registerModule('maxpool', new MaxPool2d(spec.maxpool.kernelSize, { stride: spec.maxpool.stride, padding: spec.maxpool.padding }))
      : null;
    this.pool = pool;
    const stages = spec.stages.map((units, i) => this.registerModule(`layer${i + 1}`, new Sequential(...units.map((u) => new FusedResidual(u)))));
    const post = spec.post ? this.registerModule('post', new FusedAffine(spec.post)) : null;
    this.layers = [stem, ...(pool ? [pool] : []), ...stages, ...(post ? [post] : [])];
    this.registerModule('fc', new Linear(spec.fc.inFeatures, spec.fc.outFeatures, { bias: spec.fc.bias }));
    this.training = false;
  }

  forward(x: Tensor): Tensor {
    const c = this.spec.stem.inChannels;
    if (x.ndim !== 4 || x.shape[1] !== c) throw new Error(`FusedNet: expected input [N, ${c}, H, W]; got [${x.shape.join(', ')}]`);
    const cl = x.contiguous('channelsLast');
    const input = cl.dtype === this.spec.dtype ? cl : cl.to(this.spec.dtype);
    if (input !== cl) cl.dispose();
    // The units run consuming: each input is the previous layer's output, which nothing else holds. A module
    // with a forward hook (its own `forward`) runs that instead, so the hook sees what it always saw.
    const hooked = (m: Module): boolean => Object.prototype.hasOwnProperty.call(m, 'forward');
    let features = input;
    for (const layer of this.layers) {
      const units = layer instanceof Sequential && !hooked(layer) ? layer.namedChildren().map(([, m]) => m) : [layer];
      for (const m of units) {
        const next = m instanceof FusedResidual && !hooked(m) ? m.forwardConsuming(features)
          : m === this.pool && !hooked(m) ? this.maxPool(features) : m.forward(features);
        if (features !== input) features.dispose();
        features = next;
      }
    }
    input.dispose();
    const pooled = F.adaptiveAvgPool2d(features, 1);
    features.dispose();
    const f32 = pooled.dtype === 'float32' ? pooled : pooled.to('float32');
    if (f32 !== pooled) pooled.dispose();
    const fc = this.child<Linear>('fc');
    const head = hooked(fc) ? null : fcHead(this, fc, f32);
    if (head) {
      const z = head.forward(f32);
      f32.dispose();
      const y = z.flatten(1);
      if (y !== z) z.dispose();
      return y;
    }
    const flat = f32.flatten(1);
    if (flat !== f32) f32.dispose();
    const y = fc.forward(flat);
    flat.dispose();
    return y;
  }

  /** The stem's max pooling: on oneDNN's kernel where plannedMaxPool applies, else the module's own (libtorch's). */
  private maxPool(x: Tensor): Tensor {
    const p = this.spec.maxpool!;
    return plannedMaxPool(x, p.kernelSize, p.stride, p.padding) ?? this.pool!.forward(x);
  }

  /** Frees every parameter, buffer and reordered weight. */
  override dispose(): void {
    for (const m of this.modules()) if (m instanceof FusedConv2d) releasePacks(m);
    dropHead(this);
    super.dispose();
  }

  /** New weights were copied in: the fc's planned copy goes (the convolutions drop theirs themselves). */
  protected override stateLoaded(): void {
    dropHead(this);
  }
}

// The fc as a 1x1 convolution planned on the system oneDNN, on CPU where convolutions are planned: libtorch's
// linear runs MKL's gemv, which takes its generic code path on AMD CPUs (resnet50's fc at batch 1, its weight
// out of cache after the forward: 0.58 ms, planned 0.29 ms; AMD EPYC, 2 threads). Kept outside the module, so
// its state dict stays fc.weight and fc.bias; the convolution's tensors are views of them.
const heads = new WeakMap<FusedNet, { weight: Tensor; conv: FusedConv2d }>();

function dropHead(net: FusedNet): void {
  const h = heads.get(net);
  if (!h) return;
  h.conv.dispose();
  heads.delete(net);
}

function fcHead(net: FusedNet, fc: Linear, x: Tensor): FusedConv2d | null {
  // A planned convolution has no backward: where the features need a gradient (Grad-CAM's), the fc stays a Linear.
  if (x.device !== 'cpu' || x.dtype !== 'float32' || x.requiresGrad || !planned.available || !onednn.available) return null;
  const w = fc.weight;
  let h = heads.get(net);
  if (h && h.weight !== w) {
    dropHead(net); // fc moved (to()) or replaced
    h = undefined;
  }
  if (!h) {
    const [out, inF] = w.shape as [number, number];
    const spec: ConvSpec = {
      inChannels: inF, outChannels: out, kernelSize: [1, 1], stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, relu: false, dtype: 'float32',
    };
    const bias = fc.bias ? fc.bias.reshape([out]) : zeros([out]);
    h = { weight: w, conv: new FusedConv2d(spec, { weight: w.reshape([out, inF, 1, 1]), bias }) };
    heads.set(net, h);
  }
  return h.conv;
}

/** Every module class a fused network is made of (for registries that rebuild module trees, e.g. in Workers). */
export const FUSED_MODULES = [FusedNet, FusedResidual, FusedConv2d, FusedAffine, Sequential, MaxPool2d, Linear, ZeroPadShortcut] as const;
