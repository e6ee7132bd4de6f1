// How a FusedConv2d runs: on CPU through oneDNN's fused kernel with its weight reordered once per layout
// (cached per module, never per call), elsewhere (CUDA, float16, a libtorch without oneDNN) through
// aten's conv2d with the folded weight and in-place add/ReLU.
import * as F from '../nn/functional.ts';
import { native } from '../native.ts';
import { Tensor, keep } from '../tensor.ts';
import type { FusedConv2d } from './fused.ts';

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

/** Frees a module's reordered weights. */
export function releasePacks(m: FusedConv2d): void {
  const c = caches.get(m);
  if (c) dropAll(c);
  caches.delete(m);
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

/** relu?(conv(x) + bias (+ other)) for a FusedConv2d; x is cast to the module's dtype when it differs. */
export function convForward(m: FusedConv2d, x: Tensor, other: Tensor | null, relu: boolean): Tensor {
  const s = m.spec;
  const input = x.dtype === s.dtype ? x : x.to(s.dtype);
  try {
    const shape = input.shape;
    if (shape.length === 4 && shape[0]! < 65536 && shape[2]! < 65536 && shape[3]! < 65536 && viaOneDnn(s.dtype, input)) {
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
