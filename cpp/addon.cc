// Module init: registers the op table. No model logic lives in cpp/.
#include "tensor.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  rts::installAllocatorGuard();
  rts::installCpuCache();
  rts::registerTensor(env, exports);
  rts::registerOps(env, exports);
  rts::registerAutograd(env, exports);
  rts::registerCuda(env, exports);
  rts::registerDistributed(env, exports);
  rts::registerShare(env, exports);
  rts::registerFused(env, exports);
  rts::registerDnnl(env, exports);
  rts::registerCpuCache(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(resnet_ts, Init)
