// Shared by eval-imagenet.ts and predict.ts: a registry model with its weights loaded, and the
// usage errors (unknown model, unreadable or mismatched weights) that make a CLI exit with code 2.
import { existsSync } from 'node:fs';
import { cuda } from '../lib/device.ts';
import * as io from '../lib/io/index.ts';
import * as models from '../lib/models/index.ts';
import { dispose, isDevice, type Device, type Tensor } from '../lib/tensor.ts';
import type { Module } from '../lib/nn/module.ts';

/** A mistake in what the user asked for; the CLIs print its message and exit with code 2. */
export class UsageError extends Error {}

/** Checks a --device value and that CUDA is there when asked for. */
export function checkDevice(device: string): Device {
  if (!isDevice(device)) throw new UsageError(`--device must be cpu, cuda or cuda:N; got ${device}`);
  if (device !== 'cpu' && !cuda.isAvailable()) throw new UsageError(`--device ${device}: CUDA is not available on this machine`);
  return device;
}

/** Reads a .pth (torch.save) or .safetensors state dict; a DistributedDataParallel "module." prefix is dropped. */
export function readWeights(path: string): Record<string, Tensor> {
  if (!existsSync(path)) throw new UsageError(`weights file not found: ${path}`);
  let sd: Record<string, Tensor>;
  try {
    sd = path.toLowerCase().endsWith('.safetensors') ? io.loadSafetensors(path) : io.loadPth(path);
  } catch (e) {
    throw new UsageError(`cannot read weights ${path}: ${(e as Error).message}`);
  }
  const keys = Object.keys(sd);
  if (keys.length && keys.every((k) => k.startsWith('module.'))) return Object.fromEntries(keys.map((k) => [k.slice(7), sd[k]!]));
  return sd;
}

/** Builds `name` with the class count its weights imply, loads them strictly, and moves it to device in eval mode. */
export function loadClassifier(name: string, weightsPath: string, device: Device): { model: Module; numClasses: number } {
  if (!models.list().includes(name)) throw new UsageError(`unknown model '${name}'; known models: ${models.list().join(', ')}`);
  if (models.family(name) !== 'imagenet') throw new UsageError(`${name} is a CIFAR model (32x32 inputs); ImageNet evaluation needs an ImageNet model`);
  const sd = readWeights(weightsPath);
  try {
    const numClasses = sd['fc.weight']?.shape[0] ?? 1000;
    const model = models.create(name, { numClasses });
    try {
      model.loadStateDict(sd);
    } catch (e) {
      throw new UsageError(`weights ${weightsPath} do not match ${name}: ${(e as Error).message}`);
    }
    return { model: model.eval().to(device), numClasses };
  } finally {
    dispose(sd);
  }
}
