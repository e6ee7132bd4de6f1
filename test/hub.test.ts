// hub.download against real HTTP servers on loopback serving a torchvision-made resnet18 file (torch.save of
// torchvision 0.14's random init): Python's http.server, and a Node server for redirects and broken bodies.
// References: torch.hub itself (its cache directory rules, and reading/writing the same cache), the file's
// own sha256, and the server's request log.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hub } from '../lib/index.ts';
import { py, root, tmp, visionPython } from './helpers.ts';
import { nodeServer, pythonFileServer, type FileServer } from './hub-servers.ts';

const dir = tmp('hub-');
const serve = join(dir, 'serve');
mkdirSync(serve);
let bytes: Buffer;
let sha: string;
let good: string; // resnet18-<first 8 hex of its sha256>.pth, torchvision's naming
let files: FileServer;
const quiet = { progress: false, log: false } as const;

/** A fresh torch cache for one test; returns its checkpoints folder. */
function freshCache(): string {
  process.env.TORCH_HOME = tmp('torch-home-');
  delete process.env.RESNET_TS_WEIGHTS_URL;
  return join(process.env.TORCH_HOME, 'hub', 'checkpoints');
}
/** Awaits fn and checks the Error it must throw (uvu has no async throws). */
async function rejects(fn: () => Promise<unknown>, check: RegExp | ((e: Error) => boolean)): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const ok = check instanceof RegExp ? check.test((e as Error).message) : check(e as Error);
    assert.ok(ok, `unexpected error: ${(e as Error).message}`);
    return;
  }
  assert.unreachable('expected a rejection');
}
const listing = (d: string): string[] => (existsSync(d) ? readdirSync(d) : []);

test.before(async () => {
  const src = join(dir, 'resnet18.pth');
  py(`import torch, torchvision, json
torch.manual_seed(0)
torch.save(torchvision.models.resnet18().state_dict(), ${JSON.stringify(src)})
print(json.dumps(1))`, { python: visionPython });
  bytes = readFileSync(src);
  sha = createHash('sha256').update(bytes).digest('hex');
  good = `resnet18-${sha.slice(0, 8)}.pth`;
  copyFileSync(src, join(serve, good));
  copyFileSync(src, join(serve, 'resnet18-00000000.pth'));
  files = await pythonFileServer(serve);
});
test.after(() => files?.close());

test('the cache folder is torch.hub.get_dir()/checkpoints for TORCH_HOME, XDG_CACHE_HOME and HOME', () => {
  const saved = { ...process.env };
  const cases = [{ TORCH_HOME: '/t/home' }, { XDG_CACHE_HOME: '/x/cache' }, { HOME: '/h' }];
  const ref = py<string[]>(`import json, os, torch.hub
out = []
for env in ${JSON.stringify(cases)}:
    for k in ('TORCH_HOME', 'XDG_CACHE_HOME'): os.environ.pop(k, None)
    os.environ.update(env)
    out.append(os.path.join(torch.hub.get_dir(), 'checkpoints'))
print(json.dumps(out))`, { python: visionPython });
  const ours = cases.map((env) => {
    delete process.env.TORCH_HOME;
    delete process.env.XDG_CACHE_HOME;
    Object.assign(process.env, env);
    return hub.checkpointsDir();
  });
  process.env = saved;
  assert.equal(ours, ref);
});

test('a download lands in the cache under its name, byte for byte; the next call makes no request', async () => {
  const cache = freshCache();
  const url = `${files.url}/${good}`;
  const before = files.requests().length;
  const path = await hub.download(url, quiet);
  assert.is(path, join(cache, good));
  assert.ok(readFileSync(path).equals(bytes));
  assert.equal(listing(cache), [good]);
  assert.is(await hub.download(url, quiet), path);
  assert.equal(files.requests().slice(before), [`/${good}`]);
});

test('the cache is shared with torch.hub both ways: torch reuses our file, we reuse torch\'s', async () => {
  const cache = freshCache();
  await hub.download(`${files.url}/${good}`, quiet);
  // Port 1 refuses connections: torch can only succeed from the cache.
  const keys = py<number>(`import json, torch.hub
sd = torch.hub.load_state_dict_from_url('http://127.0.0.1:1/${good}', check_hash=True, progress=False)
print(json.dumps(len(sd)))`, { python: visionPython });
  assert.is(keys, 122);
  const cache2 = freshCache();
  py(`import json, torch.hub
torch.hub.load_state_dict_from_url('${files.url}/${good}', check_hash=True, progress=False)
print(json.dumps(1))`, { python: visionPython });
  const before = files.requests().length;
  assert.is(await hub.download(`${files.url}/${good}`, quiet), join(cache2, good));
  assert.is(files.requests().length, before);
  assert.ok(cache !== cache2);
});

