// The registry: every model name to its table row; create(name, opts) is the one door (as timm's create_model).
import type { Module } from '../nn/module.ts';
import { CIFAR, buildCifar, type CifarOptions } from './cifar.ts';
import { IMAGENET, buildResNet, type ResNetOptions } from './resnet.ts';
import { loadPretrained, weightsOf, type FetchWeightsOptions, type Weights, type WeightsSpec } from './weights.ts';

/** Options any registered model takes (each family checks that it knows every key given). */
export type ModelOptions = ResNetOptions & CifarOptions;

/** create()'s options with weights: what to load, and how a download shows itself (progress bar, log line). */
export interface PretrainedOptions extends FetchWeightsOptions {
  weights: WeightsSpec;
}

const FAMILY_KEYS = {
  imagenet: ['numClasses', 'zeroInitResidual', 'groups', 'widthPerGroup', 'replaceStrideWithDilation', 'strideOn1x1', 'inChannels'],
  cifar: ['numClasses', 'inChannels', 'shortcut', 'zeroInitResidual'],
};

/** Which family a name belongs to: 'imagenet' (224² inputs, torchvision weights) or 'cifar' (32² inputs). */
export function family(name: string): 'imagenet' | 'cifar' {
  if (Object.hasOwn(IMAGENET, name)) return 'imagenet';
  if (Object.hasOwn(CIFAR, name)) return 'cifar';
  throw new Error(`unknown model '${name}'; known models: ${list().join(', ')}`);
}

/** Every registered model name (ImageNet family first). */
export function list(): string[] {
  return [...Object.keys(IMAGENET), ...Object.keys(CIFAR)];
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
  const fam = family(name);
  const { weights: spec, progress, log, ...rest } = opts;
  const unknown = Object.keys(rest).filter((k) => !FAMILY_KEYS[fam].includes(k));
  if (unknown.length) throw new Error(`${name}: unknown option(s) ${unknown.join(', ')}; accepted: ${[...FAMILY_KEYS[fam], 'weights'].join(', ')}`);
  const model = fam === 'imagenet' ? buildResNet(name, rest) : buildCifar(name, rest);
  if (spec === undefined) return model;
  return loadPretrained(model, name, spec, { progress, log, numClasses: rest.numClasses }).then(() => model, (e) => {
    model.dispose();
    throw e;
  });
}
