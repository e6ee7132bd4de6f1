// Transfer learning as recipe fields: start from weights (a published name, a file, a resnet-ts checkpoint),
// freeze part of the net, and give the classifier its own learning rate. buildModel and the optimizer call
// these; fetchWeights downloads a published entry beforehand, since building a recipe is synchronous.
import { existsSync } from 'node:fs';
import { applyWeights, classifier, findWeights, resolveLocalWeights, resolveWeights, weightsForFile, type FetchWeightsOptions, type ResolvedWeights } from '../models/weights.ts';
import { checkpointInfo } from '../io/checkpoint-file.ts';
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor.ts';
import { RecipeError, type Recipe } from './recipe.ts';

/** What a recipe's `freeze` may say: nothing, all but the classifier, or the stem and the first N stages. */
export type FreezeSpec = 'none' | 'backbone' | `stages:${number}`;

/** The parsed form of a FreezeSpec; anything else is a RecipeError naming the accepted forms. */
export function parseFreeze(spec: string | undefined): { kind: 'none' } | { kind: 'backbone' } | { kind: 'stages'; n: number } {
  if (spec === undefined || spec === 'none') return { kind: 'none' };
  if (spec === 'backbone') return { kind: 'backbone' };
  const m = /^stages:(\d+)$/.exec(spec);
  if (m && Number(m[1]) >= 1) return { kind: 'stages', n: Number(m[1]) };
  throw new RecipeError('freeze', `expected none, backbone or stages:N (N >= 1); got '${spec}'`);
}

/** The stages of a net in order: ResNets' layer1..4 (layer1..3 of the CIFAR nets), DenseNets' denseblock1..4. */
export function stagesOf(model: Module): [string, Module][] {
  return model.namedModules().filter(([p]) => /(^|\.)(layer|denseblock)\d+$/.test(p));
}

/**
 * Freezes what spec names (Module.freeze: no gradients, BatchNorm kept in eval mode). backbone: every module but the
 * classifier; stages:N: every module that comes before the end of the N-th stage (the stem, then stages 1..N).
 */
export function applyFreeze(model: Module, spec: string | undefined): void {
  const f = parseFreeze(spec);
  if (f.kind === 'none') return;
  const all = model.namedModules();
  const inside = (q: string, p: string): boolean => q === p || q.startsWith(`${p}.`);
  // The last module of i's subtree in namedModules' pre-order.
  const lastOf = (i: number): number => all.findLastIndex(([q]) => inside(q, all[i]![0]));
  if (f.kind === 'backbone') {
    const head = classifier(model);
    if (!head) throw new RecipeError('freeze', `${model.constructor.name} has no Linear classifier to keep training`);
    for (const [path, m] of all.slice(1)) if (!m.frozen && !inside(path, head[0]) && !inside(head[0], path)) m.freeze();
    return;
  }
  const stages = stagesOf(model);
  if (f.n > stages.length) throw new RecipeError('freeze', `stages:${f.n}: ${model.constructor.name} has ${stages.length} stages (${stages.map(([p]) => p).join(', ')})`);
  const end = lastOf(all.findIndex(([p]) => p === stages[f.n - 1]![0]));
  // Each module whose whole subtree comes before the cut (ancestors of later modules stay trainable).
  for (let i = 1; i <= end; i++) if (!all[i]![1].frozen && lastOf(i) <= end) all[i]![1].freeze();
}

/** The classifier's parameters when the recipe gives it its own learning rate (headLr), else none. */
export function headParams(r: Recipe, model: Module): Set<Tensor> {
  if (r.headLr === undefined) return new Set();
  const head = classifier(model);
  if (!head) throw new RecipeError('headLr', `${model.constructor.name} has no Linear classifier to give its own learning rate`);
  return new Set(head[1].parameters());
}

/** Loads the recipe's weights into a freshly built model; the classifier is kept only for the same classes. */
export function loadRecipeWeights(r: Recipe, model: Module, classes: readonly string[], log?: (line: string) => void): ResolvedWeights | undefined {
  if (r.weights === undefined) return undefined;
  let resolved: ResolvedWeights;
  try {
    resolved = resolveLocalWeights(r.model, r.weights);
    const other = resolved.categories !== undefined && (resolved.categories.length !== classes.length || resolved.categories.some((c, i) => c !== classes[i]));
    const head = applyWeights(model, r.model, resolved, { numClasses: classes.length, freshHead: other, log });
    // Weights that do not name their classes (a plain state dict) and have as many as the data: their classifier is
    // kept, as timm does, and the user is told which rows it takes to be which class, since nothing could check it.
    if (head === 'loaded' && resolved.categories === undefined) {
      (log ?? ((line: string) => process.stderr.write(`${line}\n`)))(`${r.model}: loaded ${resolved.label} with its classifier, whose ${classes.length} rows ` +
        `name no classes; they are taken to be ${classes.join(', ')} in that order (weights naming other classes would get a new classifier)`);
    }
  } catch (e) {
    throw new RecipeError('weights', (e as Error).message);
  }
  return resolved;
}

/** Downloads the recipe's published weights into torch.hub's cache when they are not there yet (buildTraining only reads them). */
export async function fetchWeights(r: Recipe, o: FetchWeightsOptions = {}): Promise<void> {
  if (r.weights === undefined) return;
  try {
    await resolveWeights(r.model, r.weights, o);
  } catch (e) {
    throw new RecipeError('weights', (e as Error).message);
  }
}

/** The eval preset the recipe's weights were made with (a published entry's, or a resnet-ts checkpoint's), if they say. */
export function weightsPreset(r: Pick<Recipe, 'model' | 'weights'>): { resize: number; crop: number; mean: readonly number[]; std: readonly number[] } | undefined {
  if (r.weights === undefined) return undefined;
  const entry = findWeights(r.model, r.weights) ?? weightsForFile(r.weights);
  if (entry) {
    const t = entry.transforms;
    if (t.interpolation !== 'bilinear') throw new RecipeError('weights', `${entry.enum}.${entry.name}: its eval preset uses ${t.interpolation} resizing; image folders are resized bilinearly here`);
    return { resize: t.resize, crop: t.crop, mean: t.mean, std: t.std };
  }
  return existsSync(r.weights) ? checkpointInfo(r.weights)?.transforms : undefined;
}