test('a wrong hash (the file name\'s prefix or a given sha256) is an error saying expected and got; nothing stays', async () => {
  const cache = freshCache();
  const url = `${files.url}/resnet18-00000000.pth`;
  await rejects(() => hub.download(url, quiet), (e: Error) =>
    e instanceof hub.DownloadError && e.message.includes(url) && e.message.includes(`invalid hash value (expected "00000000", got "${sha}")`) &&
    e.message.includes(join(cache, 'resnet18-00000000.pth')));
  await rejects(() => hub.download(`${files.url}/${good}`, { ...quiet, sha256: 'ab'.repeat(32) }), /invalid hash value \(expected "abab/);
  assert.equal(listing(cache), []);
  assert.is(await hub.download(`${files.url}/${good}`, { ...quiet, sha256: sha }), join(cache, good));
});

test('404: an error naming the URL and where to put the file; nothing saved', async () => {
  const cache = freshCache();
  const url = `${files.url}/resnet18-12345678.pth`;
  await rejects(() => hub.download(url, quiet), (e: Error) =>
    e.message.includes(`cannot download ${url}: HTTP 404`) && e.message.includes(`put it at ${join(cache, 'resnet18-12345678.pth')}`));
  assert.equal(listing(cache), []);
});

test('a body cut short (announced length, then the connection drops) is an error; a redirect is followed', async () => {
  const cache = freshCache();
  const srv = await nodeServer((req, res) => {
    if (req.url === '/moved.pth') {
      res.writeHead(302, { Location: `${files.url}/${good}` }).end();
      return;
    }
    res.writeHead(200, { 'Content-Length': bytes.length });
    res.write(bytes.subarray(0, bytes.length >> 1), () => res.destroy());
  });
  try {
    await rejects(() => hub.download(`${srv.url}/${good}`, quiet), (e: Error) =>
      /the transfer broke off after \d+ of \d+ bytes|sent \d+ of the \d+ bytes/.test(e.message) && e.message.includes(join(cache, good)));
    assert.equal(listing(cache), []);
    const path = await hub.download(`${srv.url}/moved.pth`, { ...quiet, fileName: good });
    assert.ok(readFileSync(path).equals(bytes));
  } finally {
    await srv.close();
  }
});

test('RESNET_TS_WEIGHTS_URL replaces the origin (origin path, then a flat folder); a registry file from it must still have its hash', async () => {
  const cache = freshCache();
  process.env.RESNET_TS_WEIGHTS_URL = `${files.url}/`;
  const before = files.requests().length;
  const path = await hub.download(`https://download.pytorch.org/models/${good}`, quiet);
  assert.is(path, join(cache, good));
  assert.equal(files.requests().slice(before), [`/models/${good}`, `/${good}`]);
  // Serve our random file under torchvision's real resnet18 name: the mirror is asked, and the hash rule refuses it.
  copyFileSync(join(serve, good), join(serve, 'resnet18-f37072fd.pth'));
  await rejects(() => hub.download('https://download.pytorch.org/models/resnet18-f37072fd.pth', quiet), (e: Error) =>
    e.message.includes(`${files.url}/resnet18-f37072fd.pth`) && e.message.includes('expected "f37072fd"'));
  assert.equal(listing(cache), [good]);
  delete process.env.RESNET_TS_WEIGHTS_URL;
});

test('offline with nothing cached: one error naming the URL and the exact path for the file', async () => {
  const cache = freshCache();
  const closed = await nodeServer(() => undefined);
  await closed.close(); // a port nobody listens on
  process.env.RESNET_TS_WEIGHTS_URL = closed.url;
  await rejects(() => hub.download('https://download.pytorch.org/models/resnet18-f37072fd.pth', quiet), (e: Error) =>
    e.message.startsWith(`cannot download ${closed.url}/models/resnet18-f37072fd.pth: `) && /ECONNREFUSED/.test(e.message) &&
    e.message.includes(join(cache, 'resnet18-f37072fd.pth')));
  delete process.env.RESNET_TS_WEIGHTS_URL;
});

test('SIGINT during a download removes the partial file; the next download clears what a SIGKILL left', async () => {
  const cache = freshCache();
  const srv = await nodeServer((_req, res) => {
    res.writeHead(200, { 'Content-Length': bytes.length });
    res.write(bytes.subarray(0, 1 << 20)); // then nothing: the download waits
  });
  const run = (): ReturnType<typeof spawn> => spawn(process.execPath, ['--import', 'tsx', '-e',
    `import('./lib/hub/index.ts').then((h) => h.download('${srv.url}/${good}', { progress: false, log: false }))`],
  { cwd: root, env: { ...process.env }, stdio: 'ignore' });
  const partialAppears = async (): Promise<void> => {
    while (!listing(cache).some((f) => f.endsWith('.partial') && statSync(join(cache, f)).size > 0)) await new Promise((r) => setTimeout(r, 50));
  };
  try {
    for (const sig of ['SIGINT', 'SIGKILL'] as const) {
      const child = run();
      const exited = new Promise((r) => child.once('exit', r));
      await partialAppears();
      child.kill(sig);
      await exited;
      if (sig === 'SIGINT') assert.equal(listing(cache), []);
    }
    assert.is(listing(cache).length, 1); // the SIGKILLed process's partial
    assert.is(await hub.download(`${files.url}/${good}`, quiet), join(cache, good));
    assert.equal(listing(cache), [good]);
  } finally {
    await srv.close();
  }
});

test.run();
