// Weight files: .safetensors (read/write) and torch.save'd .pth (read, no code runs).
export { loadSafetensors, saveSafetensors, readSafetensorsHeader } from './safetensors.ts';
export type { SafetensorsEntry, SafetensorsHeader } from './safetensors.ts';
export { loadPth } from './pth.ts';
export { writeAtomically, writeFileAtomically } from './atomic.ts';
