// Checkpoints: model, optimizer, schedule, position and RNG state in one .safetensors file, written
// atomically (temp file, fsync, rename), with a checksum over every tensor so a damaged file is
// refused before anything is loaded.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Tensor, dispose } from '../tensor.ts';
import { getRngState, setRngState } from '../creation.ts';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../io/safetensors.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer, OptimizerState } from '../optim/optimizer.ts';

const FORMAT = 'resnet-ts-checkpoint/1';

/** Everything besides tensors that a resumed run needs (JSON). */
export interface TrainState {
  epoch: number;
  /** Batches of `epoch` already trained (0 at an epoch boundary). */
  batch: number;
  globalStep: number;
  scheduler: { steps: number };
  scaler?: { scale: number; goodSteps: number };
  [k: string]: unknown;
}

interface Meta {
  state: TrainState;
  optimizer: OptimizerState['meta'];
}

function checksum(tensors: Record<string, Tensor>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(tensors).sort()) {
    const t = tensors[k]!;
    h.update(`${k}|${t.dtype}|${t.shape.join(',')}|`);
    h.update(t.toBytes());
  }
  return h.digest('hex');
}

/** Writes a checkpoint atomically; a crash mid-write leaves the previous file intact. */
export function saveCheckpoint(path: string, model: Module, optimizer: Optimizer<{ lr: number }>, state: TrainState): void {
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(model.stateDict())) tensors[`model.${k}`] = t;
  const opt = optimizer.stateDict();
  for (const [k, t] of Object.entries(opt.tensors)) tensors[`optim.${k}`] = t;
  const rng = getRngState();
  tensors['rng.cpu'] = rng;
  try {
    const meta: Meta = { state, optimizer: opt.meta };
    saveSafetensors(path, tensors, { format: FORMAT, meta: JSON.stringify(meta), sha256: checksum(tensors) });
  } finally {
    rng.dispose();
  }
}

/** Whether a checkpoint file exists at path. */
export function hasCheckpoint(path: string): boolean {
  return existsSync(path);
}

/**
 * Reads and verifies a checkpoint, then restores model, optimizer and RNG; returns the train state.
 * Any damage, or a checkpoint of another model or optimizer, is an Error and nothing is changed.
 */
export function loadCheckpoint(path: string, model: Module, optimizer: Optimizer<{ lr: number }>): TrainState {
  let tensors: Record<string, Tensor>;
  let metadata: Record<string, string>;
  try {
    tensors = loadSafetensors(path);
    metadata = readSafetensorsHeader(path).metadata;
  } catch (e) {
    throw new Error(`checkpoint ${path} is unreadable: ${(e as Error).message}`);
  }
  try {
    if (metadata.format !== FORMAT) throw new Error(`not a resnet-ts checkpoint (format ${JSON.stringify(metadata.format)})`);
    if (checksum(tensors) !== metadata.sha256) throw new Error('checksum mismatch: the file is damaged');
    let meta: Meta;
    try {
      meta = JSON.parse(metadata.meta ?? '') as Meta;
    } catch {
      throw new Error('its metadata is not valid JSON');
    }
    const s = meta.state;
    if (!s || ![s.epoch, s.batch, s.globalStep].every((v) => Number.isInteger(v) && v >= 0)) throw new Error('its train state is malformed');
    const modelSd: Record<string, Tensor> = {};
    const optTensors: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(tensors)) {
      if (k.startsWith('model.')) modelSd[k.slice(6)] = t;
      else if (k.startsWith('optim.')) optTensors[k.slice(6)] = t;
      else if (k !== 'rng.cpu') throw new Error(`unexpected tensor ${k}`);
    }
    const rng = tensors['rng.cpu'];
    if (!rng || rng.dtype !== 'uint8' || rng.ndim !== 1) throw new Error('its RNG state is missing or malformed');
    if (meta.optimizer?.kind !== (optimizer.stateDict().meta.kind)) throw new Error(`it holds ${meta.optimizer?.kind} state, the run uses ${optimizer.stateDict().meta.kind}`);
    model.loadStateDict(modelSd);
    optimizer.loadStateDict({ tensors: optTensors, meta: meta.optimizer });
    setRngState(rng);
    return s;
  } catch (e) {
    throw new Error(`checkpoint ${path} refused: ${(e as Error).message}`);
  } finally {
    dispose(tensors);
  }
}
