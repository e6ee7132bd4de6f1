// How a FusedConv2d runs: on CPU through a convolution planned once per input shape on the system oneDNN
// (cpp/dnnl_conv.cc: descriptor, primitive and reordered weight made once, so a call only executes), else
// through libtorch's oneDNN fused kernel with its weight reordered once per layout (cached per module, never
// per call), elsewhere (CUDA, float16, a libtorch without oneDNN) through aten's conv2d with the folded weight
// and in-place add/ReLU. A planned 3x3 stride-1 convolution without a residual runs oneDNN's winograd kernel where
// it has one (AVX-512). bfloat16 convolutions (groups 1, on CPUs with bf16 kernels) are planned the same way; on
// CPUs without them (AVX2) each runs on a float32 copy of its weights, made once, between bf16 activations. On a
// CPU with AMX-BF16 a bf16 convolution is planned only where the system oneDNN picks an AMX kernel (keepsPlan).
// A strided 1x1 one is planned both strided and at unit stride on the subsampled input, the faster on its first input
// kept. RESNET_TS_DNNL=0 in the environment keeps every convolution off the planned path, RESNET_TS_DNNL_BF16=0 the
// bf16 ones, RESNET_TS_WINOGRAD=0 keeps planned ones direct, RESNET_TS_DNNL_SUBSAMPLE=0/1 strided 1x1 ones strided /
// subsampled.
import { type CpuInfo, cpuInfo } from '../cpu.ts';
import { empty } from '../creation.ts';
import * as F from '../nn/functional.ts';
import { type Handle, native } from '../native.ts';
import { Tensor, keep } from '../tensor.ts';
import type { ConvSpec, FusedConv2d } from './fused.ts';

/** Whether this libtorch has oneDNN's fused ops, and whether oneDNN runs bf16 kernels on this CPU (asked once). */
export const onednn = {
  get available(): boolean {
    available ??= native.fusedAvailable();
    return available;
  },
  get bf16(): boolean {
    bf16 ??= this.available && native.fusedBf16Supported();
    return bf16;
  },
};
let available: boolean | undefined;
let bf16: boolean | undefined;

/** The system oneDNN's planned convolutions: whether the addon has them and they are not switched off. */
export const planned = {
  get available(): boolean {
    plannedOn ??= native.dnnlAvailable() && process.env.RESNET_TS_DNNL !== '0';
    return plannedOn;
  },
  /** Whether bf16 convolutions are planned too (not with RESNET_TS_DNNL_BF16=0: libtorch's oneDNN runs them). */
  get bf16(): boolean {
    plannedBf16 ??= process.env.RESNET_TS_DNNL_BF16 !== '0';
    return plannedBf16;
  },
  /** Its version ("2.6.3"), or null where the addon was built without it. */
  get version(): string | null {
    return native.dnnlAvailable() ? native.dnnlVersion() : null;
  },
};
let plannedOn: boolean | undefined;
let plannedBf16: boolean | undefined;

interface PlanCache {
  weight: Tensor;
  bias: Tensor;
  /** By input shape and whether a residual is added and ReLU applied; insertion order is age. */
  plans: Map<string, Tensor>;
  /**
   * Set once oneDNN had only a reference kernel for this convolution, or libtorch's newer oneDNN has the faster one
   * (libtorchFaster, which depends on the convolution and the kernel 2.6 picks, not on the input's shape): libtorch's
   * path from then on, for every shape.
   */
  refused: boolean;
  /** The key of the plan used last (a hit on another moves that one to the end of `plans`). */
  last?: string;
  /**
   * A strided 1x1 convolution's timed choice by input channels and size (not batch): true where the subsampled plan
   * won. A later batch size of the same image size takes it without timing again. At most MAX_IMAGE_SIZES image
   * sizes, the oldest forgotten first.
   */
  subsample: Map<string, boolean>;
}

