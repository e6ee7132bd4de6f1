// Finds and loads the native addon: relative to the installed package whatever the working directory,
// RESNET_TS_ADDON overriding; each way it can be missing is one error naming the command that fixes it.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Thrown when the addon or the libtorch it links is missing: the message names the fix. */
export class SetupError extends Error {
  override name = 'SetupError';
  /** 'RESNET_TS_NOT_SET_UP' */
  readonly code = 'RESNET_TS_NOT_SET_UP';
}

const here = dirname(fileURLToPath(import.meta.url));
// Running from lib/*.ts is a development checkout; the published package runs dist/lib/*.js.
const fromSource = import.meta.url.endsWith('.ts');

/** The folder of the resnet-ts package this module belongs to (holds its package.json). */
export function packageRoot(): string {
  for (let d = here; ; d = dirname(d)) {
    const pkg = join(d, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'resnet-ts') return d;
    if (dirname(d) === d) throw new SetupError(`resnet-ts: cannot find the package folder above ${here}`);
  }
}

/** The addon file to load: $RESNET_TS_ADDON, else build/Release/resnet_ts.node in the package. */
export function addonPath(): string {
  const env = process.env.RESNET_TS_ADDON;
  return env ? resolve(env) : join(packageRoot(), 'build', 'Release', 'resnet_ts.node');
}

/** The command that (re)creates libtorch and the addon, as the user would type it where they are. */
export function setupCommand(): string {
  return fromSource ? 'npm run setup' : 'npx resnet-ts setup';
}

/** Loads the addon with `load` (a require), turning each known failure into one SetupError. */
export function loadAddon<T>(load: (path: string) => unknown): T {
  const path = addonPath();
  if (process.env.RESNET_TS_ADDON && !existsSync(path)) {
    throw new SetupError(`resnet-ts: RESNET_TS_ADDON=${process.env.RESNET_TS_ADDON} does not exist; point it at a built resnet_ts.node or unset it`);
  }
  if (!existsSync(path)) {
    throw new SetupError(
      `resnet-ts: the native addon is not built (${path} is missing), usually because no libtorch was found when ` +
        `resnet-ts was installed.\n  Run: ${setupCommand()}   (creates a cached libtorch with pip and builds the addon; --cuda for CUDA)`,
    );
  }
  try {
    return load(path) as T;
  } catch (e) {
    const msg = (e as Error).message;
    if (/lib(torch|c10)\S*\.so|cannot open shared object/.test(msg)) {
      throw new SetupError(`resnet-ts: ${path} cannot load the libtorch it was built against (${msg.split('\n')[0]}).\n  Run: ${setupCommand()}`);
    }
    throw e;
  }
}
