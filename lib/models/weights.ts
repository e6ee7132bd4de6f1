// Pretrained weights as data (torchvision's Weights enums, generated into weights-table.ts) and loading
// them: a registry name, 'DEFAULT', a file, or { url, sha256 } — downloaded into torch.hub's cache.
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { checkpointsDir, download, type DownloadOptions } from '../hub/index.ts';
import { checkpointInfo, checkpointWeights } from '../io/checkpoint-file.ts';
import { loadPth } from '../io/pth.ts';
import { loadSafetensors } from '../io/safetensors.ts';
import { Linear } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';
import { dispose, type Tensor } from '../tensor.ts';
import { WEIGHTS_TABLE } from './weights-table.ts';
import { remapLegacyKeys } from './densenet.ts';

/** torchvision's eval preset (ImageClassification): resize the shorter side, centre-crop, normalize. */
export interface EvalTransforms {
  resize: number;
  crop: number;
  interpolation: 'bilinear' | 'bicubic' | 'nearest';
  mean: readonly number[];
  std: readonly number[];
}

/** One published weights file of a model, as a member of torchvision's Weights enum describes it. */
export interface Weights {
  model: string;
  /** The enum member: 'IMAGENET1K_V1', 'IMAGENET1K_V2'. */
  name: string;
  /** torchvision's enum class: 'ResNet50_Weights'. */
  enum: string;
  /** Whether torchvision's DEFAULT is this entry. */
  isDefault: boolean;
  url: string;
  /** torchvision's file name; the cache holds it under this name. */
  fileName: string;
  /** The first hex digits of the file's sha256, from its name (torch.hub's rule). */
  sha256Prefix: string;
  transforms: EvalTransforms;
  /** Class names by output index. */
  categories: readonly string[];
  numParams: number;
  /** ImageNet-1K validation accuracy in percent, as torchvision reports it. */
  metrics: { 'acc@1': number; 'acc@5': number };
  minSize: readonly number[];
  recipe: string;
}

/** What `weights` may be: an entry name ('IMAGENET1K_V2', 'DEFAULT', 'ResNet50_Weights.IMAGENET1K_V2'), a file path, a URL, { url, sha256 } or an entry. */
export type WeightsSpec = string | Weights | { url: string; sha256?: string };

/** Options for fetching weights. */
export type FetchWeightsOptions = Pick<DownloadOptions, 'progress' | 'log'>;

/** Weights located on disk: the file, the table entry when there is one, and a name for messages. */
export interface ResolvedWeights {
  path: string;
  entry?: Weights;
  label: string;
  /** Class names by output index: the entry's categories, or those a resnet-ts checkpoint recorded. */
  categories?: readonly string[];
  /** A resnet-ts checkpoint's eval preset (image-folder runs) and the net it was trained as. */
  transforms?: { resize: number; crop: number; mean: readonly number[]; std: readonly number[] };
  model?: string;
}

/** A local file's weights: a resnet-ts checkpoint's record of its classes and eval preset, or torchvision's entry by file name. */
function fileWeights(path: string, label: string): ResolvedWeights {
  const info = checkpointInfo(path);
  if (info) return { path, label, categories: info.classes, transforms: info.transforms, model: info.model };
  const entry = weightsForFile(path);
  return { path, entry, label, categories: entry?.categories };
}

/** The published weights of a model (none for models torchvision does not have). */
export function weightsOf(model: string): readonly Weights[] {
  return WEIGHTS_TABLE[model] ?? [];
}

/** The entry of model called name ('DEFAULT' is torchvision's default), or undefined. */
export function findWeights(model: string, name: string): Weights | undefined {
  const all = weightsOf(model);
  if (name === 'DEFAULT') return all.find((w) => w.isDefault);
  return all.find((w) => w.name === name || `${w.enum}.${w.name}` === name);
}