const planCaches = new WeakMap<FusedConv2d, PlanCache>();
// Each plan holds a primitive (its JIT kernels in 256 KB buffers, resident whole: ~30 MB a batch size for resnet50's 53
// convolutions at 224x224, ~1 GB for all 32 sizes) and shares the reordered weight with any other plan of the same
// layout; past this many input shapes per convolution the least recently used plan is dropped. 32 is serve's default
// largest batch, so a server fed every batch size up to it plans each once; with 8, batch sizes beyond the eighth kept
// evicting each other and each return re-planned the whole network (+100-180 ms a batch, resnet50 at 112x112, Zen 4
// EPYC, 2 threads). Running other sizes as power-of-two chunks on fewer plans was 4-18 % slower (README).
export const MAX_PLANS = 32;
// A remembered subsample choice costs only its key, but a server fed every image size would add one per size.
const MAX_IMAGE_SIZES = 64;
// Winograd from 14x14 output pixels at batch 1 up (measured on resnet50's layers, AMD EPYC, 2 threads: 256 channels
// at 14x14 0.45 against 0.53 ms direct, 512 at 7x7 level, 512 at 1x1 0.42 against 0.11 ms).
const WINOGRAD_MIN_PIXELS = 196;

function dropPlans(c: PlanCache): void {
  for (const p of c.plans.values()) p.dispose();
  c.plans.clear();
}

/** The module's plan for inputs of `input`'s shape (made on first use; a strided 1x1 one timed on it), or null where oneDNN refused it. */
function planFor(m: FusedConv2d, input: Tensor, shape: number[], add: boolean, relu: boolean, inPlace: boolean): Tensor | null {
  let c = planCaches.get(m);
  if (c && (c.weight !== m.weight || c.bias !== m.bias)) {
    dropPlans(c);
    c = undefined;
  }
  if (!c) {
    c = { weight: m.weight, bias: m.bias, plans: new Map(), refused: false, subsample: new Map() };
    planCaches.set(m, c);
  }
  if (c.refused) return null;
  const key = `${shape.join(',')}${add ? (inPlace ? '+=' : '+') : ''}${relu ? 'r' : ''}`;
  const hit = c.plans.get(key);
  if (hit) {
    // Least recently used goes first: a hit moves its plan to the end (once per change of shape, not every call).
    if (c.last !== key) {
      c.plans.delete(key);
      c.plans.set(key, hit);
      c.last = key;
    }
    return hit;
  }
  const { padding, stride, dilation, groups, kernelSize } = m.spec;
  // Every plan of this weight is offered to share its reordered copy (the first with the same layout is shared).
  const like = [...c.plans.values()].map((p) => p.h);
  // oneDNN's winograd kernel (3x3, stride 1, no residual; AVX-512 only, else the plan is direct), unless switched
  // off. Its transformed weight is 1.8-4x the size of the plain one, so where there are few output pixels to share
  // it (resnet50's 7x7 stage at batch 1; every stage at 32x32 input) reading it costs more than the kernel saves.
  const outPixels = shape[0]! * (shape[2]! + 2 * padding[0] - 2) * (shape[3]! + 2 * padding[1] - 2);
  const wino = process.env.RESNET_TS_WINOGRAD !== '0' && !add && groups === 1 && kernelSize.every((k) => k === 3) &&
    stride.every((v) => v === 1) && dilation.every((v) => v === 1) && outPixels >= WINOGRAD_MIN_PIXELS;
  let plan: Tensor;
  try {
    plan = keep(new Tensor(native.dnnlConvPlan(m.weight.h, m.bias.h, padding, stride, dilation, groups, shape, relu, add, like, inPlace, wino)));
  } catch (e) {
    if (!/only its reference or gemm kernel/.test((e as Error).message)) throw e;
    c.refused = true;
    return null;
  }
  const impl = native.dnnlPlanImpl(plan.h);
  if (!keepsPlan(m.spec.dtype, impl)) {
    plan.dispose();
    c.refused = true;
    return null;
  }
  if (libtorchFaster(impl, m.spec)) {
    plan.dispose();
    c.refused = true;
    return null;
  }
  if (subsampleCandidate(m.spec, add)) plan = fasterOfStridedAndSubsampled(m, c, plan, input, shape, relu, like);
  c.plans.set(key, plan);
  c.last = key;
  if (c.plans.size > MAX_PLANS) {
    const [oldKey, old] = c.plans.entries().next().value!;
    c.plans.delete(oldKey);
    old.dispose();
  }
  return plan;
}

