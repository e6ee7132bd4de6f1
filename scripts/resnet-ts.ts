#!/usr/bin/env node
// The `resnet-ts` command (package.json bin): `resnet-ts <command> [flags]` runs the script behind the
// npm script of the same name in this process, with the same flags. In a development checkout a command
// that needs the addon first runs scripts/setup.sh, as the npm scripts always did; `--help` never does.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const COMMANDS: Record<string, { script: string; about: string }> = {
  train: { script: 'train', about: 'train a ResNet/ResNeXt (Fashion-MNIST, CIFAR, an image folder); --nproc-per-node for DDP' },
  eval: { script: 'eval-imagenet', about: 'ImageNet top-1/top-5 of a model and weights on a validation folder' },
  predict: { script: 'predict', about: 'top ImageNet classes of images' },
  serve: { script: 'serve', about: 'HTTP classification server with dynamic batching' },
  bench: { script: 'bench', about: 'speed against PyTorch and onnxruntime, as ratios (writes bench.json); --serve: the HTTP server under load' },
  experiment: { script: 'experiment', about: 'the papers\' experiments (degradation, shortcuts, cardinality, preact)' },
  setup: { script: 'setup', about: 'create a cached libtorch with pip and build the addon (--cuda for CUDA)' },
  doctor: { script: 'doctor', about: 'what was found (Node, libtorch, CUDA, addon, dataset) and what is missing' },
};

const here = dirname(fileURLToPath(import.meta.url));
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const scriptPath = (name: string): string => join(here, `${name}${ext}`);

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS)
    .filter(([, c]) => existsSync(scriptPath(c.script)))
    .map(([name, c]) => `  ${name.padEnd(width)}  ${c.about}`);
  return `Usage: resnet-ts <command> [flags]   (resnet-ts <command> --help for its flags)\n\nCommands:\n${lines.join('\n')}\n`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(here, ext === '.ts' ? '..' : '../..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

const [cmd, ...rest] = process.argv.slice(2);
if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
  process.stdout.write(usage());
  process.exit(cmd ? 0 : 2);
}
if (cmd === '--version' || cmd === '-V') {
  console.log(version());
  process.exit(0);
}
// `bench --serve` is the serving benchmark, a script of its own (autocannon against `resnet-ts serve`).
const serveBench = cmd === 'bench' && rest.includes('--serve');
const entry = serveBench ? { script: 'bench-serve', about: '' } : COMMANDS[cmd];
if (!entry || !existsSync(scriptPath(entry.script))) {
  process.stderr.write(`resnet-ts: unknown command '${cmd}'${entry ? ' (not in this version)' : ''}\n\n${usage()}`);
  process.exit(2);
}
const wantsHelp = rest.includes('--help') || rest.includes('-h');
if (ext === '.ts' && !wantsHelp && cmd !== 'setup' && cmd !== 'doctor') {
  const r = spawnSync('bash', [join(here, 'setup.sh')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
// --help prints the script's usage even where the addon is not built yet (lib/native.ts defers its SetupError).
if (wantsHelp) (globalThis as Record<symbol, unknown>)[Symbol.for('resnet-ts.deferSetupError')] = true;
// Its usage line says how it was called ("Usage: resnet-ts eval [options]"; scripts/cli.ts's commandName).
(globalThis as Record<symbol, unknown>)[Symbol.for('resnet-ts.command')] = serveBench ? 'resnet-ts bench --serve' : `resnet-ts ${cmd}`;
// The script sees the argv it would see when run directly (it may re-run process.argv[1] in children).
process.argv = [process.argv[0]!, scriptPath(entry.script), ...(serveBench ? rest.filter((a) => a !== '--serve') : rest)];
try {
  await import(pathToFileURL(scriptPath(entry.script)).href);
} catch (e) {
  // Where libtorch or the addon is missing the first import of the library throws a SetupError that says what to
  // run: its message alone, as the commands print their other errors, not a stack through the module loader.
  if ((e as Error)?.name !== 'SetupError') throw e;
  process.stderr.write(`${(e as Error).message.startsWith('resnet-ts') ? '' : `resnet-ts ${cmd}: `}${(e as Error).message}\n`);
  process.exit(1);
}