/** The entry whose torchvision file name a path or URL has (resnet50-11ad3fa6.pth), or undefined. */
export function weightsForFile(pathOrUrl: string): Weights | undefined {
  const name = basename(pathOrUrl.split(/[?#]/)[0]!);
  for (const ws of Object.values(WEIGHTS_TABLE)) for (const w of ws) if (w.fileName === name) return w;
  return undefined;
}

const isEntry = (s: WeightsSpec): s is Weights => typeof s === 'object' && s !== null && 'fileName' in s && 'enum' in s;

/** Finds the weights file for spec, downloading it into torch.hub's cache when it is an entry or a URL. */
export async function resolveWeights(model: string, spec: WeightsSpec, o: FetchWeightsOptions = {}): Promise<ResolvedWeights> {
  if (isEntry(spec)) {
    if (spec.model !== model) throw new Error(`${spec.enum}.${spec.name} are weights for ${spec.model}, not ${model}`);
    return { path: await download(spec.url, { ...o, sha256: spec.sha256Prefix }), entry: spec, label: `${spec.enum}.${spec.name}`, categories: spec.categories };
  }
  if (typeof spec === 'object' && spec !== null && typeof spec.url === 'string') {
    const path = await download(spec.url, { ...o, sha256: spec.sha256 });
    const entry = weightsForFile(spec.url);
    return { path, entry, label: spec.url, categories: entry?.categories };
  }
  if (typeof spec !== 'string' || spec === '') throw new TypeError(`${model}: weights must be a name, a file path or { url, sha256 }; got ${String(spec)}`);
  const entry = findWeights(model, spec);
  if (entry) return resolveWeights(model, entry, o);
  if (/^https?:\/\//.test(spec)) return resolveWeights(model, { url: spec }, o);
  if (existsSync(spec)) return fileWeights(spec, spec);
  throw notFound(model, spec);
}

function notFound(model: string, spec: string): Error {
  const names = weightsOf(model).map((w) => w.name);
  return new Error(`${model}: weights '${spec}' are neither a file nor one of its published weights (${names.length ? [...names, 'DEFAULT'].join(', ') : 'it has none'})`);
}

/**
 * resolveWeights without downloading: a file, or an entry or URL whose file is already in torch.hub's cache
 * (otherwise an Error saying where to put it, or to fetch it first with resolveWeights).
 */
export function resolveLocalWeights(model: string, spec: string): ResolvedWeights {
  const entry = findWeights(model, spec);
  const url = entry?.url ?? (/^https?:\/\//.test(spec) ? spec : undefined);
  if (url === undefined) {
    if (existsSync(spec)) return fileWeights(spec, spec);
    throw notFound(model, spec);
  }
  const path = join(checkpointsDir(), entry?.fileName ?? basename(new URL(url).pathname));
  const label = entry ? `${entry.enum}.${entry.name}` : url;
  if (!existsSync(path)) throw new Error(`${model}: weights ${label} are not downloaded yet (expected at ${path}); fetch them first (models.resolveWeights, or train.fetchWeights for a recipe)`);
  const known = entry ?? weightsForFile(url);
  return { path, entry: known, label, categories: known?.categories };
}

/**
 * Reads a state dict (.safetensors by extension, else torch.save's .pth) with torchvision's key fixes and DDP's
 * 'module.' prefix dropped; of a resnet-ts checkpoint, the verified model part.
 */
export function readStateDict(path: string): Record<string, Tensor> {
  const safetensors = path.toLowerCase().endsWith('.safetensors');
  const sd = safetensors ? (checkpointInfo(path) ? checkpointWeights(path).stateDict : loadSafetensors(path)) : loadPth(path);
  const keys = Object.keys(sd);
  const ddp = keys.length > 0 && keys.every((k) => k.startsWith('module.'));
  const out: Record<string, Tensor> = {};
  for (const k of keys) out[ddp ? k.slice(7) : k] = sd[k]!;
  return remapLegacyKeys(out);
}

/** A model's classifier: its last Linear module, with the module's dotted path ('fc' in ResNets). */
export function classifier(model: Module): [path: string, head: Linear] | undefined {
  const found = model.namedModules().filter((e): e is [string, Linear] => e[1] instanceof Linear);
  return found[found.length - 1];
}

function setModule(model: Module, path: string, m: Module): void {
  const dot = path.lastIndexOf('.');
  const parent = dot < 0 ? model : model.namedModules().find(([p]) => p === path.slice(0, dot))![1];
  parent.setChild(path.slice(dot + 1), m);
}

/** Options of applyWeights: the classes the model is built for, and a log line's destination. */
export interface ApplyWeightsOptions extends Pick<FetchWeightsOptions, 'log'> {
  /** The classifier size asked for: weights with another keep everything but the classifier, which stays freshly initialised. */
  numClasses?: number;
  /** Keep the fresh classifier even when the weights' has the same size (the weights are for other classes). */
  freshHead?: boolean;
}

/**
 * Loads weights found on disk into a freshly built model (timm's pretrained loading). With `numClasses` asked for and
 * a classifier of another size in the weights (or `freshHead`), everything but the classifier is loaded and one line
 * says so; without either, the classifier takes the size the weights have. Returns whether the weights' classifier
 * was loaded ('loaded'), left freshly initialised ('fresh'), or there was none to load ('none').
 */
export function applyWeights(model: Module, name: string, resolved: ResolvedWeights, o: ApplyWeightsOptions = {}): 'loaded' | 'fresh' | 'none' {
  let sd: Record<string, Tensor>;
  try {
    sd = readStateDict(resolved.path);
  } catch (e) {
    throw new Error(`cannot read weights ${resolved.label} (${resolved.path}): ${(e as Error).message}`);
  }
  try {
    const head = classifier(model);
    const rows = head ? sd[`${head[0]}.weight`]?.shape[0] : undefined;
    let toLoad = sd;
    let outcome: 'loaded' | 'fresh' | 'none' = head && rows !== undefined ? 'loaded' : 'none';
    if (head && rows !== undefined && (rows !== head[1].outFeatures || o.freshHead)) {
      const [path, lin] = head;
      if (o.numClasses === undefined && !o.freshHead) {
        setModule(model, path, new Linear(lin.inFeatures, rows, { bias: lin.bias !== null }));
      } else {
        // The head keeps its fresh init: its own tensors stand in for the checkpoint's, so strict loading still checks the rest.
        toLoad = { ...sd, ...Object.fromEntries(Object.entries(lin.stateDict()).map(([k, t]) => [`${path}.${k}`, t])) };
        const log = o.log === false ? undefined : (o.log ?? ((line: string) => process.stderr.write(`${line}\n`)));
        const why = rows !== lin.outFeatures ? `${rows} classes in the weights, ${lin.outFeatures} asked for` : 'the weights are for other classes';
        log?.(`${name}: loaded ${resolved.label} except the classifier ${path} (${why}: initialised afresh)`);
        outcome = 'fresh';
      }
    }
    try {
      model.loadStateDict(toLoad);
    } catch (e) {
      throw new Error(`weights ${resolved.label} do not match ${name}: ${(e as Error).message}`);
    }
    return outcome;
  } finally {
    dispose(sd);
  }
}

/** Downloads (when needed) and loads weights into a freshly built model; see applyWeights. */
export async function loadPretrained(model: Module, name: string, spec: WeightsSpec, o: FetchWeightsOptions & { numClasses?: number } = {}): Promise<ResolvedWeights> {
  const resolved = await resolveWeights(name, spec, o);
  applyWeights(model, name, resolved, o);
  return resolved;
}
