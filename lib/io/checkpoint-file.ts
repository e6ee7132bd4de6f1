// The model side of resnet-ts checkpoints (lib/train/checkpoint.ts writes them): the format name, the checksum
// over metadata and tensors, and reading one as weights (its model's state dict and what the run recorded about
// it), so that loading weights needs nothing from the training layer.
import { createHash } from 'node:crypto';
import { dispose, type Tensor } from '../tensor.ts';
import { loadSafetensors, readSafetensorsHeader } from './safetensors.ts';

// Format 1 hashed the tensors only, so its metadata (epoch, learning rates) could change unnoticed.
/** The format of the checkpoints written now. */
export const CHECKPOINT_FORMAT = 'resnet-ts-checkpoint/2';

/** What a checkpoint tells whoever uses its model as weights (predict, serve, a fine-tune): the net, its classes, its eval preset. */
export interface CheckpointInfo {
  model?: string;
  /** Class names by output index. */
  classes?: readonly string[];
  /** Image folders: the shorter side and centre crop of evaluation, and the normalisation. */
  transforms?: { resize: number; crop: number; mean: readonly number[]; std: readonly number[] };
}

/** The SHA-256 a checkpoint carries: over its format, its metadata and every tensor (name, dtype, shape, bytes). */
export function checkpointChecksum(format: string, meta: string, tensors: Record<string, Tensor>): string {
  const h = createHash('sha256');
  h.update(`${format}|${meta.length}|${meta}|`);
  for (const k of Object.keys(tensors).sort()) {
    const t = tensors[k]!;
    h.update(`${k}|${t.dtype}|${t.shape.join(',')}|`);
    h.update(t.toBytes());
  }
  return h.digest('hex');
}

const isCount = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;
const isNumber = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a resnet-ts checkpoint records about its model, read from the header alone (not verified); undefined for other files. */
export function checkpointInfo(path: string): CheckpointInfo | undefined {
  let metadata: Record<string, string>;
  try {
    metadata = readSafetensorsHeader(path).metadata;
  } catch {
    return undefined;
  }
  if (!String(metadata.format ?? '').startsWith('resnet-ts-checkpoint/')) return undefined;
  try {
    return checkInfo((JSON.parse(metadata.meta ?? '{}') as { info?: unknown }).info);
  } catch (e) {
    throw new Error(`checkpoint ${path}: ${(e as Error).message}`);
  }
}

function checkInfo(v: unknown): CheckpointInfo {
  if (v === undefined) return {};
  const strings = (a: unknown): boolean => Array.isArray(a) && a.every((x) => typeof x === 'string');
  const t = isObject(v) ? v.transforms : undefined;
  if (!isObject(v) || (v.model !== undefined && typeof v.model !== 'string') || (v.classes !== undefined && !strings(v.classes)) ||
    (t !== undefined && (!isObject(t) || !isCount(t.resize) || !isCount(t.crop) || !Array.isArray(t.mean) || !Array.isArray(t.std) || ![...t.mean, ...t.std].every(isNumber)))) {
    throw new Error('its model info is malformed');
  }
  return v as CheckpointInfo;
}

/**
 * A checkpoint's model as weights: verifies the file (format and checksum), then returns the model's state dict
 * (the weight average's when the run kept one; optimizer and RNG state dropped) with what the run recorded about it (net, classes, eval preset).
 */
export function checkpointWeights(path: string): { stateDict: Record<string, Tensor>; info: CheckpointInfo } {
  const metadata = readSafetensorsHeader(path).metadata;
  const tensors = loadSafetensors(path);
  try {
    if (metadata.format !== CHECKPOINT_FORMAT) throw new Error(`not a resnet-ts checkpoint of format ${CHECKPOINT_FORMAT} (format ${JSON.stringify(metadata.format)})`);
    if (typeof metadata.meta !== 'string' || checkpointChecksum(CHECKPOINT_FORMAT, metadata.meta, tensors) !== metadata.sha256) throw new Error('checksum mismatch: the file is damaged');
    const info = checkInfo((JSON.parse(metadata.meta) as { info?: unknown }).info);
    // A run with a weight average (train --ema) evaluated the average, so that is the model it reported.
    const prefix = Object.keys(tensors).some((k) => k.startsWith('ema.')) ? 'ema.' : 'model.';
    const stateDict: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(tensors)) {
      if (k.startsWith(prefix)) stateDict[k.slice(prefix.length)] = t;
      else t.dispose();
    }
    return { stateDict, info };
  } catch (e) {
    dispose(tensors);
    throw new Error(`checkpoint ${path}: ${(e as Error).message}`);
  }
}
