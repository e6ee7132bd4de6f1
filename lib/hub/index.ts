// hub: weight files by URL, cached where torch.hub caches them, with its hash rule; a mirror for air-gapped sites.
import { existsSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { checkpointsDir } from './cache.ts';
import { HttpStatusError, downloadToFile } from './download.ts';

export { hubDir, checkpointsDir } from './cache.ts';

/** A download that did not end with a verified file in the cache; names the URL(s) tried and the cache path. */
export class DownloadError extends Error {
  constructor(message: string, readonly url: string, readonly path: string) {
    super(message);
  }
}

/** Options of download(). */
export interface DownloadOptions {
  /** The name in the cache; default the URL's file name (as torch.hub). */
  fileName?: string;
  /** Expected sha256 (hex; a prefix of the digest is enough). Default: the prefix in the file name. */
  sha256?: string;
  /** Check the file name's hash prefix when no sha256 is given (default true). */
  checkHash?: boolean;
  /** A progress bar on stderr when it is a TTY (default true). */
  progress?: boolean;
  /** Where the "Downloading ..." line goes (default stderr); false for none. */
  log?: ((line: string) => void) | false;
}

/**
 * torch.hub's HASH_REGEX (`-([a-f0-9]*)\.`) on a file name, as torchvision names its files
 * (resnet50-11ad3fa6.pth); fewer than 8 digits is taken for part of an ordinary name (model-2.pth).
 */
export function hashPrefixOf(fileName: string): string | undefined {
  const m = /-([a-f0-9]*)\./.exec(fileName);
  return m && m[1]!.length >= 8 ? m[1] : undefined;
}

/**
 * The URLs to try for url: itself, or with RESNET_TS_WEIGHTS_URL=<base> set, the base in place of the
 * origin (<base>/models/x.pth) and then the base with the bare file name (<base>/x.pth, a flat folder).
 */
export function mirrorUrls(url: string): string[] {
  const base = process.env.RESNET_TS_WEIGHTS_URL;
  if (!base) return [url];
  if (!/^https?:\/\/[^/]/.test(base)) throw new Error(`RESNET_TS_WEIGHTS_URL must be an http(s) URL; got '${base}'`);
  const b = base.replace(/\/+$/, '');
  const path = new URL(url).pathname;
  return [...new Set([`${b}${path}`, `${b}/${basename(path)}`])];
}

/**
 * The local path of the file at url, downloading it into `$TORCH_HOME/hub/checkpoints` when it is not
 * there yet (torch.hub.load_state_dict_from_url's cache: a file there is used as it is, as torch does).
 */
export async function download(url: string, o: DownloadOptions = {}): Promise<string> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`not a URL: '${url}'`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError(`only http(s) URLs can be downloaded; got '${url}'`);
  const fileName = o.fileName ?? basename(parsed.pathname);
  if (!fileName || fileName.includes('/')) throw new TypeError(`no file name in '${url}'`);
  const dir = checkpointsDir();
  const dst = join(dir, fileName);
  if (existsSync(dst)) return dst;
  if (o.sha256 !== undefined && !/^[0-9a-f]{1,64}$/i.test(o.sha256)) throw new TypeError(`sha256 must be hex digits; got '${o.sha256}'`);
  const hashPrefix = o.sha256?.toLowerCase() ?? (o.checkHash === false ? undefined : hashPrefixOf(fileName));
  const log = o.log === false ? undefined : (o.log ?? ((line: string) => process.stderr.write(`${line}\n`)));
  const urls = mirrorUrls(url);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; ; i++) {
    const u = urls[i]!;
    try {
      log?.(`Downloading: "${u}" to ${dst}`);
      await downloadToFile(u, dst, { hashPrefix, progress: o.progress ?? true });
      return dst;
    } catch (e) {
      if (e instanceof HttpStatusError && e.status === 404 && i + 1 < urls.length) continue;
      const tried = urls.slice(0, i + 1).join(' and ');
      throw new DownloadError(`cannot download ${tried}: ${(e as Error).message}. Nothing was saved; to use the file without a download, put it at ${dst}`, url, dst);
    }
  }
}
