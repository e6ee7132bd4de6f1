// Typed access to the build helpers in scripts/*.mjs (plain JavaScript, because npm runs them at install
// time, before anything is compiled), from the package root in a checkout and in an installed package.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../lib/addon.ts';

/** What scripts/libtorch.mjs finds. */
export interface Libtorch {
  how: string;
  prefix: string;
  version: string;
  abi: number;
  cuda: boolean;
  cudaVersion: string | null;
  cudaHeaders?: { from: string; includeDirs: string[]; libDir: string | null; version: string | null } | { error: string };
  includeDirs: string[];
  libDirs: string[];
  python?: string;
}

/** scripts/libtorch.mjs, scripts/torch-env.mjs and scripts/build-addon.mjs. */
export interface BuildTools {
  findLibtorch(o?: { env?: NodeJS.ProcessEnv }): Libtorch;
  findCudaHeaders(t: Libtorch, o?: { env?: NodeJS.ProcessEnv; prefixes?: string[] | null }): NonNullable<Libtorch['cudaHeaders']>;
  torchInVenv(venv: string): string | null;
  describe(t: Libtorch): string;
  ensureTorchEnv(kind: 'cpu' | 'cuda', o?: { python?: string }): string;
  selectEnv(kind: 'cpu' | 'cuda'): void;
  envDir(kind: 'cpu' | 'cuda'): string;
  cacheRoot(): string;
  managedEnvs(): string[];
  buildAddon(o?: { out?: string; libtorch?: string | null; how?: string | null; cache?: boolean }): { addon: string; key: string; cached: boolean; libtorch: Libtorch };
}

/** Loads the three helper modules. */
export async function buildTools(): Promise<BuildTools> {
  const dir = join(packageRoot(), 'scripts');
  const load = async (f: string): Promise<object> => (await import(pathToFileURL(join(dir, f)).href)) as object;
  return Object.assign({}, await load('libtorch.mjs'), await load('torch-env.mjs'), await load('build-addon.mjs')) as BuildTools;
}
