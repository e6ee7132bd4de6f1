// An exponential moving average of a model's weights, as timm's ModelEmaV3 (its defaults are ModelEmaV2): a frozen
// copy in eval mode, updated after each optimizer step, that evaluates and saves like any model.
import { Module } from '../nn/module.ts';
import { Tensor, keep, noGrad, type Device } from '../tensor.ts';

const FLOATS = new Set(['float32', 'float64', 'float16', 'bfloat16']);

/** timm's ModelEmaV3 arguments, camelCased (use_warmup is `warmup`). */
export interface EmaOptions {
  /** Weight of the old average in each update (timm's default 0.9999); the ceiling of the warm-up ramp. */
  decay?: number;
  /** Floor of the warm-up ramp. */
  minDecay?: number;
  /** With a step given to update(): steps up to this one (and step 1) copy the weights instead of averaging. */
  updateAfterStep?: number;
  /** With a step given to update(): decay = 1 - (1 + step / warmupGamma)^-warmupPower, clamped to [minDecay, decay]. */
  warmup?: boolean;
  warmupGamma?: number;
  warmupPower?: number;
  /** Average the parameters only and copy the buffers (BN statistics) from the model. */
  excludeBuffers?: boolean;
  /** Keep the average on another device, e.g. 'cpu' while training on CUDA. */
  device?: Device;
}

/** A structural copy of a module tree: same classes and settings, cloned tensors (not requiring grad), shared functions. */
function copy(v: unknown, memo: Map<object, unknown>): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (memo.has(v)) return memo.get(v);
  let out: unknown;
  if (v instanceof Tensor) out = keep(noGrad(() => v.clone()));
  else if (ArrayBuffer.isView(v)) out = (v as unknown as { slice(): unknown }).slice();
  else if (v instanceof Map) out = new Map();
  else if (v instanceof Set) out = new Set();
  else if (Array.isArray(v)) out = [];
  else if (v instanceof Module || Object.getPrototypeOf(v) === Object.prototype) out = Object.create(Object.getPrototypeOf(v));
  else return v;
  memo.set(v, out);
  if (v instanceof Map) for (const [k, x] of v) (out as Map<unknown, unknown>).set(k, copy(x, memo));
  else if (v instanceof Set) for (const x of v) (out as Set<unknown>).add(copy(x, memo));
  else if (Array.isArray(v)) for (const x of v) (out as unknown[]).push(copy(x, memo));
  else if (!(v instanceof Tensor) && !ArrayBuffer.isView(v)) {
    for (const k of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      Object.defineProperty(out, k, 'value' in d ? { ...d, value: copy(d.value, memo) } : d);
    }
  }
  return out;
}

/**
 * The EMA of a model (timm's ModelEmaV3): `ema.update(model)` after each optimizer step; `ema.module` (or the
 * ModelEma itself, a Module in eval mode) evaluates or saves the averaged weights. Floating parameters and
 * buffers are averaged (BN running statistics too, as timm), integer buffers (num_batches_tracked) copied.
 */
export class ModelEma extends Module {
  readonly module: Module;
  readonly decay: number;
  readonly minDecay: number;
  readonly updateAfterStep: number;
  readonly warmup: boolean;
  readonly warmupGamma: number;
  readonly warmupPower: number;
  readonly excludeBuffers: boolean;
  readonly device: Device | undefined;

  constructor(model: Module, o: EmaOptions = {}) {
    super();
    if (!(model instanceof Module)) throw new TypeError('ModelEma: expected a Module');
    const { decay = 0.9999, minDecay = 0, updateAfterStep = 0, warmup = false, warmupGamma = 1, warmupPower = 2 / 3, excludeBuffers = false, device } = o;
    for (const [k, v] of Object.entries({ decay, minDecay })) {
      if (!(v >= 0 && v <= 1)) throw new Error(`ModelEma: ${k} must be in [0, 1]; got ${v}`);
    }
    if (!Number.isInteger(updateAfterStep) || updateAfterStep < 0) throw new Error(`ModelEma: updateAfterStep must be a non-negative integer; got ${updateAfterStep}`);
    if (!(warmupGamma > 0) || !(warmupPower > 0)) throw new Error(`ModelEma: warmupGamma and warmupPower must be positive; got ${warmupGamma}, ${warmupPower}`);
    [this.decay, this.minDecay, this.updateAfterStep, this.warmup] = [decay, minDecay, updateAfterStep, warmup];
    [this.warmupGamma, this.warmupPower, this.excludeBuffers, this.device] = [warmupGamma, warmupPower, excludeBuffers, device];
    this.module = this.registerModule('module', copy(model, new Map()) as Module);
    if (device) this.module.to(device);
    // The wrapper starts in eval mode too, so evaluate() restoring "training" leaves the average in eval mode.
    this.eval();
  }

  /** timm's get_decay: the fixed decay without a step; with one, 0 until updateAfterStep has passed, then the (warm-up) decay. */
  getDecay(step?: number): number {
    if (step === undefined) return this.decay;
    const s = Math.max(0, step - this.updateAfterStep - 1);
    if (s <= 0) return 0;
    if (!this.warmup) return this.decay;
    const ramp = 1 - (1 + s / this.warmupGamma) ** -this.warmupPower;
    return Math.max(Math.min(ramp, this.decay), this.minDecay);
  }

  /** Moves the average towards model's weights: ema = decay * ema + (1 - decay) * model (timm's update(model, step)). */
  update(model: Module, step?: number): void {
    const decay = this.getDecay(step);
    const params = new Set(this.module.namedParameters().map(([k]) => k));
    this.each(model, (k, ema, src) => {
      const average = FLOATS.has(ema.dtype) && (!this.excludeBuffers || params.has(k));
      if (!average || decay === 0) ema.copy_(src);
      else ema.mul_(decay).add_(src, 1 - decay);
    });
  }

  /** Copies model's weights into the average (timm's set). */
  set(model: Module): void {
    this.each(model, (_, ema, src) => ema.copy_(src));
  }

  private each(model: Module, fn: (key: string, ema: Tensor, src: Tensor) => void): void {
    const own = this.module.stateDict();
    const theirs = model.stateDict();
    const keys = Object.keys(own);
    const missing = keys.filter((k) => !(k in theirs));
    const extra = Object.keys(theirs).filter((k) => !(k in own));
    if (missing.length || extra.length) {
      throw new Error(`ModelEma: the model's state dict does not match the average's (missing: ${missing.slice(0, 5).join(', ') || 'none'}; unexpected: ${extra.slice(0, 5).join(', ') || 'none'})`);
    }
    noGrad(() => {
      for (const k of keys) {
        const ema = own[k]!;
        const src = theirs[k]!;
        const moved = src.device === ema.device ? src : src.to(ema.device);
        fn(k, ema, moved);
        if (moved !== src) moved.dispose();
      }
    });
  }

  forward(x: Tensor): Tensor {
    return this.module.forward(x);
  }
}
