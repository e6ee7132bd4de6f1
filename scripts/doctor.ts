// `resnet-ts doctor`: what this install found (Node, libtorch, CUDA and where its headers and libraries came
// from, the addon, the cache, the default dataset) and what is missing, with the command that fixes it.
// Exits 1 when the addon cannot be used.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { commandName } from './cli.ts';
import { addonPath, loadAddon, packageRoot, setupCommand } from '../lib/addon.ts';
import { cpuInfo, describeCpu } from '../lib/cpu.ts';
import { FASHION_MNIST_DIR } from '../lib/data/fashion-mnist.ts';
import { buildTools, type Libtorch } from './build-tools.ts';

interface AddonInfo { torchVersion(): string; cudaBuilt(): boolean; cudaIsAvailable(): boolean; cudaDeviceCount(): number; dnnlAvailable?(): boolean; dnnlVersion?(): string }

const program = new Command(commandName('doctor'))
  .description('Print what resnet-ts found (Node, libtorch, CUDA, addon, dataset) and what is missing.')
  .option('--json', 'print JSON', false)
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
program.parse(process.argv);

const tools = await buildTools();
const missing: string[] = [];
const rows: Array<[string, string]> = [];
const report: Record<string, unknown> = {};

rows.push(['node', `${process.version} (ABI ${process.versions.modules}, N-API ${process.versions.napi}) ${process.platform} ${process.arch}`]);
rows.push(['package', packageRoot()]);
const cpu = cpuInfo();
rows.push(['CPU', describeCpu(cpu)]);
report.node = process.version;
report.cpu = cpu;

// The libtorch the addon was built against (build-addon.mjs leaves it beside the addon), else what discovery finds now.
const path = addonPath();
const builtJson = join(dirname(path), 'libtorch.json');
let lib: Libtorch | null = existsSync(builtJson) ? (JSON.parse(readFileSync(builtJson, 'utf8')) as Libtorch) : null;
let now: Libtorch | null = null;
try {
  now = tools.findLibtorch();
} catch (e) {
  if (!lib) missing.push(`libtorch: ${(e as Error).message.split('\n')[0]} -> ${setupCommand()}`);
}
if (lib) {
  rows.push(['libtorch', `${lib.version} (the addon's build, found via ${lib.how})`]);
  if (now && now.prefix !== lib.prefix) rows.push(['  found now', `${tools.describe(now)} (a rebuild would use this)`]);
} else if (now) {
  lib = now;
  rows.push(['libtorch', `${lib.version} from ${lib.how}`]);
} else {
  rows.push(['libtorch', 'NOT FOUND']);
}
if (lib) {
  rows.push(['  path', lib.prefix]);
  rows.push(['  C++ ABI', `_GLIBCXX_USE_CXX11_ABI=${lib.abi}`]);
  report.libtorch = { version: lib.version, how: lib.how, prefix: lib.prefix, abi: lib.abi, cuda: lib.cuda };
}

let addon: AddonInfo | null = null;
try {
  addon = loadAddon<AddonInfo>(createRequire(import.meta.url));
  rows.push(['addon', `${path}${process.env.RESNET_TS_ADDON ? ' (RESNET_TS_ADDON)' : ''}: loads, built against libtorch ${addon.torchVersion()}`]);
  const planned = addon.dnnlAvailable?.() ?? false;
  rows.push(['  planned convs', planned
    ? `yes (system oneDNN ${addon.dnnlVersion!()}: float32 and bf16, winograd 3x3 on AVX-512 (${cpu.avx512 ? 'this CPU has it' : 'not on this CPU'})${
      process.env.RESNET_TS_DNNL === '0' ? '; off: RESNET_TS_DNNL=0' : ''}${process.env.RESNET_TS_DNNL_BF16 === '0' ? '; bf16 off: RESNET_TS_DNNL_BF16=0' : ''}${
      process.env.RESNET_TS_WINOGRAD === '0' ? '; winograd off: RESNET_TS_WINOGRAD=0' : ''})`
    : 'no (float32 inference builds a oneDNN descriptor per call: sudo apt-get install libdnnl-dev, then rebuild)']);
  report.plannedConvolutions = planned;
  if (planned) {
    // The kernels oneDNN picks here (and whether bf16 is planned on it: on an AMX CPU only onto an AMX kernel).
    try {
      const { describeKernels, probeKernels } = await import('../lib/inference/onednn.ts');
      const k = probeKernels();
      if (k) {
        rows.push(['  kernels', describeKernels(k)]);
        report.kernels = k;
      }
    } catch (e) {
      rows.push(['  kernels', `could not be probed: ${(e as Error).message.split('\n')[0]}`]);
    }
  }
  if (lib && addon.torchVersion() !== lib.version.split('+')[0]) {
    missing.push(`the addon was built against libtorch ${addon.torchVersion()} but ${lib.version} is found now -> ${setupCommand()}`);
  }
} catch (e) {
  rows.push(['addon', `${path}: ${existsSync(path) ? 'DOES NOT LOAD' : 'NOT BUILT'}`]);
  missing.push(`addon: ${(e as Error).message.split('\n')[0]}`);
}
report.addon = { path, loads: addon !== null };

const built = addon ? addon.cudaBuilt() : lib?.cuda ?? false;
const available = addon ? addon.cudaIsAvailable() : false;
const devices = addon && available ? addon.cudaDeviceCount() : 0;
rows.push(['CUDA built', built ? `yes${lib?.cudaVersion ? ` (CUDA ${lib.cudaVersion})` : ''}` : 'no']);
rows.push(['CUDA available', available ? `yes (${devices} device${devices === 1 ? '' : 's'})` : 'no']);
report.cuda = { built, available, devices, version: lib?.cudaVersion ?? null };
const headers = lib?.cudaHeaders;
if (headers && 'error' in headers) {
  rows.push(['  headers', 'NOT FOUND']);
  missing.push(headers.error.split('\n').join(' '));
} else if (headers) {
  rows.push(['  headers', `CUDA ${headers.version ?? '?'} from ${headers.from}: ${headers.includeDirs.join(' ')}`]);
  rows.push(['  libraries', `${lib!.libDirs.join(' ')}${headers.libDir ? ` and ${headers.libDir}` : ''}`]);
  (report.cuda as Record<string, unknown>).headers = headers;
}
if (built && !available) rows.push(['  note', 'a CUDA build without a usable GPU runs on the CPU; cuda devices raise a catchable error']);

const envs = tools.managedEnvs();
rows.push(['cache', `${tools.cacheRoot()}${envs.length ? ` (torch envs: ${envs.map((e) => e.split('/').pop()).join(', ')})` : ' (no torch envs)'}`]);
const fmnist = existsSync(`${FASHION_MNIST_DIR}/train-images-idx3-ubyte.gz`);
rows.push(['dataset', `fashion-mnist: ${FASHION_MNIST_DIR} ${fmnist ? '(found)' : '(missing: sudo apt-get install dataset-fashion-mnist, or --data-dir)'}`]);
report.dataset = { fashionMnist: fmnist ? FASHION_MNIST_DIR : null };
report.missing = missing;

if (program.opts<{ json: boolean }>().json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  console.log(missing.length ? `\nmissing:\n${missing.map((m) => `  - ${m}`).join('\n')}` : '\nnothing missing');
}
process.exit(addon ? 0 : 1);
