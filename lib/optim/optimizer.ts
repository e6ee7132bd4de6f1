// What SGD and AdamW share: parameter groups, the step over the parameters that have gradients,
// zeroGrad, and state that saves and loads.
import { Tensor, keep, noGrad, tidy } from '../tensor.ts';

/** Parameters with their own hyper-parameters (e.g. no weight decay on BN and biases). */
export interface ParamGroup<O> {
  params: Tensor[];
  options?: Partial<O>;
}

/** A group as the optimizer holds it: the options in force and the lr schedules start from. */
export type Group<O> = O & { params: Tensor[]; initialLr: number; lr: number };

/** Saved optimizer state: tensors keyed `<param index>.<name>` and JSON-able scalars. */
export interface OptimizerState {
  tensors: Record<string, Tensor>;
  meta: { kind: string; groups: Record<string, number | boolean>[]; steps: Record<string, number> };
}

/** Base of the optimizers: per-parameter state tensors that persist across steps. */
export abstract class Optimizer<O extends { lr: number }> {
  readonly groups: Group<O>[];
  protected readonly state = new Map<Tensor, Record<string, Tensor>>();
  protected readonly steps = new Map<Tensor, number>();
  protected abstract readonly kind: string;

  constructor(params: Iterable<Tensor> | ParamGroup<O>[], defaults: O) {
    const list = [...(params as Iterable<Tensor | ParamGroup<O>>)];
    const groups = list.length && !(list[0] instanceof Tensor) ? (list as ParamGroup<O>[]) : [{ params: list as Tensor[] }];
    this.groups = groups.map((g) => {
      for (const p of g.params) if (!(p instanceof Tensor)) throw new TypeError(`${this.constructor.name}: params must be Tensors`);
      const o = { ...defaults, ...g.options } as O;
      this.validate(o);
      return { ...o, params: [...g.params], initialLr: o.lr, lr: o.lr };
    });
    if (!this.groups.some((g) => g.params.length)) throw new Error(`${this.constructor.name}: no parameters to optimize`);
  }

  /** Throws a clear error for a bad hyper-parameter. */
  protected abstract validate(o: O): void;

  /**
   * Applies one update from the accumulated gradients: each group's parameters that have a
   * gradient go to update(), without recording gradients; what the update makes is freed after it.
   */
  step(): void {
    noGrad(() => tidy(() => {
      for (const g of this.groups) {
        const params: Tensor[] = [];
        const grads: Tensor[] = [];
        for (const p of g.params) {
          const grad = p.grad;
          if (grad) {
            params.push(p);
            grads.push(grad);
          }
        }
        if (params.length) this.update(g, params, grads);
      }
    }));
  }

  /** One group's update (torch's foreach algorithm): params and their gradients, in the same order. */
  protected abstract update(g: Group<O>, params: Tensor[], grads: Tensor[]): void;

  /** Clears every parameter's gradient (to none, as torch's default). */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.grad = null;
  }

  /** A persistent state tensor, created once per parameter. */
  protected stateOf(p: Tensor, name: string, init: () => Tensor): Tensor {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = {}));
    return (s[name] ??= keep(tidy(init)));
  }

  private allParams(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** The state (buffers, step counts, group hyper-parameters) as tensors and JSON. */
  stateDict(): OptimizerState {
    const tensors: Record<string, Tensor> = {};
    const steps: Record<string, number> = {};
    this.allParams().forEach((p, i) => {
      for (const [k, t] of Object.entries(this.state.get(p) ?? {})) tensors[`${i}.${k}`] = t;
      if (this.steps.has(p)) steps[i] = this.steps.get(p)!;
    });
    const groups = this.groups.map(({ params: _p, ...o }) => o as unknown as Record<string, number | boolean>);
    return { tensors, meta: { kind: this.kind, groups, steps } };
  }

  /** Restores a stateDict(); checks it fits these parameters before changing anything. */
  loadStateDict(s: OptimizerState): void {
    const params = this.allParams();
    if (s.meta.kind !== this.kind) throw new Error(`optimizer state is for ${s.meta.kind}, not ${this.kind}`);
    if (s.meta.groups.length !== this.groups.length) throw new Error(`optimizer state has ${s.meta.groups.length} groups, this optimizer ${this.groups.length}`);
    const parsed = Object.entries(s.tensors).map(([k, t]) => {
      const m = /^(\d+)\.(\w+)$/.exec(k);
      const p = m ? params[Number(m[1])] : undefined;
      if (!m || !p) throw new Error(`optimizer state: key ${k} names no parameter`);
      if (t.shape.join() !== p.shape.join()) throw new Error(`optimizer state: ${k} has shape [${t.shape}] but the parameter has [${p.shape}]`);
      return [p, m[2]!, t] as const;
    });
    for (const v of this.state.values()) for (const t of Object.values(v)) t.dispose();
    this.state.clear();
    this.steps.clear();
    for (const [p, name, t] of parsed) {
      let rec = this.state.get(p);
      if (!rec) this.state.set(p, (rec = {}));
      rec[name] = keep(t.to({ device: p.device, dtype: p.dtype, copy: true }));
    }
    for (const [i, n] of Object.entries(s.meta.steps)) this.steps.set(params[Number(i)]!, n);
    this.groups.forEach((g, i) => Object.assign(g, s.meta.groups[i]));
  }

  /** Frees the optimizer's state tensors (momentum buffers, moments). */
  dispose(): void {
    for (const v of this.state.values()) for (const t of Object.values(v)) t.dispose();
    this.state.clear();
    this.steps.clear();
  }
}
