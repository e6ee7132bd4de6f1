// The Module classes a session's Workers can rebuild, by name and the URL of the file that defines them.
// A Worker has its own copy of every JS module, so a class is found there by importing its file and
// looking it up by the same key; the library's own classes are registered here, at import.
import * as models from '../models/index.ts';
import * as nn from '../nn/index.ts';
import { Module } from '../nn/module.ts';
import { FUSED_MODULES } from './fused.ts';

/** A Module subclass (a Worker rebuilds instances without calling its constructor). */
export type ModuleClass = abstract new (...args: never[]) => Module;

interface Entry { key: string; url: string }
const byClass = new Map<Function, Entry>();
const byKey = new Map<string, ModuleClass>();

/**
 * Makes instances of cls movable into inference sessions: call it in the file that defines cls, with that
 * file's import.meta.url. A session's Worker imports the URL (so keep that file free of other side effects)
 * and rebuilds instances from their fields without running cls's constructor (Module's own runs). Fields may
 * hold numbers, strings, arrays, plain objects, Maps, Sets, typed arrays, Tensors and Modules; not functions,
 * and no #private fields in Module subclasses.
 */
export function registerModuleClass(cls: ModuleClass, url: string): void {
  if (typeof cls !== 'function' || !(cls.prototype instanceof Module)) throw new TypeError('registerModuleClass: expected a subclass of Module');
  if (typeof url !== 'string' || !/^(file|data|https?):/.test(url)) throw new TypeError(`registerModuleClass(${cls.name}): url must be a module URL (import.meta.url); got ${String(url)}`);
  const key = `${url}#${cls.name}`;
  const known = byKey.get(key);
  if (known && known !== cls) throw new Error(`registerModuleClass: two different classes named ${cls.name} are registered from ${url}`);
  byKey.set(key, cls);
  if (!byClass.has(cls)) byClass.set(cls, { key, url });
}

/** The registry entry of an instance's class, or an Error saying how to register it. */
export function classEntry(m: Module, path: string): Entry {
  const cls = Object.getPrototypeOf(m)?.constructor as Function | undefined;
  const e = cls && byClass.get(cls);
  if (!e) {
    const name = cls?.name || 'an anonymous class';
    throw new Error(`inference.session: ${path || 'the model'} is a ${name}, which is not registered for sessions; ` +
      `call registerModuleClass(${cls?.name || 'TheClass'}, import.meta.url) in the file that defines it`);
  }
  return e;
}

/** The class registered under key (after its URL was imported), or an Error. */
export function classByKey(key: string): ModuleClass {
  const cls = byKey.get(key);
  if (!cls) throw new Error(`inference session worker: no Module class registered as ${key} (its file did not call registerModuleClass with its import.meta.url)`);
  return cls;
}

const isModuleClass = (v: unknown): v is ModuleClass => typeof v === 'function' && v.prototype instanceof Module;
for (const ns of [nn, models, FUSED_MODULES] as Record<string, unknown>[]) for (const v of Object.values(ns)) if (isModuleClass(v)) registerModuleClass(v, import.meta.url);