// Plans of strided 1x1 convolutions that run at unit stride on the input subsampled first (x[:, :, ::s, ::s]).
const subsampled = new WeakSet<Tensor>();
// The subsampled plan is kept where it took less than this fraction of the strided one's time.
const SUBSAMPLE_MARGIN = 0.95;

/** Runs a planned convolution on input (subsampled first where the plan is one of those) and other. */
function runPlan(m: FusedConv2d, plan: Tensor, input: Tensor, other: Tensor | null): Tensor {
  if (!subsampled.has(plan)) return new Tensor(native.dnnlConvRun(plan.h, input.h, other?.h ?? null));
  const [sh, sw] = m.spec.stride;
  // A strided view; the addon makes its channels-last copy (oneDNN reads a dense input).
  const rows = native.slice(input.h, 2, 0, null, sh);
  const view = native.slice(rows, 3, 0, null, sw);
  try {
    return new Tensor(native.dnnlConvRun(plan.h, view, other?.h ?? null));
  } finally {
    native.dispose(view);
    native.dispose(rows);
  }
}

/** A 1x1 convolution with a stride and no padding or residual: the same as a unit-stride one on the subsampled input. */
function subsampleCandidate(spec: ConvSpec, add: boolean): boolean {
  return !add && spec.kernelSize.every((k) => k === 1) && spec.stride.some((v) => v > 1) && spec.padding.every((v) => v === 0);
}

/**
 * The faster of a strided 1x1 convolution's plan and a unit-stride plan of the same weights run on the subsampled
 * input, timed on the first input (two runs each, alternating, the faster run of each; the other plan is freed) and
 * remembered for that image size, so other batch sizes of it take the same choice untimed (the timing runs were
 * ~130-150 ms of the 200-290 ms a new batch size of resnet50 at 224x224 cost on first use, batch 10-12, Zen 4 EPYC;
 * timed at batch 1 or at 16, resnet50 and resnext50_32x4d chose alike on every projection, twice each).
 * `RESNET_TS_DNNL_SUBSAMPLE=0` keeps the strided plan, `=1` the subsampled one. oneDNN 2.6 sizes its strided
 * brgconv_1x1 work in a way that is sometimes much slower than its unit-stride kernel plus the copy: AMD EPYC Zen 4,
 * 2 threads, 2026-12-07, resnet50's and resnext50_32x4d's layer3 projection (512 -> 1024 channels, 28x28 -> 14x14)
 * 1.81-1.86 against 1.14-1.30 ms at batch 1 and 27.4 against 17.2 ms at batch 16, while the layer2 and layer4
 * projections were 4-15 % faster strided (the copy reads the whole input). Where they run level, the strided plan stays.
 */
