// Checkpoints: model, optimizer, schedule, position and RNG state in one .safetensors file, written
// atomically (temp file, fsync, rename), with a SHA-256 over the metadata and every tensor. Reading
// verifies the file and checks every part against the model and optimizer it is meant for before
// anything is applied, so a refused checkpoint changes nothing.
import { Tensor, dispose } from '../tensor.ts';
import { getRngState, setRngState } from '../creation.ts';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../io/safetensors.ts';
import { CHECKPOINT_FORMAT as FORMAT, checkpointChecksum as checksum, type CheckpointInfo } from '../io/checkpoint-file.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer, OptimizerState } from '../optim/optimizer.ts';
import type { MetricRecord } from './metrics.ts';
import type { Recipe } from './recipe.ts';

export { checkpointInfo, checkpointWeights, type CheckpointInfo } from '../io/checkpoint-file.ts';


/** Everything besides tensors that a resumed run needs (JSON). */
export interface TrainState {
  epoch: number;
  /** Batches of `epoch` already trained (0 at an epoch boundary). */
  batch: number;
  globalStep: number;
  scheduler: { steps: number };
  scaler?: { scale: number; goodSteps: number };
  /** fit()'s record of the run; absent from checkpoints saved outside fit. */
  run?: RunState;
}

/** Sums over the part of an epoch trained so far, and the loss window of the curve. */
export interface Running {
  lossSum: number;
  top1: number;
  top5: number;
  seen: number;
  windowLoss: number;
  windowSteps: number;
}

/** What fit() keeps to continue a run exactly and to refuse continuing a different one. */
export interface RunState {
  history: MetricRecord[];
  running: Running;
  /** Seconds trained over all sessions. */
  wallTime: number;
  worldSize: number;
  recipe?: Recipe;
}

interface Meta {
  state: TrainState;
  optimizer: OptimizerState['meta'];
  info?: CheckpointInfo;
}

/** A verified checkpoint, not yet applied: apply() restores it, dispose() drops it. */
export interface CheckedCheckpoint {
  readonly state: TrainState;
  /** Whether it holds the weight average that apply() restores into the ema module given to readCheckpoint. */
  readonly hasEma: boolean;
  apply(): void;
  dispose(): void;
}

/** Writes a checkpoint atomically (with a weight average, its tensors as ema.*); a crash mid-write leaves the previous file intact. */
export function saveCheckpoint(path: string, model: Module, optimizer: Optimizer<{ lr: number }>, state: TrainState, info?: CheckpointInfo, ema?: Module): void {
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(model.stateDict())) tensors[`model.${k}`] = t;
  if (ema) for (const [k, t] of Object.entries(ema.stateDict())) tensors[`ema.${k}`] = t;
  const opt = optimizer.stateDict();
  for (const [k, t] of Object.entries(opt.tensors)) tensors[`optim.${k}`] = t;
  const rng = getRngState();
  tensors['rng.cpu'] = rng;
  try {
    const meta = JSON.stringify({ state, optimizer: opt.meta, ...(info ? { info } : {}) } satisfies Meta);
    saveSafetensors(path, tensors, { format: FORMAT, meta, sha256: checksum(FORMAT, meta, tensors) });
  } finally {
    rng.dispose();
  }
}

const isCount = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;
const isNumber = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkState(s: unknown): TrainState {
  if (!isObject(s) || ![s.epoch, s.batch, s.globalStep].every(isCount)) throw new Error('its train state is malformed');
  if (!isObject(s.scheduler) || !isCount(s.scheduler.steps)) throw new Error('its scheduler state is malformed');
  if (s.scaler !== undefined && (!isObject(s.scaler) || !(isNumber(s.scaler.scale) && (s.scaler.scale as number) > 0) || !isCount(s.scaler.goodSteps))) {
    throw new Error('its grad scaler state is malformed');
  }
  if (s.run !== undefined) {
    const r = s.run;
    if (!isObject(r) || !Array.isArray(r.history) || !isNumber(r.wallTime) || !isCount(r.worldSize) || !isObject(r.running)) throw new Error('its run record is malformed');
    const run = r.running;
    if (!['lossSum', 'top1', 'top5', 'seen', 'windowLoss', 'windowSteps'].every((k) => isNumber(run[k]))) throw new Error('its running sums are malformed');
    for (const rec of r.history) {
      if (!isObject(rec) || (rec.kind !== 'epoch' && rec.kind !== 'step') || !isCount(rec.epoch) || !isCount(rec.step)) throw new Error('its metrics history is malformed');
    }
    if (r.recipe !== undefined && !isObject(r.recipe)) throw new Error('its recipe is malformed');
  }
  return s as unknown as TrainState;
}

/** The checks Module.loadStateDict makes in strict mode, made before anything is copied. */
function checkModel(model: Module, sd: Record<string, Tensor>, what = 'model'): void {
  const own = model.stateDict();
  const problems: string[] = [];
  for (const [k, t] of Object.entries(own)) {
    const src = sd[k];
    if (!src) {
      if (!k.endsWith('num_batches_tracked')) problems.push(`missing ${k}`);
    } else if (src.shape.join() !== t.shape.join()) {
      problems.push(`${k} has shape [${src.shape}], the model [${t.shape}]`);
    }
  }
  for (const k of Object.keys(sd)) if (!(k in own)) problems.push(`unexpected ${k}`);
  if (problems.length) throw new Error(`its ${what} does not fit this one: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`);
}

