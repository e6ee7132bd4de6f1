// Shared by eval-imagenet.ts and predict.ts: a registry model with its weights loaded (a published name such as
// IMAGENET1K_V2 or DEFAULT, a file, or a URL), the eval preprocessing those weights were made for, and the usage
// errors (unknown model, unreadable or mismatched weights) that make a CLI exit with code 2.
import { existsSync } from 'node:fs';
import { cuda } from '../lib/device.ts';
import { DownloadError } from '../lib/hub/index.ts';
import { IMAGENET_CATEGORIES } from '../lib/data/imagenet-classes.ts';
import { IMAGENET_MEAN, IMAGENET_STD } from '../lib/data/imagenet.ts';
import * as inference from '../lib/inference/index.ts';
import * as models from '../lib/models/index.ts';
import { checkpointInfo } from '../lib/io/checkpoint-file.ts';
import { readSafetensorsHeader } from '../lib/io/safetensors.ts';
import type { Module } from '../lib/nn/module.ts';
import { isDevice, type Device } from '../lib/tensor.ts';

/** A mistake in what the user asked for; the CLIs print its message and exit with code 2. */
export class UsageError extends Error {}

/** Checks a --device value and that CUDA is there when asked for. */
export function checkDevice(device: string): Device {
  if (!isDevice(device)) throw new UsageError(`--device must be cpu, cuda or cuda:N; got ${device}`);
  if (device !== 'cpu' && !cuda.isAvailable()) throw new UsageError(`--device ${device}: CUDA is not available on this machine`);
  return device;
}

/** A classifier ready for evaluation, with what its weights say about inputs and outputs. */
export interface Classifier {
  model: Module;
  /** The registry name it was built as (--model, or the net a resnet-ts checkpoint records). */
  name: string;
  numClasses: number;
  /** The weights file on disk (in torch's cache when it was downloaded). */
  path: string;
  /** The published entry the weights are, if they are one (by name, or by torchvision's file name). */
  entry?: models.Weights;
  /** The shorter side and crop of the weights' eval preset (torchvision's defaults for files it does not know). */
  resize: number;
  crop: number;
  /** Class names by output index, when known. */
  categories?: readonly string[];
}

const isNameLike = (s: string): boolean => !s.includes('/') && !s.includes('.');

/**
 * Builds `name` (default: the net a resnet-ts checkpoint records), loads its weights (downloading a published entry
 * if needed) and moves it to device in eval mode.
 */
export async function loadClassifier(model: string | undefined, weights: string, device: Device): Promise<Classifier> {
  const name = model ?? (existsSync(weights) ? checkpointInfo(weights)?.model : undefined);
  if (name === undefined) {
    // checkpointInfo reads no net from a file whose header it cannot read: a damaged or truncated file says so.
    if (existsSync(weights) && weights.toLowerCase().endsWith('.safetensors')) {
      try {
        readSafetensorsHeader(weights);
      } catch (e) {
        throw new UsageError(`cannot read ${weights}: ${(e as Error).message}`);
      }
    }
    throw new UsageError(`--model is needed: ${weights} is not a resnet-ts checkpoint that names its net`);
  }
  if (!models.list().includes(name)) throw new UsageError(`unknown model '${name}'; known models: ${models.list().join(', ')}`);
  if (models.family(name) === 'cifar') throw new UsageError(`${name} is a CIFAR model (32x32 inputs); ImageNet evaluation needs an ImageNet model`);
  if (!models.findWeights(name, weights) && !/^https?:\/\//.test(weights) && !existsSync(weights) && !isNameLike(weights)) {
    throw new UsageError(`weights file not found: ${weights}`);
  }
  let resolved: models.ResolvedWeights;
  let net: Module;
  try {
    resolved = await models.resolveWeights(name, weights);
    // The file found (a download lands in the cache): a local file named like a published one is that file, not the download.
    net = await models.create(name, { weights: resolved.path });
  } catch (e) {
    if (e instanceof DownloadError) throw e;
    throw new UsageError((e as Error).message);
  }
  const numClasses = models.classifier(net)?.[1].outFeatures ?? 1000;
  const t = resolved.entry?.transforms ?? (resolved.transforms && { ...resolved.transforms, interpolation: 'bilinear' });
  if (t && (t.interpolation !== 'bilinear' || t.mean.some((v, i) => v !== IMAGENET_MEAN[i]) || t.std.some((v, i) => v !== IMAGENET_STD[i]))) {
    throw new UsageError(`${resolved.label}: its eval preset (${t.interpolation}, mean ${t.mean}, std ${t.std}) is not the bilinear ImageNet one implemented here`);
  }
  const named = resolved.categories?.length === numClasses ? resolved.categories : undefined;
  return {
    model: net.eval().to(device), name, numClasses, path: resolved.path, entry: resolved.entry, resize: t?.resize ?? 256, crop: t?.crop ?? 224,
    categories: named ?? (numClasses === 1000 ? IMAGENET_CATEGORIES : undefined),
  };
}

/**
 * What the CLIs run a loaded classifier with: on CPU the fused inference copy (inference.optimize, computing in
 * bfloat16 when amp is 'bf16') when it supports the model and `optimize` is on, else the model itself. `amp` is what
 * is left for autocast to do around the forward (nothing for a fused net, which computes in its own dtype).
 */
export function inferenceModel(model: Module, o: { optimize: boolean; amp?: 'bf16' | 'fp16'; device: Device }): { net: Module; fused: boolean; amp?: 'bf16' | 'fp16' } {
  if (!o.optimize || o.device !== 'cpu' || o.amp === 'fp16') return { net: model, fused: false, amp: o.amp };
  try {
    return { net: inference.optimize(model, { amp: o.amp }), fused: true };
  } catch (e) {
    if (e instanceof inference.UnsupportedModelError) return { net: model, fused: false, amp: o.amp };
    throw e;
  }
}