function fasterOfStridedAndSubsampled(m: FusedConv2d, c: PlanCache, strided: Tensor, input: Tensor, shape: number[], relu: boolean, like: Handle[]): Tensor {
  const mode = process.env.RESNET_TS_DNNL_SUBSAMPLE;
  if (mode === '0') return strided;
  const image = `${shape.slice(1).join(',')}${relu ? 'r' : ''}`;
  const known = mode === '1' ? undefined : c.subsample.get(image);
  if (known === false) return strided;
  const { dilation, groups } = m.spec;
  const [sh, sw] = m.spec.stride;
  const subShape = [shape[0]!, shape[1]!, Math.ceil(shape[2]! / sh), Math.ceil(shape[3]! / sw)];
  const sub = keep(new Tensor(native.dnnlConvPlan(m.weight.h, m.bias.h, [0], [1], dilation, groups, subShape, relu, false, [strided.h, ...like], false, false)));
  subsampled.add(sub);
  if (mode !== '1' && known === undefined) {
    const best = [Infinity, Infinity];
    for (let round = 0; round < 2; round++) {
      [strided, sub].forEach((plan, i) => {
        const t = performance.now();
        runPlan(m, plan, input, null).dispose();
        best[i] = Math.min(best[i]!, performance.now() - t);
      });
    }
    const won = best[1]! < SUBSAMPLE_MARGIN * best[0]!;
    c.subsample.set(image, won);
    if (c.subsample.size > MAX_IMAGE_SIZES) c.subsample.delete(c.subsample.keys().next().value!);
    if (!won) {
      sub.dispose();
      return strided;
    }
  }
  strided.dispose();
  return sub;
}

/**
 * Whether a plan whose kernel oneDNN named `impl` is kept: on a CPU with AMX-BF16 a bf16 convolution is planned
 * only onto an AMX kernel. The system oneDNN (2.6) may not use AMX (an older Linux kernel that does not grant the
 * tile state, or a CPU newer than it knows), while libtorch's oneDNN 3.x, which then runs the convolution, does:
 * on the Xeon with AMX its bf16 resnet50 took 0.23-0.38 x onnxruntime's float32 time.
 */
export function keepsPlan(dtype: string, impl: string, cpu: CpuInfo = cpuInfo()): boolean {
  return dtype !== 'bfloat16' || !cpu.amxBf16 || /amx/.test(impl);
}

/**
 * Whether libtorch's oneDNN (3.x) runs this convolution faster than the plan oneDNN 2.6 made with kernel `impl`,
 * descriptor per call included: a 3x3 convolution (groups 1) where 2.6 has only its older `jit:avx2` kernel (CPUs
 * without AVX-512) and 3.x its brgemm one (`brg_conv_fwd:avx2`). Measured on a Zen 4 EPYC with AVX-512 hidden from
 * cpuid (`bench --emulate-avx2`, so every library picks what an AVX2-only CPU gets), 2 threads, 2026-12-07, resnet50:
 * at batch 16 the 3x3 layers at 56x56 and 28x28 took 85 and 90 ms (three each) on 2.6 against 53 and 54 ms on 3.x,
 * the strided 56 -> 28 one 36 against 19 ms, all 53 convolutions 767 against 700 ms; onnxruntime's (MLAS, NCHWc) took
 * 58, 57 and 22 ms for those. Whole forwards in-process, alternating, every 3x3 on 3.x against only those with at
 * most 14x14 output pixels from batch 2 (the earlier rule, from both oneDNNs capped with ONEDNN_MAX_CPU_ISA on a
 * Zen 5): batch 16 0.90-0.94, batch 1 0.91-0.98 (the descriptor per call included; against 3.x only where the output
 * is larger than 14x14 at batch 1: 0.90-0.94). Grouped 3x3 convolutions (ResNeXt) stay on 2.6: 3.x's kernels are
 * faster at batch 1 (4.4 against 6.4 ms for resnext50_32x4d's six shapes) but not once its descriptor per call is
 * counted, and level at batch 16 (83 against 79 ms); whole forwards with them on 3.x took 1.008-1.042 x at batch 1,
 * 0.987 at batch 16. The 1x1 layers and the 7x7 stem are level or faster on 2.6's kernels.
 */
export function libtorchFaster(impl: string, spec: Pick<ConvSpec, 'kernelSize' | 'groups'>): boolean {
  return /^jit:avx2/.test(impl) && spec.groups === 1 && spec.kernelSize[0] === 3 && spec.kernelSize[1] === 3;
}

/** What probeKernels() found: the kernels the system oneDNN picks here, and whether bf16 convolutions are planned on it. */
export interface KernelProbe {
  float32: string;
  /** null where oneDNN has no bf16 convolution on this CPU (bf16 then runs on float32 copies of the weights). */
  bfloat16: string | null;
  /** Whether bf16 convolutions with one group are planned on the system oneDNN (else libtorch's oneDNN runs them). */
  bf16Planned: boolean;
}

