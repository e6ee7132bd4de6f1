// One error path for every native entry point: c10::Error and std::exception become a JS Error
// carrying libtorch's message without its C++ backtrace; argument problems are TypeErrors.
#pragma once
#include <napi.h>
#include <c10/util/Exception.h>
#include <string>

namespace rts {

// A CUDA out-of-memory as a CudaOutOfMemoryError carrying requested and free bytes (cpp/cuda.cc); any
// other out-of-memory as a plain Error.
Napi::Error outOfMemoryError(Napi::Env env, const char* fn, const c10::OutOfMemoryError& e);

[[noreturn]] inline void throwType(Napi::Env env, const char* fn, const char* arg, const std::string& want) {
  throw Napi::TypeError::New(env, std::string(fn) + ": argument '" + arg + "' must be " + want);
}

// Runs body; any C++ exception from libtorch becomes a JS exception.
template <typename Body>
Napi::Value guard(Napi::Env env, const char* fn, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    throw outOfMemoryError(env, fn, e);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string(fn) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(fn) + ": " + e.what());
  }
}

}  // namespace rts
