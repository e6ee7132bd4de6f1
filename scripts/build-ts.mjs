#!/usr/bin/env node
// `npm run build:ts`: compiles lib/ and scripts/ to dist/ (ESM JavaScript, .d.ts, declaration maps) with
// tsc -p tsconfig.build.json. The sources import each other as './x.ts' (what tsx and Node's type
// stripping run); tsc rewrites those to './x.js' in the JavaScript but keeps them in the .d.ts, so this
// rewrites them there too: a consumer's tsc then resolves every import without allowImportingTsExtensions.
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = join(dirname(createRequire(join(root, 'package.json')).resolve('typescript/package.json')), 'bin', 'tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

// Same length ('.ts' -> '.js'), so the declaration maps stay exact.
const relTs = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.ts(['"])/g;
let files = 0;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.d.ts')) {
      const text = readFileSync(p, 'utf8');
      const out = text.replace(relTs, '$1$2.js$3');
      if (out !== text) writeFileSync(p, out);
      files++;
    }
  }
}
walk(dist);
// The bench's PyTorch and oracle sides are Python scripts it runs beside itself (dist/scripts/ once installed), and
// --emulate-avx2 compiles its cpuid shim from C.
for (const f of ['bench_torch.py', 'bench_onnx_export.py', 'cpuid-mask.c']) copyFileSync(join(root, 'scripts', f), join(dist, 'scripts', f));
console.error(`build:ts: dist/ written (${files} declaration files)`);
