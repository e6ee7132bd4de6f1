// The fused multi-tensor (_foreach) kernels over lists of Tensors: the op table's foreach rows,
// so `foreach.lerp_(ps, ends, w)` is native.foreachLerp_ with Tensors in and out.
import { OPS, type NativeOps } from '../native.ts';
import { tensorFunction, type TensorFunction } from '../tensor.ts';

type Name = keyof NativeOps & `foreach${string}`;
type Foreach = { [K in Name as K extends `foreach${infer R}` ? Uncapitalize<R> : never]: TensorFunction<NativeOps[K]> };

/** The foreach kernels by short name (mulScalar_, addList, lerp_, sqrt, norm, ...); results are Tensors of the current scope. */
export const foreach = Object.fromEntries(
  Object.keys(OPS)
    .filter((k): k is Name => k.startsWith('foreach'))
    .map((k) => [k.charAt(7).toLowerCase() + k.slice(8), tensorFunction(k)]),
) as Foreach;
