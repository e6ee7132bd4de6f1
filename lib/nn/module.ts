// Module: the ordered registry of parameters, buffers and child modules that every layer and model extends.
import { Tensor, keep, noGrad, deviceOf, type Device, type DType } from '../tensor.ts';

const FLOAT_DTYPES = new Set<DType>(['float32', 'float64', 'float16', 'bfloat16']);

/** A state-dict entry whose shape differs between the checkpoint and the model. */
export interface ShapeMismatch {
  key: string;
  checkpointShape: number[];
  modelShape: number[];
}

/** What loadStateDict found besides the keys it copied (non-strict mode reports instead of throwing). */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
  /** Keys left as they were because their shapes differ (non-strict mode only; strict mode throws). */
  mismatchedKeys: ShapeMismatch[];
}

/** A forward hook: sees a module's input and output; a returned tensor replaces the output (torch's register_forward_hook). */
export type ForwardHook<M extends Module = Module> = (module: M, input: Tensor, output: Tensor) => Tensor | void;

/** Removes the hook it was returned for. */
export interface HookHandle {
  remove(): void;
}

/**
 * Base class of layers and models, as torch.nn.Module: parameters, buffers and children are registered
 * by name in order, which fixes the state-dict keys (`layer1.0.conv1.weight`). Registered tensors are
 * keep()-ed, so tidy() never sweeps them; layers read them through param()/buffer() because to()
 * replaces them with moved copies. As in torch, assigning a Module to a property (`m.fc = new Linear(2048, 5)`)
 * registers it as a child, or replaces the child of that name: every instance is a Proxy that sees the assignment.
 */
export abstract class Module {
  /** Whether the module is in training mode (BatchNorm uses batch statistics, Dropout drops). */
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly bufs = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  // Property names that hold a child registered under another name (CifarResNet.finalBn is 'final_bn').
  private readonly aliases = new Map<string, string>();
  private readonly hooks: ForwardHook[] = [];
  private unhook?: () => void;
  // The mode last asked for by train()/eval(); a frozen module stays in eval mode whatever it is.
  private requestedTraining = true;
  private isFrozen = false;

  constructor() {
    // The Proxy only traps writes: reads (every forward) go straight to the instance.
    return new Proxy(this, CHILD_ASSIGNMENT);
  }

  /** Computes the output; subclasses define it. */
  abstract forward(x: Tensor): Tensor;

  /** Registers a parameter: kept out of every tidy(), requires grad. */
  protected registerParameter(name: string, t: Tensor): Tensor {
    this.checkFree(name);
    keep(t).requiresGrad_(true);
    this.params.set(name, t);
    return t;
  }

