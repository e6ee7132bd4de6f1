// `resnet-ts setup [--cuda]`: gives an installed resnet-ts a libtorch and builds its addon. LIBTORCH when
// set; else, without --cuda, a libtorch already found (a Python torch, an earlier setup's env); else it
// creates the cached torch env with pip (~/.cache/resnet-ts/torch-<version>-<cpu|cuXY>, XDG_CACHE_HOME
// honoured), then builds the addon in the package (or copies an identical earlier build from the cache).
// In a development checkout it runs scripts/setup.sh, and --cuda also builds build-cuda/.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Command } from 'commander';
import { commandName } from './cli.ts';
import { packageRoot } from '../lib/addon.ts';
import { buildTools, type Libtorch } from './build-tools.ts';

interface Options { cuda: boolean; force: boolean; python?: string }

const program = new Command(commandName('setup'))
  .description('Create a cached libtorch with pip (CPU by default) and build the native addon against it.')
  .option('--cuda', 'a CUDA libtorch (torch 2.14.1 for CUDA 13.0, about 4.5 GB) instead of the CPU one (about 1 GB)', false)
  .option('--force', 'use the cached env even when another libtorch is found (LIBTORCH still wins)', false)
  .option('--python <path>', 'the Python that creates the venv (default: $PYTHON or python3)')
  .addHelpText('after', '\nFound in this order: LIBTORCH, a Python torch ($PYTHON, python3), the cached env.\nRun `resnet-ts doctor` to see what was found.')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .showHelpAfterError();
program.parse(process.argv);
const o = program.opts<Options>();
const root = packageRoot();

if (import.meta.url.endsWith('.ts')) {
  const r = spawnSync('bash', [join(root, 'scripts', 'setup.sh'), ...(o.cuda ? ['--cuda'] : [])], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const tools = await buildTools();
const log = (m: string): void => console.error(`[resnet-ts setup] ${m}`);
try {
  let found: Libtorch | null = null;
  if (process.env.LIBTORCH || !(o.cuda || o.force)) {
    try {
      found = tools.findLibtorch();
    } catch (e) {
      if ((e as { code?: string }).code !== 'RESNET_TS_NO_LIBTORCH' || process.env.LIBTORCH) throw e;
    }
  }
  let prefix: string;
  let how: string;
  if (found && (!o.cuda || found.cuda || process.env.LIBTORCH)) {
    [prefix, how] = [found.prefix, found.how];
    log(`using ${tools.describe(found)}`);
  } else {
    const kind = o.cuda ? 'cuda' : 'cpu';
    prefix = tools.ensureTorchEnv(kind, { ...(o.python ? { python: o.python } : {}) });
    how = `resnet-ts cache (${tools.envDir(kind)})`;
    tools.selectEnv(kind);
    log(`torch env ready: ${tools.envDir(kind)}`);
  }
  const built = tools.buildAddon({ libtorch: prefix, how });
  const check = spawnSync(process.execPath, ['-e', `const a = require(${JSON.stringify(built.addon)}); console.log(a.torchVersion(), a.cudaBuilt())`], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`the addon was built but does not load:\n${check.stderr}`);
  const [torch, cuda] = check.stdout.trim().split(' ');
  log(`done: ${built.addon} loads (libtorch ${torch}, CUDA ${cuda === 'true' ? 'built in' : 'not built in'})`);
} catch (e) {
  console.error((e as Error).message);
  process.exit(1);
}
