// The registry: every model name to its table row; create(name, opts) is the one door (as timm's create_model).
import type { Module } from '../nn/module.ts';
import { CIFAR, buildCifar, type CifarOptions } from './cifar.ts';
import { CIFAR_DENSENET, buildCifarDenseNet } from './cifar-densenet.ts';
import { DENSENET, buildDenseNet, type DenseNetOptions } from './densenet.ts';
import { IMAGENET, buildResNet, type ResNetOptions } from './resnet.ts';
import { loadPretrained, weightsOf, type FetchWeightsOptions, type Weights, type WeightsSpec } from './weights.ts';

/** Options any registered model takes (each family checks that it knows every key given). */
export type ModelOptions = ResNetOptions & CifarOptions & DenseNetOptions;

/** create()'s options with weights: what to load, and how a download shows itself (progress bar, log line). */
export interface PretrainedOptions extends FetchWeightsOptions {
  weights: WeightsSpec;
}

const FAMILY_KEYS = {
  imagenet: ['numClasses', 'zeroInitResidual', 'groups', 'widthPerGroup', 'replaceStrideWithDilation', 'strideOn1x1', 'inChannels'],
  cifar: ['numClasses', 'inChannels', 'shortcut', 'zeroInitResidual'],
};
const DENSENET_KEYS = ['numClasses', 'bnSize', 'dropRate', 'inChannels'];

// Each table with its family, accepted options and builder; DenseNets sit in the family of their input size.
const TABLES = [
  { rows: IMAGENET, family: 'imagenet', keys: FAMILY_KEYS.imagenet, build: buildResNet },
  { rows: DENSENET, family: 'imagenet', keys: DENSENET_KEYS, build: buildDenseNet },
  { rows: CIFAR, family: 'cifar', keys: FAMILY_KEYS.cifar, build: buildCifar },
  { rows: CIFAR_DENSENET, family: 'cifar', keys: DENSENET_KEYS, build: buildCifarDenseNet },
] as const;

function table(name: string): (typeof TABLES)[number] {
  const t = TABLES.find((x) => Object.hasOwn(x.rows, name));
  if (!t) throw new Error(`unknown model '${name}'; known models: ${list().join(', ')}`);
  return t;
}

/** Which family a name belongs to: 'imagenet' (224² inputs, torchvision weights) or 'cifar' (32² inputs). */
export function family(name: string): 'imagenet' | 'cifar' {
  return table(name).family;
}

/** Every registered model name (ImageNet family first). */
export function list(): string[] {
  return TABLES.flatMap((t) => Object.keys(t.rows));
}

/** The published weights of a registered model (torchvision's enum members, V1 first); none for the CIFAR family. */
export function weights(name: string): readonly Weights[] {
  family(name);
  return weightsOf(name);
}

/**
 * Builds a registered model by name; an unknown name or option is an Error naming it. With `weights` it
 * resolves to the model with them loaded (downloaded first when needed; see loadPretrained), else it is synchronous.
 */
export function create(name: string, opts: ModelOptions & PretrainedOptions): Promise<Module>;
export function create(name: string, opts?: ModelOptions): Module;
export function create(name: string, opts: ModelOptions & Partial<PretrainedOptions> = {}): Module | Promise<Module> {
  const t = table(name);
  const { weights: spec, progress, log, ...rest } = opts;
  const unknown = Object.keys(rest).filter((k) => !(t.keys as readonly string[]).includes(k));
  if (unknown.length) throw new Error(`${name}: unknown option(s) ${unknown.join(', ')}; accepted: ${[...t.keys, 'weights'].join(', ')}`);
  const model = t.build(name, rest);
  if (spec === undefined) return model;
  return loadPretrained(model, name, spec, { progress, log, numClasses: rest.numClasses }).then(() => model, (e) => {
    model.dispose();
    throw e;
  });
}