  /** Registers a buffer (state that is saved but not trained, e.g. BN running statistics). */
  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.checkFree(name);
    this.bufs.set(name, keep(t));
    return t;
  }

  /** Registers a child module under name; its keys are prefixed with `name.`. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    if (!(m instanceof Module)) throw new TypeError(`${this.constructor.name}.registerModule: '${name}' is not a Module`);
    this.checkFree(name);
    this.checkAcyclic(name, m);
    this.children.set(name, m);
    return m;
  }

  private checkAcyclic(name: string, m: Module): void {
    if (m.modules().includes(this)) throw new Error(`${this.constructor.name}: '${name}' would contain the module itself (a cycle)`);
  }

  private checkFree(name: string): void {
    if (!name || name.includes('.')) throw new Error(`${this.constructor.name}: invalid name '${name}' (non-empty, no dots)`);
    if (this.params.has(name) || this.bufs.has(name) || this.children.has(name)) {
      throw new Error(`${this.constructor.name}: '${name}' is already registered`);
    }
  }

  /** The current tensor of a parameter registered here. */
  protected param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`${this.constructor.name} has no parameter '${name}'`);
    return t;
  }

  /** The current tensor of a buffer registered here. */
  protected buffer(name: string): Tensor {
    const t = this.bufs.get(name);
    if (!t) throw new Error(`${this.constructor.name} has no buffer '${name}'`);
    return t;
  }

  /** Whether a parameter is registered here under name (optional ones such as a conv bias). */
  protected hasParam(name: string): boolean {
    return this.params.has(name);
  }

  /**
   * Registers m as the child `name`, or replaces the child of that name (keeping its place in the state-dict
   * order) and every property that pointed to it; returns the child it replaced. The replaced child is not
   * disposed: it may still be in use.
   */
  setChild(name: string, m: Module): Module | undefined {
    if (!(m instanceof Module)) throw new TypeError(`${this.constructor.name}.setChild: '${name}' must be a Module; got ${describe(m)}`);
    const old = this.children.get(name);
    if (old === m) return old;
    if (!old) {
      this.registerModule(name, m);
      // Also as a property, unless the name is taken by something else (a method, a getter, a setting).
      const own = Object.getOwnPropertyDescriptor(this, name);
      if (own ? 'value' in own && own.value == null : !(name in this)) Reflect.set(this, name, m);
      return undefined;
    }
    this.checkAcyclic(name, m);
    this.children.set(name, m);
    for (const key of Object.keys(this)) if (Reflect.get(this, key) === old) Reflect.set(this, key, m);
    return old;
  }

  /** The child module registered under name. */
  child<M extends Module = Module>(name: string): M {
    const m = this.children.get(name);
    if (!m) throw new Error(`${this.constructor.name} has no child module '${name}'`);
    return m as M;
  }

  /** Direct children, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** This module ('' ) and every descendant with its dotted path, depth-first in registration order. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.children) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every module (this one first). */
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** [dotted name, tensor] of every parameter, in state-dict order. */
  namedParameters(): [string, Tensor][] {
    return this.collect((m) => m.params);
  }

  /** Every parameter tensor (what an optimizer takes). */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** [dotted name, tensor] of every buffer. */
  namedBuffers(): [string, Tensor][] {
    return this.collect((m) => m.bufs);
  }

  /** Every buffer tensor. */
  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  private collect(pick: (m: Module) => Map<string, Tensor>): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules()) for (const [n, t] of pick(m)) out.push([path ? `${path}.${n}` : n, t]);
    return out;
  }

  /** Whether loadStateDict may find key missing: its module lists the name in optionalKeys(). */
  private isOptionalKey(key: string): boolean {
    const dot = key.lastIndexOf('.');
    const owner = this.namedModules().find(([p]) => p === (dot < 0 ? '' : key.slice(0, dot)))?.[1];
    return owner !== undefined && owner.optionalKeys().includes(key.slice(dot + 1));
  }

  /** Names of this module's own tensors that a state dict may lack (they keep their values); layers override it. */
  protected optionalKeys(): readonly string[] {
    return [];
  }

  /** Sets requiresGrad on every parameter of this module and its descendants (torch's requires_grad_); returns this. */
  requiresGrad_(on = true): this {
    for (const t of this.parameters()) t.requiresGrad_(on);
    return this;
  }

  /**
   * Stops training this module and its descendants: no gradients for their parameters, and eval mode that
   * train() does not undo, so BatchNorm keeps its pretrained statistics (the usual fine-tuning recipe).
   */
  freeze(): this {
    this.requiresGrad_(false);
    for (const m of this.modules()) [m.isFrozen, m.training] = [true, false];
    return this;
  }

  /** Undoes freeze() on this module and its descendants: parameters require grad, the mode is the one train()/eval() last set. */
  unfreeze(): this {
    this.requiresGrad_(true);
    for (const m of this.modules()) [m.isFrozen, m.training] = [false, m.requestedTraining];
    return this;
  }

  /** Whether freeze() holds this module. */
  get frozen(): boolean {
    return this.isFrozen;
  }

  /** Total number of parameter elements. */
  numParameters({ trainableOnly = false } = {}): number {
    let n = 0;
    for (const t of this.parameters()) if (!trainableOnly || t.requiresGrad) n += t.numel;
    return n;
  }

  /**
   * Parameters and buffers by dotted key, as torch's state_dict(). The values are the module's own tensors
   * (not copies): read or save them, do not dispose them.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [path, m] of this.namedModules()) {
      for (const [n, t] of m.params) out[path ? `${path}.${n}` : n] = t;
      for (const [n, t] of m.bufs) out[path ? `${path}.${n}` : n] = t;
    }
    return out;
  }

  /**
   * Copies a state dict into this module's tensors (converting dtype and device). Strict by default: missing
   * or unexpected keys and shape mismatches throw an Error listing them by key. Non-strict mode copies what
   * fits and reports the rest. A missing `num_batches_tracked` is accepted, as torch does for old checkpoints.
   */
  loadStateDict(sd: Record<string, Tensor>, { strict = true }: { strict?: boolean } = {}): LoadResult {
    if (!sd || typeof sd !== 'object') throw new TypeError('loadStateDict: expected a Record<string, Tensor>');
    const own = this.stateDict();
    const missingKeys: string[] = [];
    const mismatchedKeys: ShapeMismatch[] = [];
    const pairs: [Tensor, Tensor][] = [];
    for (const [k, dst] of Object.entries(own)) {
      const src = sd[k];
      if (src === undefined) {
        if (!this.isOptionalKey(k)) missingKeys.push(k);
        continue;
      }
      if (!(src instanceof Tensor)) throw new TypeError(`loadStateDict: value of '${k}' is not a Tensor`);
      const [a, b] = [src.shape, dst.shape];
      if (a.length !== b.length || a.some((v, i) => v !== b[i])) mismatchedKeys.push({ key: k, checkpointShape: [...a], modelShape: [...b] });
      else pairs.push([dst, src]);
    }
    const unexpectedKeys = Object.keys(sd).filter((k) => !(k in own));
    const problems = strict ? [
      ...(missingKeys.length ? [`Missing key(s) in state_dict: ${missingKeys.map((k) => `"${k}"`).join(', ')}`] : []),
      ...(unexpectedKeys.length ? [`Unexpected key(s) in state_dict: ${unexpectedKeys.map((k) => `"${k}"`).join(', ')}`] : []),
      ...mismatchedKeys.map(({ key, checkpointShape: a, modelShape: b }) =>
        `size mismatch for ${key}: copying a param with shape [${a.join(', ')}] from checkpoint, the shape in current model is [${b.join(', ')}]`),
    ] : [];
    if (problems.length) throw new Error(`Error(s) in loading state_dict for ${this.constructor.name}:\n\t${problems.join('\n\t')}`);
    noGrad(() => {
      for (const [dst, src] of pairs) dst.copy_(src);
    });
    for (const m of this.modules()) m.stateLoaded();
    return { missingKeys, unexpectedKeys, mismatchedKeys };
  }

  /**
   * Called on this module and every descendant after loadStateDict copied new values into their tensors (in
   * place): a module that keeps something derived from them (a reordered weight) drops it here.
   */
  protected stateLoaded(): void {}

  /** Sets training mode on this module and every descendant (frozen ones stay in eval mode). */
  train(on = true): this {
    for (const m of this.modules()) [m.requestedTraining, m.training] = [on, on && !m.isFrozen];
    return this;
  }

  /** Sets evaluation mode (train(false)). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Moves every parameter and buffer to a device and/or casts floating ones to dtype, as torch's Module.to.
   * The moved tensors replace the old ones, which are disposed: build optimizers after calling to().
   */
  to(target: Device | DType | { device?: Device; dtype?: DType }, dtype?: DType): this {
    let device: Device | undefined;
    let cast: DType | undefined = dtype;
    if (typeof target === 'string' && FLOAT_DTYPES.has(target as DType)) cast = target as DType;
    else if (typeof target === 'string') device = deviceOf(target);
    else if (target && typeof target === 'object') [device, cast] = [deviceOf(target.device), target.dtype ?? cast];
    else throw new TypeError(`Module.to: expected a device, a floating dtype or { device, dtype }; got ${String(target)}`);
    if (cast !== undefined && !FLOAT_DTYPES.has(cast)) throw new TypeError(`Module.to: dtype must be a floating type; got ${cast}`);
    this.replaceTensors((t) => {
      const d = device && device !== t.device && !(device === 'cuda' && t.device === 'cuda:0') ? device : undefined;
      const c = cast && FLOAT_DTYPES.has(t.dtype) && cast !== t.dtype ? cast : undefined;
      return d || c ? t.to({ device: d, dtype: c }) : undefined;
    });
    return this;
  }

  /** Stores every 4-D parameter and buffer (conv weights) channels-last, as torch's to(memory_format=channels_last). */
  toChannelsLast(): this {
    this.replaceTensors((t) => (t.ndim === 4 && !t.isChannelsLast ? t.contiguous('channelsLast') : undefined));
    return this;
  }

  /** Swaps each parameter/buffer for fn's copy (undefined keeps it), keeping requiresGrad and disposing the old one. */
  private replaceTensors(fn: (t: Tensor) => Tensor | undefined): void {
    for (const m of this.modules()) {
      for (const map of [m.params, m.bufs]) {
        for (const [n, t] of map) {
          const moved = noGrad(() => fn(t));
          if (!moved) continue;
          keep(moved);
          if (map === m.params) moved.requiresGrad_(t.requiresGrad);
          map.set(n, moved);
          t.dispose();
        }
      }
    }
  }

  /** Clears every parameter's gradient (set to null, as torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const t of this.parameters()) t.grad = null;
  }

  /**
   * Calls hook(module, input, output) after every forward of this module, in registration order; a tensor
   * the hook returns replaces the output. The first hook wraps forward, and removing the last restores it.
   */
  registerForwardHook(hook: ForwardHook<this>): HookHandle {
    if (typeof hook !== 'function') throw new TypeError(`${this.constructor.name}.registerForwardHook: expected a function`);
    const hooks = this.hooks as ForwardHook<this>[];
    if (hooks.length === 0) {
      // An own forward (rare) is put back when the last hook goes; otherwise the prototype's shows again.
      const own = Object.getOwnPropertyDescriptor(this, 'forward');
      const inner = this.forward;
      const self = this;
      Object.defineProperty(this, 'forward', {
        configurable: true,
        writable: true,
        value: function hooked(x: Tensor): Tensor {
          let y = inner.call(self, x);
          for (const h of [...hooks]) {
            const r = h(self, x, y);
            if (r !== undefined && !(r instanceof Tensor)) throw new TypeError(`forward hook of ${self.constructor.name} returned ${describe(r)}; return a Tensor or nothing`);
            y = r ?? y;
          }
          return y;
        },
      });
      this.unhook = () => (own ? Object.defineProperty(this, 'forward', own) : delete (this as { forward?: unknown }).forward);
    }
    hooks.push(hook);
    return {
      remove: () => {
        const i = hooks.indexOf(hook);
        if (i < 0) return;
        hooks.splice(i, 1);
        if (hooks.length === 0) this.unhook?.();
      },
    };
  }

  /** Calls fn on every descendant and then this module (torch's apply order); returns this. */
  apply(fn: (m: Module) => void): this {
    for (const [, c] of this.children) c.apply(fn);
    fn(this);
    return this;
  }

  /** Disposes every parameter and buffer; the module is unusable afterwards. */
  dispose(): void {
    for (const t of [...this.parameters(), ...this.buffers()]) t.dispose();
  }

  /** An indented tree of the modules, like torch's repr. */
  toString(): string {
    const kids = [...this.children].map(([n, m]) => `(${n}): ${m.toString().replace(/\n/g, '\n  ')}`);
    const head = `${this.constructor.name}(${this.extraRepr()}`;
    return kids.length ? `${head}\n  ${kids.join('\n  ')}\n)` : `${head})`;
  }

  /** The layer's settings shown by toString(). */
  protected extraRepr(): string {
    return '';
  }
}