/**
 * The kernels the system oneDNN picks on this CPU for a representative convolution (resnet50's 1x1 from 256 to 64
 * channels at 56x56 with ReLU, batch 1), in float32 and bf16, and whether the bf16 one is kept (keepsPlan): what
 * `resnet-ts doctor` prints. null where convolutions are not planned (no system oneDNN, or RESNET_TS_DNNL=0).
 */
export function probeKernels(): KernelProbe | null {
  if (!planned.available) return null;
  const impl = (dtype: 'float32' | 'bfloat16'): string => {
    const w = empty([64, 256, 1, 1], { dtype }).fill_(0.01);
    try {
      const plan = native.dnnlConvPlan(w.h, null, [0], [1], [1], 1, [1, 256, 56, 56], true, false, null, false, false);
      try {
        return native.dnnlPlanImpl(plan);
      } finally {
        native.dispose(plan);
      }
    } finally {
      w.dispose();
    }
  };
  const float32 = impl('float32');
  const bfloat16 = onednn.bf16 ? impl('bfloat16') : null;
  return { float32, bfloat16, bf16Planned: bfloat16 !== null && planned.bf16 && keepsPlan('bfloat16', bfloat16) };
}

/** probeKernels() in one line, for doctor and the bench header: "float32 <kernel>; bf16 <kernel or why not planned>". */
export function describeKernels(k: KernelProbe): string {
  const bf16 = k.bfloat16 === null
    ? 'none (oneDNN has no bf16 convolution on this CPU)'
    : k.bf16Planned ? k.bfloat16
      : `${k.bfloat16}, not planned (${keepsPlan('bfloat16', k.bfloat16) ? '' : 'no AMX kernel in the system oneDNN: '}libtorch's oneDNN runs bf16)`;
  return `float32 ${k.float32}; bf16 ${bf16}`;
}

/**
 * How many plans a convolution holds, how many reordered copies of its weight they hold between them, how many
 * distinct weight layouts their kernels want (one copy each when they share), and whether it was left to libtorch's
 * oneDNN for good (diagnostics and tests).
 */
export function planCacheSize(m: FusedConv2d): { plans: number; weights: number; layouts: number; refused: boolean } {
  const c = planCaches.get(m);
  const plans = [...(c?.plans.values() ?? [])];
  const classes = (same: (a: Handle, b: Handle) => boolean): number => {
    const reps: Tensor[] = [];
    for (const p of plans) if (!reps.some((q) => same(p.h, q.h))) reps.push(p);
    return reps.length;
  };
  return { plans: plans.length, weights: classes(native.dnnlPlanSameWeight), layouts: classes(native.dnnlPlanSameLayout), refused: c?.refused ?? false };
}

/** A strided 1x1 convolution's timed choices by input channels and size: 'subsampled' or 'strided' (diagnostics and tests). */
export function subsampleChoices(m: FusedConv2d): Record<string, 'subsampled' | 'strided'> {
  return Object.fromEntries([...(planCaches.get(m)?.subsample ?? [])].map(([k, v]) => [k, v ? 'subsampled' : 'strided']));
}

/** The kernel each planned convolution of a module runs, by plan key (diagnostics and tests). */
export function plannedKernels(m: FusedConv2d): Record<string, string> {
  const c = planCaches.get(m);
  return Object.fromEntries([...(c?.plans ?? [])].map(([k, p]) => [k, `${native.dnnlPlanImpl(p.h)}${subsampled.has(p) ? ' on the subsampled input' : ''}`]));
}

interface Packed {
  packed: Tensor;
  layout: Tensor;
}

interface PackCache {
  /** The weight the packs were made from; a different one (after to() or loadStateDict into a new tensor) drops them. */
  weight: Tensor;
  byShape: Map<number, Packed>;
  distinct: Packed[];
}

