// The JS handle around one at::Tensor, and the typed argument reader every op uses.
#pragma once
#include <ATen/ATen.h>
#include <napi.h>

#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "errors.h"

namespace rts {

// Tensor handles: a JS BigInt naming one at::Tensor in the calling environment's table, never a
// pointer (cpp/handles.cc): a stale, disposed, forged or another thread's handle is detected, never
// dereferenced.
class TensorHandle {
 public:
  // A new handle owning t, in the calling thread's table.
  static Napi::Value Wrap(Napi::Env env, at::Tensor t);
  // Whether v is a handle made by this addon in this thread (live or disposed).
  static bool Is(Napi::Value v);
  // Whether v is a handle of another thread's table (a Worker's, the main thread's, or one that has exited).
  static bool IsForeign(Napi::Value v);
  // The live tensor behind v, or nullptr; isHandle (if given) tells whether v is a handle at all.
  static at::Tensor* Find(Napi::Value v, bool* isHandle);
  // Frees the tensor behind v now; a second call is a no-op.
  static void Release(Napi::Value v);
};

// Creates the calling environment's handle table, freed with the environment.
void initHandles(Napi::Env env);

struct MemoryStats {
  int64_t tensors;
  int64_t storages;
  int64_t bytes;
};
MemoryStats memoryStats();

// Reads the arguments of one call, naming the function and argument in every TypeError.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}
  Napi::Env env() const { return info_.Env(); }
  size_t size() const { return info_.Length(); }
  const char* fn() const { return fn_; }
  Napi::Value operator[](size_t i) const { return info_[i]; }
  bool has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined() && !info_[i].IsNull(); }

  at::Tensor& tensor(size_t i, const char* name) const;
  std::optional<at::Tensor> optTensor(size_t i, const char* name) const;
  std::vector<at::Tensor> tensors(size_t i, const char* name) const;
  double num(size_t i, const char* name) const;
  double num(size_t i, const char* name, double dflt) const { return has(i) ? num(i, name) : dflt; }
  std::optional<double> optNum(size_t i, const char* name) const;
  int64_t integer(size_t i, const char* name) const;
  int64_t integer(size_t i, const char* name, int64_t dflt) const { return has(i) ? integer(i, name) : dflt; }
  std::optional<int64_t> optInt(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name, bool dflt) const;
  at::Scalar scalar(size_t i, const char* name) const;
  at::Scalar scalar(size_t i, const char* name, at::Scalar dflt) const { return has(i) ? scalar(i, name) : dflt; }
  bool isScalar(size_t i) const;
  std::vector<int64_t> ints(size_t i, const char* name) const;
  // A 2-D geometry argument (kernel, stride, padding, dilation): one integer for both sides, or two.
  std::vector<int64_t> pair(size_t i, const char* name) const;
  std::optional<std::vector<int64_t>> optInts(size_t i, const char* name) const;
  at::ScalarType dtype(size_t i, const char* name) const;
  std::optional<at::ScalarType> optDtype(size_t i, const char* name) const;
  c10::Device device(size_t i, const char* name) const;
  std::string str(size_t i, const char* name) const;
  [[noreturn]] void typeError(const char* name, const std::string& want) const { throwType(env(), fn_, name, want); }

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

// Conversions of op results to JS values.
inline Napi::Value toJS(Napi::Env env, const at::Tensor& t) { return TensorHandle::Wrap(env, t); }
inline Napi::Value toJS(Napi::Env env, at::Tensor&& t) { return TensorHandle::Wrap(env, std::move(t)); }
inline Napi::Value toJS(Napi::Env env, double v) { return Napi::Number::New(env, v); }
inline Napi::Value toJS(Napi::Env env, int64_t v) { return Napi::Number::New(env, static_cast<double>(v)); }
inline Napi::Value toJS(Napi::Env env, int v) { return Napi::Number::New(env, v); }
inline Napi::Value toJS(Napi::Env env, bool v) { return Napi::Boolean::New(env, v); }
inline Napi::Value toJS(Napi::Env env, const std::string& v) { return Napi::String::New(env, v); }
inline Napi::Value toJS(Napi::Env env, Napi::Value v) { return v; }
inline Napi::Value toJS(Napi::Env env, const std::vector<at::Tensor>& ts) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) arr.Set(static_cast<uint32_t>(i), TensorHandle::Wrap(env, ts[i]));
  return arr;
}
inline Napi::Value toJS(Napi::Env env, const std::vector<int64_t>& v) {
  auto arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v[i])));
  return arr;
}
template <typename... T>
Napi::Value toJS(Napi::Env env, const std::tuple<T...>& tup) {
  auto arr = Napi::Array::New(env, sizeof...(T));
  uint32_t i = 0;
  std::apply([&](const auto&... x) { ((arr.Set(i++, toJS(env, x))), ...); }, tup);
  return arr;
}
inline Napi::Value toJS(Napi::Env env, const std::optional<at::Tensor>& t) {
  return t && t->defined() ? toJS(env, *t) : env.Null();
}

// Registers fn(Args&) under name; its result is converted by toJS, its exceptions by guard(). An
// fn returning a tensor by reference is an in-place op returning its self (argument 0): the
// caller gets its own handle back instead of a second one it would have to dispose.
template <typename F>
void def(Napi::Env env, Napi::Object exports, const char* name, F f) {
  auto fp = +f;
  using R = decltype(fp(std::declval<Args&>()));
  static_assert(!std::is_reference_v<R> || std::is_same_v<std::decay_t<R>, at::Tensor>, "only in-place ops return by reference");
  exports.Set(name, Napi::Function::New(
                        env,
                        [fp, name](const Napi::CallbackInfo& info) -> Napi::Value {
                          return guard(info.Env(), name, [&]() -> Napi::Value {
                            Args a(info, name);
                            if constexpr (std::is_void_v<R>) {
                              fp(a);
                              return info.Env().Undefined();
                            } else if constexpr (std::is_reference_v<R>) {
                              const at::Tensor& self = fp(a);
                              if (&self == TensorHandle::Find(info[0], nullptr)) return info[0];
                              return toJS(info.Env(), self);
                            } else {
                              return toJS(info.Env(), fp(a));
                            }
                          });
                        },
                        name));
}

void installAllocatorGuard();
void registerTensor(Napi::Env env, Napi::Object exports);
void registerOps(Napi::Env env, Napi::Object exports);
void registerAutograd(Napi::Env env, Napi::Object exports);
void registerCuda(Napi::Env env, Napi::Object exports);
void registerDistributed(Napi::Env env, Napi::Object exports);
void registerShare(Napi::Env env, Napi::Object exports);
void registerFused(Napi::Env env, Napi::Object exports);
void registerDnnl(Napi::Env env, Napi::Object exports);
void installCpuCache();
void emptyCpuCache();
void registerCpuCache(Napi::Env env, Napi::Object exports);

}  // namespace rts
