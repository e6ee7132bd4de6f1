// Where downloaded weights live: PyTorch's own hub cache, so a file either side downloaded serves both.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

const expandHome = (p: string): string => (p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p);

/** torch.hub.get_dir(): $TORCH_HOME/hub, by default $XDG_CACHE_HOME/torch/hub, then ~/.cache/torch/hub. */
export function hubDir(): string {
  const torchHome = process.env.TORCH_HOME || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'torch');
  return resolve(expandHome(torchHome), 'hub');
}

/** Where torch.hub.load_state_dict_from_url keeps weight files: <hubDir>/checkpoints. */
export function checkpointsDir(): string {
  return join(hubDir(), 'checkpoints');
}