/** The checks Optimizer.loadStateDict makes, and the JSON it would assign to the groups, before anything is changed. */
function checkOptimizer(optimizer: Optimizer<{ lr: number }>, meta: unknown, tensors: Record<string, Tensor>): OptimizerState['meta'] {
  const kind = optimizer.stateDict().meta.kind;
  if (!isObject(meta)) throw new Error('its optimizer state is missing');
  if (meta.kind !== kind) throw new Error(`it holds ${String(meta.kind)} state, the run uses ${kind}`);
  const groups = meta.groups;
  if (!Array.isArray(groups) || groups.length !== optimizer.groups.length) {
    throw new Error(`its optimizer has ${Array.isArray(groups) ? groups.length : 'no'} parameter groups, the run's ${optimizer.groups.length}`);
  }
  for (const g of groups) {
    if (!isObject(g) || 'params' in g || !Object.values(g).every((v) => isNumber(v) || typeof v === 'boolean') || !isNumber(g.lr)) {
      throw new Error('its optimizer groups are malformed');
    }
  }
  const params = optimizer.groups.flatMap((g) => g.params);
  if (!isObject(meta.steps) || !Object.entries(meta.steps).every(([i, n]) => params[Number(i)] && isCount(n))) throw new Error('its optimizer step counts are malformed');
  for (const [k, t] of Object.entries(tensors)) {
    const m = /^(\d+)\.(\w+)$/.exec(k);
    const p = m ? params[Number(m[1])] : undefined;
    if (!p) throw new Error(`its optimizer state ${k} names no parameter of the run`);
    if (t.shape.join() !== p.shape.join()) throw new Error(`its optimizer state ${k} has shape [${t.shape}], the parameter [${p.shape}]`);
  }
  return meta as unknown as OptimizerState['meta'];
}

/**
 * The recipe a checkpoint's run recorded, read from its header alone (not verified): for saying which flags differ
 * when the checkpoint does not fit the model or optimizer built from the flags given now. undefined where there is none.
 */
export function savedRecipe(path: string): Record<string, unknown> | undefined {
  try {
    const meta = JSON.parse(readSafetensorsHeader(path).metadata.meta ?? '{}') as { state?: { run?: { recipe?: unknown } } };
    const r = meta.state?.run?.recipe;
    return r && typeof r === 'object' && !Array.isArray(r) ? (r as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads and verifies a checkpoint and checks it against model, optimizer and the weight average if it holds one;
 * nothing is changed until apply(). Damage, or a checkpoint of another model or optimizer, is an Error.
 */
export function readCheckpoint(path: string, model: Module, optimizer: Optimizer<{ lr: number }>, ema?: Module): CheckedCheckpoint {
  let tensors: Record<string, Tensor>;
  let metadata: Record<string, string>;
  try {
    metadata = readSafetensorsHeader(path).metadata;
    tensors = loadSafetensors(path);
  } catch (e) {
    throw new Error(`checkpoint ${path} is unreadable: ${(e as Error).message}`);
  }
  try {
    if (metadata.format === 'resnet-ts-checkpoint/1') throw new Error('it was written by an earlier resnet-ts whose checksum did not cover the metadata, so it cannot be verified');
    if (metadata.format !== FORMAT) throw new Error(`not a resnet-ts checkpoint (format ${JSON.stringify(metadata.format)})`);
    if (typeof metadata.meta !== 'string' || checksum(FORMAT, metadata.meta, tensors) !== metadata.sha256) throw new Error('checksum mismatch: the file is damaged');
    let meta: Partial<Meta>;
    try {
      meta = JSON.parse(metadata.meta) as Partial<Meta>;
    } catch {
      throw new Error('its metadata is not valid JSON');
    }
    const state = checkState(meta.state);
    const modelSd: Record<string, Tensor> = {};
    const optTensors: Record<string, Tensor> = {};
    const emaSd: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(tensors)) {
      if (k.startsWith('model.')) modelSd[k.slice(6)] = t;
      else if (k.startsWith('optim.')) optTensors[k.slice(6)] = t;
      else if (k.startsWith('ema.')) emaSd[k.slice(4)] = t;
      else if (k !== 'rng.cpu') throw new Error(`unexpected tensor ${k}`);
    }
    const rng = tensors['rng.cpu'];
    const ownRng = getRngState();
    const rngSize = ownRng.numel;
    ownRng.dispose();
    if (!rng || rng.dtype !== 'uint8' || rng.ndim !== 1 || rng.numel !== rngSize) throw new Error('its RNG state is missing or malformed');
    checkModel(model, modelSd);
    const hasEma = Object.keys(emaSd).length > 0;
    if (ema && hasEma) checkModel(ema, emaSd, 'weight average');
    const optMeta = checkOptimizer(optimizer, meta.optimizer, optTensors);
    const t = tensors;
    return {
      state,
      hasEma,
      apply() {
        model.loadStateDict(modelSd);
        if (ema && hasEma) ema.loadStateDict(emaSd);
        optimizer.loadStateDict({ tensors: optTensors, meta: optMeta });
        setRngState(rng);
      },
      dispose: () => dispose(t),
    };
  } catch (e) {
    dispose(tensors);
    throw new Error(`checkpoint ${path} refused: ${(e as Error).message}`);
  }
}

/**
 * Reads and verifies a checkpoint, then restores model, optimizer and RNG; returns the train state.
 * Any damage, or a checkpoint of another model or optimizer, is an Error and nothing is changed.
 */
export function loadCheckpoint(path: string, model: Module, optimizer: Optimizer<{ lr: number }>): TrainState {
  const ck = readCheckpoint(path, model, optimizer);
  try {
    ck.apply();
    return ck.state;
  } finally {
    ck.dispose();
  }
}
