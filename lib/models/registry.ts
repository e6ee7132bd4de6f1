// The registry: every model name to its table row; create(name, opts) is the one door (as timm's create_model).
import type { Module } from '../nn/module.ts';
import { CIFAR, buildCifar, type CifarOptions } from './cifar.ts';
import { IMAGENET, buildResNet, type ResNetOptions } from './resnet.ts';

/** Options any registered model takes (each family checks that it knows every key given). */
export type ModelOptions = ResNetOptions & CifarOptions;

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

/** Builds a registered model by name; an unknown name or option is an Error naming it. */
export function create(name: string, opts: ModelOptions = {}): Module {
  const fam = family(name);
  const unknown = Object.keys(opts).filter((k) => !FAMILY_KEYS[fam].includes(k));
  if (unknown.length) throw new Error(`${name}: unknown option(s) ${unknown.join(', ')}; accepted: ${FAMILY_KEYS[fam].join(', ')}`);
  return fam === 'imagenet' ? buildResNet(name, opts) : buildCifar(name, opts);
}