// Outside the modules, so a module's own state stays its spec and registered tensors.
const caches = new WeakMap<FusedConv2d, PackCache>();
// oneDNN chose one weight layout for every batch size tried (1..32) at a given image size, so a handful of
// layouts covers any serving mix; past this many the oldest is dropped rather than memory growing.
const MAX_LAYOUTS = 4;

function dropAll(c: PackCache): void {
  for (const p of c.distinct) {
    p.packed.dispose();
    p.layout.dispose();
  }
  c.distinct.length = 0;
  c.byShape.clear();
}

// bf16 modules on CPUs without oneDNN bf16 convolutions: a float32 copy of each (its bf16 weight and bias cast up
// once, exactly), which runs on the float32 path, planned and fused like any other.
const twins = new WeakMap<FusedConv2d, FusedConv2d>();

/**
 * A bf16 FusedConv2d where oneDNN has no bf16 convolution (AVX2 CPUs; F.bf16ConvInFp32): its float32 twin on the
 * bf16 input, residual and output, which is a bf16 kernel's arithmetic (bf16 operands, whose products are exact in
 * fp32, accumulated in fp32 with bias, residual and ReLU, rounded to bf16 once) without casting the weight each call.
 */
function bf16ViaFp32(m: FusedConv2d, x: Tensor, other: Tensor | null, relu: boolean): Tensor {
  let twin = twins.get(m);
  if (!twin) {
    // m's own class: this module cannot import fused.ts (which imports it).
    const Conv = m.constructor as new (spec: FusedConv2d['spec'], tensors: { weight: Tensor; bias: Tensor }) => FusedConv2d;
    twin = new Conv({ ...m.spec, dtype: 'float32' }, { weight: m.weight.to('float32'), bias: m.bias.to('float32') });
    twins.set(m, twin);
  }
  const xf = F.bf16RoundedFp32(x);
  const of = other ? F.bf16RoundedFp32(other) : null;
  // The residual's float32 copy is ours, so the twin may accumulate into it (the sum post-op); it is a new handle then.
  const y = convForward(twin, xf, of, relu, of !== null && of !== other);
  const out = y.to('bfloat16');
  for (const t of new Set([y, xf, of])) if (t && t !== x && t !== other) t.dispose();
  return out;
}

/** Frees a module's reordered weights. */
export function releasePacks(m: FusedConv2d): void {
  const twin = twins.get(m);
  if (twin) {
    twins.delete(m);
    twin.dispose();
  }
  const c = caches.get(m);
  if (c) dropAll(c);
  caches.delete(m);
  const p = planCaches.get(m);
  if (p) dropPlans(p);
  planCaches.delete(m);
}

/** The module's weight in the blocked layout oneDNN wants for inputs shaped like x, reordered on first use only. */
function packFor(m: FusedConv2d, x: Tensor, shape: number[]): Tensor {
  const w = m.weight;
  let c = caches.get(m);
  if (c && c.weight !== w) {
    dropAll(c);
    c = undefined;
  }
  if (!c) {
    c = { weight: w, byShape: new Map(), distinct: [] };
    caches.set(m, c);
  }
  // N, H, W below 2^16 each (C is fixed by the weight): one number, no string per call.
  const key = (shape[0]! * 65536 + shape[2]!) * 65536 + shape[3]!;
  const hit = c.byShape.get(key);
  if (hit) return hit.packed;
  const { padding, stride, dilation, groups } = m.spec;
  const packed = keep(new Tensor(native.convPack(w.h, padding, stride, dilation, groups, shape)));
  const layout = keep(new Tensor(native.packedLayout(packed.h)));
  let entry = c.distinct.find((d) => d.layout.numel === layout.numel && native.equal(d.layout.h, layout.h));
  if (entry) {
    packed.dispose();
    layout.dispose();
  } else {
    entry = { packed, layout };
    c.distinct.push(entry);
    if (c.distinct.length > MAX_LAYOUTS) {
      const old = c.distinct.shift()!;
      for (const [k, v] of c.byShape) if (v === old) c.byShape.delete(k);
      old.packed.dispose();
      old.layout.dispose();
    }
  }
  c.byShape.set(key, entry);
  return entry.packed;
}