function describe(v: unknown): string {
  return v === null ? 'null' : typeof v === 'object' ? (v as object).constructor?.name ?? 'object' : typeof v;
}

// Whether name is a getter/setter somewhere on the prototype chain (such properties are the class's business).
function isAccessor(obj: object, name: string): boolean {
  for (let o: object | null = obj; o; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (d) return d.get !== undefined || d.set !== undefined;
  }
  return false;
}

/**
 * Assigning a Module to a property registers it (torch's __setattr__): an existing child of that name is
 * replaced in place, a property naming a child under another name replaces that child, and a new name becomes
 * a new child. Writing anything but a Module over a child throws, since the state dict would keep the old one.
 */
const CHILD_ASSIGNMENT: ProxyHandler<Module> = {
  set(target, prop, value, receiver) {
    if (typeof prop === 'string') assignChild(target, prop, value);
    return Reflect.set(target, prop, value, receiver);
  },
  defineProperty(target, prop, desc) {
    if (typeof prop === 'string' && 'value' in desc) assignChild(target, prop, desc.value);
    return Reflect.defineProperty(target, prop, desc);
  },
};

function assignChild(target: Module, prop: string, value: unknown): void {
  const internals = target as unknown as { children: Map<string, Module>; aliases: Map<string, string> };
  const name = internals.aliases.get(prop) ?? prop;
  const current = internals.children.get(name);
  if (current) {
    if (value === current) return;
    if (!(value instanceof Module)) {
      throw new TypeError(`${target.constructor.name}.${prop} is a child module; assign a Module (e.g. nn.Identity()), not ${describe(value)}`);
    }
    (target as unknown as { checkAcyclic(n: string, m: Module): void }).checkAcyclic(name, value);
    internals.children.set(name, value);
    return;
  }
  if (!(value instanceof Module) || isAccessor(target, prop)) return;
  const registeredAs = [...internals.children].find(([, m]) => m === value)?.[0];
  if (registeredAs !== undefined) internals.aliases.set(prop, registeredAs);
  else (target as unknown as { registerModule(n: string, m: Module): Module }).registerModule(prop, value);
}
