// The CPU allocator guard honours the process's cgroup memory limit (issue 15, item 4): inside a
// container whose limit is below the machine's RAM, a request above the limit is a JS Error, not an
// OOM kill. Reference: a cgroup this test creates with a 768 MiB limit (the kernel's own accounting),
// found through /proc/self/cgroup and /proc/self/mountinfo as the kernel documents them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './helpers.ts';

const LIMIT = 768 * 2 ** 20;

// Where to make the test's cgroup: under this process's own cgroup for v1; for v2 under the root of
// the hierarchy, the one cgroup that may hold processes and still give its children the memory
// controller. Null when there is no memory cgroup.
function parentCgroup(): { dir: string; v2: boolean } | null {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => {
    const [pre, post = ''] = l.split(' - ');
    const f = pre!.split(' ');
    const [fstype, , superOpts = ''] = post.split(' ');
    return { root: f[3]!, point: f[4]!, fstype, superOpts };
  });
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const [id, controllers, path] = [line.split(':')[0], line.split(':')[1]!, line.split(':').slice(2).join(':')];
    const v2 = id === '0' && controllers === '';
    if (!v2 && !controllers.split(',').includes('memory')) continue;
    const m = mounts.find((x) => (v2 ? x.fstype === 'cgroup2' : x.fstype === 'cgroup' && x.superOpts.split(',').includes('memory')));
    if (!m) continue;
    if (v2) return { dir: m.point, v2 };
    const rel = m.root !== '/' && path.startsWith(m.root) ? path.slice(m.root.length) : path;
    return { dir: join(m.point, rel), v2 };
  }
  return null;
}

test('inside a cgroup with a 768 MiB memory limit, a 1 GiB tensor is refused with an Error, a 256 MiB one is made', () => {
  const parent = parentCgroup();
  const sub = parent && join(parent.dir, `resnet-ts-test-${process.pid}`);
  try {
    if (!parent || !sub) throw new Error('no memory cgroup');
    if (parent.v2 && !readFileSync(join(parent.dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('memory'))
      writeFileSync(join(parent.dir, 'cgroup.subtree_control'), '+memory');
    mkdirSync(sub);
    if (parent.v2) {
      writeFileSync(join(sub, 'memory.max'), String(LIMIT));
      if (existsSync(join(sub, 'memory.swap.max'))) writeFileSync(join(sub, 'memory.swap.max'), '0');
    } else {
      writeFileSync(join(sub, 'memory.limit_in_bytes'), String(LIMIT));
    }
  } catch (e) {
    if (sub && existsSync(sub)) rmdirSync(sub);
    // Creating a cgroup needs root and a writable cgroupfs (true on this project's machines, not everywhere).
    console.log(`  memory-cgroup: NOT CHECKED here: cannot create a cgroup (${(e as Error).message})`);
    return;
  }
  try {
    // The shell moves itself into the cgroup, then becomes node, so the addon loads inside it.
    const script = `
      import { zeros } from ${JSON.stringify(join(root, 'lib', 'index.ts'))};
      const small = zeros([64 * 2 ** 20]); console.log("MADE " + small.numel * 4); small.dispose();
      try { zeros([256 * 2 ** 20]); console.log('MADE 1 GiB'); } catch (e) { console.log('ERROR', e.message); }`;
    const r = spawnSync('sh', ['-c', `echo $$ > "$0/cgroup.procs" && exec "$1" --import tsx -e "$2"`, sub!, process.execPath, script],
      { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.is(r.signal, null, `child killed by ${r.signal} (OOM?): ${r.stderr.slice(-500)}`);
    assert.match(r.stdout, /^MADE 268435456$/m, r.stdout + r.stderr.slice(-1000));
    assert.match(r.stdout, /^ERROR .*refusing to allocate 1073741824 bytes: more than this process may use \(\d+ bytes: the memory limit of cgroup \S*resnet-ts-test-/m);
  } finally {
    rmdirSync(sub!);
  }
});

test.run();