/** Whether a module of this dtype runs on oneDNN for x (CPU, float32, or bfloat16 where oneDNN has bf16 kernels). */
function viaOneDnn(dtype: string, x: Tensor): boolean {
  return (dtype === 'float32' || (dtype === 'bfloat16' && onednn.bf16)) && onednn.available && x.device === 'cpu';
}

/**
 * relu?(conv(x) + bias (+ other)) for a FusedConv2d; x is cast to the module's dtype when it differs. With
 * `overwrite` the result may be written over `other`'s memory (the caller no longer needs it): oneDNN then adds
 * it with its sum post-op, which keeps its fastest 1x1 kernels where a separate residual input does not.
 */
export function convForward(m: FusedConv2d, x: Tensor, other: Tensor | null, relu: boolean, overwrite = false): Tensor {
  const s = m.spec;
  if (s.dtype === 'bfloat16' && x.device === 'cpu' && F.bf16ConvInFp32()) return bf16ViaFp32(m, x, other, relu);
  const input = x.dtype === s.dtype ? x : x.to(s.dtype);
  try {
    const shape = input.shape;
    if (shape.length === 4 && shape[0]! < 65536 && shape[2]! < 65536 && shape[3]! < 65536 && viaOneDnn(s.dtype, input)) {
      // bf16: planned where oneDNN 2.6 has its brgemm kernels (groups 1); grouped bf16 convolutions, for which it
      // falls back to an older jit kernel, stay on libtorch's newer oneDNN.
      if ((s.dtype === 'float32' || (s.dtype === 'bfloat16' && s.groups === 1 && planned.bf16)) && planned.available) {
        const inPlace = overwrite && other !== null && other.dtype === s.dtype;
        const plan = planFor(m, input, shape, other !== null, relu, inPlace);
        if (plan) return runPlan(m, plan, input, other);
      }
      const p = packFor(m, input, shape);
      const b = m.bias.h;
      return new Tensor(other
        ? native.convFusedAdd(input.h, other.h, p.h, b, s.padding, s.stride, s.dilation, s.groups, relu)
        : native.convFused(input.h, p.h, b, s.padding, s.stride, s.dilation, s.groups, relu));
    }
    const y = F.conv2d(input, m.weight, m.bias, { stride: s.stride, padding: s.padding, dilation: s.dilation, groups: s.groups });
    if (other) y.add_(other);
    return relu ? y.relu_() : y;
  } finally {
    if (input !== x) input.dispose();
  }
}

// Set per dtype once oneDNN had only its reference pooling kernel, or none, for it here: libtorch's from then on.
const poolRefused = new Set<string>();

/**
 * Max pooling (no dilation, no ceil mode) of a channels-last activation on the system oneDNN's kernel, where
 * convolutions are planned (resnet50's stem pool at batch 1: 35 against 149 us for libtorch's channels-last
 * kernel; batch 16: 2.6 against 3.3 ms; AMD EPYC, 2 threads); null where it does not apply (another device or
 * dtype, a gradient wanted, a CPU where oneDNN has only its reference kernel or none), for the caller to run libtorch's.
 */
export function plannedMaxPool(x: Tensor, kernelSize: number, stride: number, padding: number): Tensor | null {
  const dtype = x.dtype;
  if ((dtype !== 'float32' && dtype !== 'bfloat16') || poolRefused.has(dtype) || !planned.available || x.device !== 'cpu' || x.requiresGrad) return null;
  try {
    return new Tensor(native.dnnlMaxPool(x.h, [kernelSize], [stride], [padding]));
  } catch (e) {
    if (!/oneDNN has (only its reference|no) kernel/.test((e as Error).message)) throw e;
    poolRefused.add(dtype);
    return null;
  }
}
