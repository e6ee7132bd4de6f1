// Handing tensors from one JS thread to another without copying: a thread parks at::Tensors under a token
// (a number it can post to a Worker), and the receiving thread adopts them as handles of its own table.
// The adopted handles alias the very same at::Tensor storages (reference-counted, thread-safe), which is
// how an inference session's Workers run the main thread's parameters with no copy of the weights.
#include <mutex>
#include <unordered_map>

#include "tensor.h"

namespace rts {

namespace {

// Process-wide (tokens travel between threads); heap-allocated and never destroyed, so that no tensor is
// freed during static destruction at exit, after libtorch's own globals may be gone.
struct Registry {
  std::mutex mutex;
  std::unordered_map<uint64_t, std::vector<at::Tensor>> parked;
  uint64_t next = 1;
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

// Tokens are JS numbers: below 2^53 they are exact.
uint64_t tokenArg(const Args& a, size_t i) {
  int64_t t = a.integer(i, "token");
  if (t < 1) a.typeError("token", "a token from shareTensors");
  return static_cast<uint64_t>(t);
}

}  // namespace

void registerShare(Napi::Env env, Napi::Object exports) {
  // shareTensors(ts): parks the tensors behind ts (the caller's handles stay its own) and returns a token.
  def(env, exports, "shareTensors", [](Args& a) -> Napi::Value {
    std::vector<at::Tensor> ts = a.tensors(0, "tensors");
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    uint64_t token = r.next++;
    r.parked.emplace(token, std::move(ts));
    return Napi::Number::New(a.env(), static_cast<double>(token));
  });

  // adoptTensors(token): new handles of this thread on the parked tensors, in order; the token is used up.
  def(env, exports, "adoptTensors", [](Args& a) -> Napi::Value {
    uint64_t token = tokenArg(a, 0);
    std::vector<at::Tensor> ts;
    {
      Registry& r = registry();
      std::lock_guard<std::mutex> lock(r.mutex);
      auto it = r.parked.find(token);
      if (it == r.parked.end()) throw Napi::Error::New(a.env(), "adoptTensors: token " + std::to_string(token) + " is unknown or already adopted");
      ts = std::move(it->second);
      r.parked.erase(it);
    }
    return toJS(a.env(), ts);
  });

  // dropShared(token): releases parked tensors nobody adopted; whether the token was still parked.
  def(env, exports, "dropShared", [](Args& a) -> Napi::Value {
    uint64_t token = tokenArg(a, 0);
    std::vector<at::Tensor> gone;  // freed after the lock is released
    bool found = false;
    {
      Registry& r = registry();
      std::lock_guard<std::mutex> lock(r.mutex);
      auto it = r.parked.find(token);
      if (it != r.parked.end()) {
        gone = std::move(it->second);
        r.parked.erase(it);
        found = true;
      }
    }
    return Napi::Boolean::New(a.env(), found);
  });

  // sharedCount(): how many tokens are parked (a leak check for tests).
  def(env, exports, "sharedCount", [](Args& a) -> Napi::Value {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    return Napi::Number::New(a.env(), static_cast<double>(r.parked.size()));
  });
}

}  // namespace rts
