// One HTTP(S) download the way torch.hub.download_url_to_file does it: into a temporary file beside the
// target, sha256 checked against the expected prefix, then renamed into place, so the target path only ever
// holds a complete, verified file. Also: a progress bar on a TTY, an idle timeout, and removal of the
// temporary file when the process is interrupted (or, after a SIGKILL, by the next download of that file).
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SingleBar } from 'cli-progress';

/** An HTTP status other than 2xx (after redirects); `status` says which. */
export class HttpStatusError extends Error {
  constructor(readonly status: number, statusText: string) {
    super(`HTTP ${status}${statusText ? ` ${statusText}` : ''}`);
  }
}

/** Options of downloadToFile. */
export interface FetchOptions {
  /** The sha256 of the file must start with these hex digits (the whole digest checks it fully). */
  hashPrefix?: string;
  /** A progress bar on stderr when it is a TTY. */
  progress?: boolean;
  /** Give up when no bytes arrive for this long (default 60 s). */
  idleTimeoutMs?: number;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const MB = 1024 * 1024;

/** Downloads url to dst through `<dst>.<pid>-<random>.partial`; on any failure nothing is left at either path. */
export async function downloadToFile(url: string, dst: string, o: FetchOptions = {}): Promise<void> {
  removeStalePartials(dirname(dst), basename(dst));
  const tmp = `${dst}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    abort.abort(new Error(`interrupted by ${sig}`));
    rmSync(tmp, { force: true });
    release();
    // With no other handler, the signal's default action (exit) is what the user asked for.
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  const release = (): void => {
    for (const s of SIGNALS) process.off(s, onSignal);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    await fetchInto(url, tmp, abort, o);
    renameSync(tmp, dst);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    release();
  }
}

async function fetchInto(url: string, tmp: string, abort: AbortController, o: FetchOptions): Promise<void> {
  const idle = o.idleTimeoutMs ?? 60_000;
  let timer = setTimeout(() => abort.abort(new Error(`no data for ${idle / 1000} s`)), idle);
  const alive = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(new Error(`no data for ${idle / 1000} s`)), idle);
  };
  let received = 0;
  let total: number | undefined;
  let bar: SingleBar | undefined;
  const file = await open(tmp, 'wx');
  try {
    let res: Response;
    try {
      res = await fetch(url, { signal: abort.signal, headers: { 'User-Agent': 'resnet-ts' } });
    } catch (e) {
      throw new Error(reason(e, abort));
    }
    if (!res.ok || !res.body) throw new HttpStatusError(res.status, res.statusText);
    // A compressed transfer's Content-Length counts compressed bytes; fetch hands over decoded ones.
    const length = res.headers.get('content-length');
    if (length !== null && !res.headers.get('content-encoding')) total = Number(length);
    if (o.progress && process.stderr.isTTY && total) {
      bar = new SingleBar({
        format: ` ${basename(url)} |{bar}| {percentage}% | {mb}/{totalMb} MB | {speed} MB/s | ETA {eta_formatted}`,
        stream: process.stderr, hideCursor: true, barsize: 30,
      });
      bar.start(total, 0, { mb: '0.0', totalMb: (total / MB).toFixed(1), speed: '-' });
    }
    const t0 = performance.now();
    const hash = createHash('sha256');
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        alive();
        hash.update(chunk);
        await file.write(chunk);
        received += chunk.length;
        bar?.update(received, { mb: (received / MB).toFixed(1), speed: (received / MB / ((performance.now() - t0) / 1000)).toFixed(1) });
      }
    } catch (e) {
      throw new Error(`the transfer broke off after ${received}${total ? ` of ${total}` : ''} bytes (${reason(e, abort)})`);
    }
    if (total !== undefined && received !== total) throw new Error(`the server sent ${received} of the ${total} bytes it announced`);
    const digest = hash.digest('hex');
    if (o.hashPrefix && !digest.startsWith(o.hashPrefix)) throw new Error(`invalid hash value (expected "${o.hashPrefix}", got "${digest}")`);
    await file.sync();
  } finally {
    clearTimeout(timer);
    bar?.stop();
    await file.close();
  }
}

// What undici wraps in "fetch failed" / "terminated": the socket or DNS error underneath, or the abort reason.
function reason(e: unknown, abort: AbortController): string {
  if (abort.signal.aborted) return (abort.signal.reason as Error)?.message ?? 'aborted';
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.message ?? cause?.code ?? (e as Error).message;
}

// A SIGKILL mid-download leaves a .partial behind; its pid tells whether a live process still writes it.
function removeStalePartials(dir: string, name: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  const re = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)-[0-9a-f]+\\.partial$`);
  for (const f of entries) {
    const pid = Number(re.exec(f)?.[1]);
    if (pid && !isAlive(pid)) rmSync(join(dir, f), { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
