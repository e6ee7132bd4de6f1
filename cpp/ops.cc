// One small wrapper per libtorch op, no logic beyond argument reading. Each is a row of the op
// table in lib/native.ts, which names its arguments in the order read here (test/native.test.ts
// checks it); in-place ops return their self by reference, so def() hands back the caller's handle.
#include <ATen/ATen.h>

#include "tensor.h"

namespace rts {

namespace {

at::TensorOptions opts(const Args& a, size_t dtypeAt, size_t deviceAt, at::ScalarType dflt = at::kFloat) {
  return at::TensorOptions().dtype(a.optDtype(dtypeAt, "dtype").value_or(dflt)).device(a.device(deviceAt, "device"));
}

// Binary ops accept a Tensor or a number as their second operand; R is at::Tensor& for in-place ones.
#define BINARY_AS(R, name, expr_t, expr_s)                               \
  def(env, exports, name, [](Args& a) -> R {                            \
    at::Tensor& x = a.tensor(0, "self");                                \
    if (a.isScalar(1)) {                                                \
      at::Scalar s = a.scalar(1, "other");                              \
      return expr_s;                                                    \
    }                                                                   \
    at::Tensor& y = a.tensor(1, "other");                               \
    return expr_t;                                                      \
  })
#define BINARY(name, expr_t, expr_s) BINARY_AS(at::Tensor, name, expr_t, expr_s)
#define BINARY_(name, expr_t, expr_s) BINARY_AS(at::Tensor&, name, expr_t, expr_s)

#define UNARY(name, expr) def(env, exports, name, [](Args& a) -> at::Tensor { at::Tensor& x = a.tensor(0, "self"); return expr; })

c10::optional<at::ScalarType> optDtypeOf(const Args& a, size_t i) {
  auto d = a.optDtype(i, "dtype");
  return d ? c10::optional<at::ScalarType>(*d) : c10::nullopt;
}

at::OptionalIntArrayRef dimsOrAll(const std::optional<std::vector<int64_t>>& dims) {
  return dims ? at::OptionalIntArrayRef(*dims) : at::OptionalIntArrayRef();
}

int64_t reductionOf(const Args& a, size_t i) {
  if (!a.has(i)) return at::Reduction::Mean;
  std::string r = a.str(i, "reduction");
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  a.typeError("reduction", "'mean', 'sum' or 'none'");
}

}  // namespace


// The fused optimizer kernels' precondition: every list as long as the parameters' (an empty one allowed: no
// momentum), each tensor dense and laid out as its parameter (same sizes, strides, dtype and device).
// Strides of size-1 dimensions are never used to reach an element, so they may differ (a channels-last 1x1 weight).
static bool sameLayout(const at::Tensor& a, const at::Tensor& b) {
  if (!a.sizes().equals(b.sizes())) return false;
  for (int64_t d = 0; d < a.dim(); d++) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

static void checkFusedLayout(const std::vector<at::Tensor>& self, std::initializer_list<const std::vector<at::Tensor>*> others) {
  for (const auto* list : others) {
    TORCH_CHECK(list->empty() || list->size() == self.size(), list->size(), " state tensors for ", self.size(), " parameters");
    for (size_t i = 0; i < list->size(); i++) {
      const at::Tensor& p = self[i];
      const at::Tensor& t = (*list)[i];
      TORCH_CHECK(p.is_non_overlapping_and_dense() && sameLayout(p, t) && t.scalar_type() == p.scalar_type() && t.device() == p.device(),
                  "tensor ", i, " is not laid out as its parameter (sizes ", t.sizes(), " strides ", t.strides(), " ", t.scalar_type(),
                  " against ", p.sizes(), " ", p.strides(), " ", p.scalar_type(), ")");
    }
  }
}

void registerOps(Napi::Env env, Napi::Object exports) {
  // ---- creation ----
  def(env, exports, "zeros", [](Args& a) { return at::zeros(a.ints(0, "shape"), opts(a, 1, 2)); });
  def(env, exports, "ones", [](Args& a) { return at::ones(a.ints(0, "shape"), opts(a, 1, 2)); });
  def(env, exports, "empty", [](Args& a) { return at::empty(a.ints(0, "shape"), opts(a, 1, 2)); });
  def(env, exports, "full", [](Args& a) { return at::full(a.ints(0, "shape"), a.scalar(1, "value"), opts(a, 2, 3)); });
  def(env, exports, "arange", [](Args& a) {
    return at::arange(a.scalar(0, "start"), a.scalar(1, "end"), a.scalar(2, "step"), opts(a, 3, 4, at::kLong));
  });
  def(env, exports, "linspace", [](Args& a) {
    return at::linspace(a.scalar(0, "start"), a.scalar(1, "end"), a.integer(2, "steps"), opts(a, 3, 4));
  });
  def(env, exports, "rand", [](Args& a) { return at::rand(a.ints(0, "shape"), opts(a, 1, 2)); });
  def(env, exports, "randn", [](Args& a) { return at::randn(a.ints(0, "shape"), opts(a, 1, 2)); });
  def(env, exports, "randint", [](Args& a) {
    return at::randint(a.integer(0, "low"), a.integer(1, "high"), a.ints(2, "shape"), opts(a, 3, 4, at::kLong));
  });
  def(env, exports, "randperm", [](Args& a) { return at::randperm(a.integer(0, "n"), opts(a, 1, 2, at::kLong)); });
  def(env, exports, "zerosLike", [](Args& a) { return at::zeros_like(a.tensor(0, "self")); });
  def(env, exports, "onesLike", [](Args& a) { return at::ones_like(a.tensor(0, "self")); });
  def(env, exports, "emptyLike", [](Args& a) { return at::empty_like(a.tensor(0, "self")); });
  def(env, exports, "clone", [](Args& a) { return a.tensor(0, "self").clone(at::MemoryFormat::Preserve); });

  // ---- in-place fills (initialisers) ----
  def(env, exports, "fill_", [](Args& a) -> at::Tensor& { return a.tensor(0, "self").fill_(a.scalar(1, "value")); });
  def(env, exports, "zero_", [](Args& a) -> at::Tensor& { return a.tensor(0, "self").zero_(); });
  def(env, exports, "normal_", [](Args& a) -> at::Tensor& {
    return a.tensor(0, "self").normal_(a.num(1, "mean", 0), a.num(2, "std", 1));
  });
  def(env, exports, "uniform_", [](Args& a) -> at::Tensor& {
    return a.tensor(0, "self").uniform_(a.num(1, "from", 0), a.num(2, "to", 1));
  });
  def(env, exports, "bernoulli_", [](Args& a) -> at::Tensor& { return a.tensor(0, "self").bernoulli_(a.num(1, "p")); });
  def(env, exports, "copy_", [](Args& a) -> at::Tensor& {
    return a.tensor(0, "self").copy_(a.tensor(1, "src"), a.boolean(2, "nonBlocking", false));
  });

  // ---- views and layout ----
  def(env, exports, "view", [](Args& a) { return a.tensor(0, "self").view(a.ints(1, "shape")); });
  def(env, exports, "reshape", [](Args& a) { return a.tensor(0, "self").reshape(a.ints(1, "shape")); });
  def(env, exports, "permute", [](Args& a) { return a.tensor(0, "self").permute(a.ints(1, "dims")); });
  def(env, exports, "transpose", [](Args& a) {
    return a.tensor(0, "self").transpose(a.integer(1, "dim0"), a.integer(2, "dim1"));
  });
  def(env, exports, "flatten", [](Args& a) {
    return a.tensor(0, "self").flatten(a.integer(1, "startDim", 0), a.integer(2, "endDim", -1));
  });
  def(env, exports, "squeeze", [](Args& a) {
    auto d = a.optInt(1, "dim");
    return d ? a.tensor(0, "self").squeeze(*d) : a.tensor(0, "self").squeeze();
  });
  def(env, exports, "unsqueeze", [](Args& a) { return a.tensor(0, "self").unsqueeze(a.integer(1, "dim")); });
  def(env, exports, "narrow", [](Args& a) {
    return a.tensor(0, "self").narrow(a.integer(1, "dim"), a.integer(2, "start"), a.integer(3, "length"));
  });
  def(env, exports, "slice", [](Args& a) {
    return a.tensor(0, "self").slice(a.integer(1, "dim"), a.optInt(2, "start"), a.optInt(3, "end"), a.integer(4, "step", 1));
  });
  def(env, exports, "select", [](Args& a) { return a.tensor(0, "self").select(a.integer(1, "dim"), a.integer(2, "index")); });
  def(env, exports, "indexSelect", [](Args& a) {
    return a.tensor(0, "self").index_select(a.integer(1, "dim"), a.tensor(2, "index"));
  });
  def(env, exports, "gather", [](Args& a) { return a.tensor(0, "self").gather(a.integer(1, "dim"), a.tensor(2, "index")); });
  def(env, exports, "cat", [](Args& a) { return at::cat(a.tensors(0, "tensors"), a.integer(1, "dim", 0)); });
  def(env, exports, "stack", [](Args& a) { return at::stack(a.tensors(0, "tensors"), a.integer(1, "dim", 0)); });
  def(env, exports, "expand", [](Args& a) { return a.tensor(0, "self").expand(a.ints(1, "shape")); });
  def(env, exports, "contiguous", [](Args& a) {
    bool cl = a.boolean(1, "channelsLast", false);
    return a.tensor(0, "self").contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  });
  // to(self, device | null, dtype | null, nonBlocking, copy)
  def(env, exports, "to", [](Args& a) {
    at::Tensor& x = a.tensor(0, "self");
    c10::Device dev = a.has(1) ? a.device(1, "device") : x.device();
    at::ScalarType dt = a.optDtype(2, "dtype").value_or(x.scalar_type());
    return x.to(dev, dt, a.boolean(3, "nonBlocking", false), a.boolean(4, "copy", false));
  });
  def(env, exports, "pinMemory", [](Args& a) { return a.tensor(0, "self").pin_memory(); });
  def(env, exports, "detach", [](Args& a) { return a.tensor(0, "self").detach(); });

  // ---- elementwise math ----
  BINARY("add", x.add(y, a.scalar(2, "alpha", 1)), x.add(s, a.scalar(2, "alpha", 1)));
  BINARY("sub", x.sub(y, a.scalar(2, "alpha", 1)), x.sub(s, a.scalar(2, "alpha", 1)));
  BINARY("mul", x.mul(y), x.mul(s));
  BINARY("div", x.div(y), x.div(s));
  BINARY_("add_", x.add_(y, a.scalar(2, "alpha", 1)), x.add_(s, a.scalar(2, "alpha", 1)));
  BINARY_("sub_", x.sub_(y, a.scalar(2, "alpha", 1)), x.sub_(s, a.scalar(2, "alpha", 1)));
  BINARY_("mul_", x.mul_(y), x.mul_(s));
  BINARY_("div_", x.div_(y), x.div_(s));
  BINARY("pow", x.pow(y), x.pow(s));
  BINARY("eq", x.eq(y), x.eq(s));
  BINARY("ne", x.ne(y), x.ne(s));
  BINARY("gt", x.gt(y), x.gt(s));
  BINARY("lt", x.lt(y), x.lt(s));
  BINARY("ge", x.ge(y), x.ge(s));
  BINARY("le", x.le(y), x.le(s));
  BINARY("maximum", x.maximum(y), x.clamp_min(s));
  BINARY("minimum", x.minimum(y), x.clamp_max(s));
  UNARY("neg", x.neg());
  UNARY("abs", x.abs());
  UNARY("exp", x.exp());
  UNARY("log", x.log());
  UNARY("sqrt", x.sqrt());
  UNARY("rsqrt", x.rsqrt());
  UNARY("relu", x.relu());
  def(env, exports, "relu_", [](Args& a) -> at::Tensor& { return a.tensor(0, "self").relu_(); });
  UNARY("sigmoid", x.sigmoid());
  UNARY("tanh", x.tanh());
  UNARY("sign", x.sign());
  UNARY("floor", x.floor());
  UNARY("round", x.round());
  UNARY("isfinite", x.isfinite());
  UNARY("logicalNot", x.logical_not());
  def(env, exports, "clamp", [](Args& a) {
    auto lo = a.has(1) ? c10::optional<at::Scalar>(a.scalar(1, "min")) : c10::nullopt;
    auto hi = a.has(2) ? c10::optional<at::Scalar>(a.scalar(2, "max")) : c10::nullopt;
    return a.tensor(0, "self").clamp(lo, hi);
  });
  def(env, exports, "where", [](Args& a) {
    return at::where(a.tensor(0, "condition"), a.tensor(1, "self"), a.tensor(2, "other"));
  });
  def(env, exports, "maskedFill", [](Args& a) {
    return a.tensor(0, "self").masked_fill(a.tensor(1, "mask"), a.scalar(2, "value"));
  });
  def(env, exports, "addcmul_", [](Args& a) -> at::Tensor& {
    return a.tensor(0, "self").addcmul_(a.tensor(1, "tensor1"), a.tensor(2, "tensor2"), a.scalar(3, "value"));
  });
  def(env, exports, "lerp_", [](Args& a) -> at::Tensor& { return a.tensor(0, "self").lerp_(a.tensor(1, "end"), a.scalar(2, "weight")); });

  // ---- reductions; dims may be omitted for a full reduction ----
  def(env, exports, "sum", [](Args& a) {
    return at::sum(a.tensor(0, "self"), dimsOrAll(a.optInts(1, "dim")), a.boolean(2, "keepdim", false), optDtypeOf(a, 3));
  });
  def(env, exports, "mean", [](Args& a) {
    return at::mean(a.tensor(0, "self"), dimsOrAll(a.optInts(1, "dim")), a.boolean(2, "keepdim", false), optDtypeOf(a, 3));
  });
  def(env, exports, "var", [](Args& a) {
    return at::var(a.tensor(0, "self"), dimsOrAll(a.optInts(1, "dim")), at::Scalar(a.num(2, "correction", 1)), a.boolean(3, "keepdim", false));
  });
  def(env, exports, "std", [](Args& a) {
    return at::std(a.tensor(0, "self"), dimsOrAll(a.optInts(1, "dim")), at::Scalar(a.num(2, "correction", 1)), a.boolean(3, "keepdim", false));
  });
  def(env, exports, "amax", [](Args& a) {
    auto d = a.optInts(1, "dim");
    return at::amax(a.tensor(0, "self"), d ? at::IntArrayRef(*d) : at::IntArrayRef(), a.boolean(2, "keepdim", false));
  });
  def(env, exports, "amin", [](Args& a) {
    auto d = a.optInts(1, "dim");
    return at::amin(a.tensor(0, "self"), d ? at::IntArrayRef(*d) : at::IntArrayRef(), a.boolean(2, "keepdim", false));
  });
  def(env, exports, "maxDim", [](Args& a) {
    return at::max(a.tensor(0, "self"), a.integer(1, "dim"), a.boolean(2, "keepdim", false));
  });
  def(env, exports, "minDim", [](Args& a) {
    return at::min(a.tensor(0, "self"), a.integer(1, "dim"), a.boolean(2, "keepdim", false));
  });
  def(env, exports, "argmax", [](Args& a) {
    return at::argmax(a.tensor(0, "self"), a.optInt(1, "dim"), a.boolean(2, "keepdim", false));
  });
  def(env, exports, "argmin", [](Args& a) {
    return at::argmin(a.tensor(0, "self"), a.optInt(1, "dim"), a.boolean(2, "keepdim", false));
  });
  def(env, exports, "topk", [](Args& a) {
    return at::topk(a.tensor(0, "self"), a.integer(1, "k"), a.integer(2, "dim", -1), a.boolean(3, "largest", true),
                    a.boolean(4, "sorted", true));
  });
  def(env, exports, "sort", [](Args& a) {
    return at::sort(a.tensor(0, "self"), a.integer(1, "dim", -1), a.boolean(2, "descending", false));
  });
  def(env, exports, "norm", [](Args& a) { return at::norm(a.tensor(0, "self"), a.scalar(1, "p", 2)); });
  def(env, exports, "matmul", [](Args& a) { return at::matmul(a.tensor(0, "self"), a.tensor(1, "other")); });
  def(env, exports, "allclose", [](Args& a) {
    return at::allclose(a.tensor(0, "self"), a.tensor(1, "other"), a.num(2, "rtol", 1e-5), a.num(3, "atol", 1e-8));
  });
  def(env, exports, "equal", [](Args& a) { return at::equal(a.tensor(0, "self"), a.tensor(1, "other")); });

  // ---- neural-network functions (torch.nn.functional) ----
  def(env, exports, "conv2d", [](Args& a) {
    return at::conv2d(a.tensor(0, "input"), a.tensor(1, "weight"), a.optTensor(2, "bias"), a.ints(3, "stride"),
                      a.ints(4, "padding"), a.ints(5, "dilation"), a.integer(6, "groups"));
  });
  // batchNorm(input, weight?, bias?, runningMean?, runningVar?, training, momentum, eps): at::batch_norm's order;
  // in training it updates the running statistics in place.
  def(env, exports, "batchNorm", [](Args& a) {
    return at::batch_norm(a.tensor(0, "input"), a.optTensor(1, "weight"), a.optTensor(2, "bias"), a.optTensor(3, "runningMean"),
                          a.optTensor(4, "runningVar"), a.boolean(5, "training", false), a.num(6, "momentum"), a.num(7, "eps"),
                          at::globalContext().userEnabledCuDNN());
  });
  def(env, exports, "maxPool2d", [](Args& a) {
    return at::max_pool2d(a.tensor(0, "input"), a.ints(1, "kernelSize"), a.ints(2, "stride"), a.ints(3, "padding"),
                          a.ints(4, "dilation"), a.boolean(5, "ceilMode", false));
  });
  def(env, exports, "avgPool2d", [](Args& a) {
    return at::avg_pool2d(a.tensor(0, "input"), a.ints(1, "kernelSize"), a.ints(2, "stride"), a.ints(3, "padding"),
                          a.boolean(4, "ceilMode", false), a.boolean(5, "countIncludePad", true));
  });
  def(env, exports, "adaptiveAvgPool2d", [](Args& a) {
    return at::adaptive_avg_pool2d(a.tensor(0, "input"), a.ints(1, "outputSize"));
  });
  def(env, exports, "linear", [](Args& a) {
    return at::linear(a.tensor(0, "input"), a.tensor(1, "weight"), a.optTensor(2, "bias"));
  });
  def(env, exports, "dropout", [](Args& a) {
    return at::dropout(a.tensor(0, "input"), a.num(1, "p"), a.boolean(2, "training", true));
  });
  def(env, exports, "constantPadNd", [](Args& a) {
    return at::constant_pad_nd(a.tensor(0, "input"), a.ints(1, "pad"), a.scalar(2, "value"));
  });
  def(env, exports, "softmax", [](Args& a) { return at::softmax(a.tensor(0, "input"), a.integer(1, "dim"), optDtypeOf(a, 2)); });
  def(env, exports, "logSoftmax", [](Args& a) {
    return at::log_softmax(a.tensor(0, "input"), a.integer(1, "dim"), optDtypeOf(a, 2));
  });
  // crossEntropy(logits, target, weight?, reduction, ignoreIndex, labelSmoothing)
  def(env, exports, "crossEntropy", [](Args& a) {
    return at::cross_entropy_loss(a.tensor(0, "input"), a.tensor(1, "target"), a.optTensor(2, "weight"), reductionOf(a, 3),
                                  a.integer(4, "ignoreIndex", -100), a.num(5, "labelSmoothing", 0.0));
  });
  def(env, exports, "nllLoss", [](Args& a) {
    return at::nll_loss_nd(a.tensor(0, "input"), a.tensor(1, "target"), a.optTensor(2, "weight"), reductionOf(a, 3),
                           a.integer(4, "ignoreIndex", -100));
  });
  // interpolateBilinear(x, outSize, antialias): torchvision's resize on tensors (align_corners=false).
  def(env, exports, "interpolateBilinear", [](Args& a) {
    auto size = a.ints(1, "size");
    if (a.boolean(2, "antialias", true)) return at::_upsample_bilinear2d_aa(a.tensor(0, "input"), size, false);
    return at::upsample_bilinear2d(a.tensor(0, "input"), size, false);
  });

  // ---- fused multi-tensor updates for optimizers ----
  def(env, exports, "foreachMulScalar_", [](Args& a) { at::_foreach_mul_(a.tensors(0, "self"), a.scalar(1, "scalar")); });
  def(env, exports, "foreachAddList_", [](Args& a) {
    at::_foreach_add_(a.tensors(0, "self"), a.tensors(1, "other"), a.scalar(2, "alpha", 1));
  });
  def(env, exports, "foreachAddList", [](Args& a) {
    return at::_foreach_add(a.tensors(0, "self"), a.tensors(1, "other"), a.scalar(2, "alpha", 1));
  });
  def(env, exports, "foreachAddScalar_", [](Args& a) { at::_foreach_add_(a.tensors(0, "self"), a.scalar(1, "scalar")); });
  def(env, exports, "foreachAddcmul_", [](Args& a) {
    at::_foreach_addcmul_(a.tensors(0, "self"), a.tensors(1, "tensor1"), a.tensors(2, "tensor2"), a.scalar(3, "value"));
  });
  def(env, exports, "foreachAddcdiv_", [](Args& a) {
    at::_foreach_addcdiv_(a.tensors(0, "self"), a.tensors(1, "tensor1"), a.tensors(2, "tensor2"), a.scalar(3, "value"));
  });
  def(env, exports, "foreachLerp_", [](Args& a) {
    at::_foreach_lerp_(a.tensors(0, "self"), a.tensors(1, "end"), a.scalar(2, "weight"));
  });
  def(env, exports, "foreachSqrt", [](Args& a) { return at::_foreach_sqrt(a.tensors(0, "self")); });
  def(env, exports, "foreachNorm", [](Args& a) { return at::_foreach_norm(a.tensors(0, "self"), a.scalar(1, "ord")); });
  def(env, exports, "foreachZero_", [](Args& a) { at::_foreach_zero_(a.tensors(0, "self")); });
  def(env, exports, "foreachCopy_", [](Args& a) { at::_foreach_copy_(a.tensors(0, "self"), a.tensors(1, "src"), false); });
  def(env, exports, "foreachMulTensor_", [](Args& a) { at::_foreach_mul_(a.tensors(0, "self"), a.tensor(1, "scalar")); });

  // torch.optim's fused=True updates: each tensor's parameter, gradient and state read and written in one pass.
  // The kernels walk the raw storage of each, so they must share one dense layout (checked here: a mismatch would
  // pair the wrong elements, silently).
  def(env, exports, "fusedSgd_", [](Args& a) {
    auto self = a.tensors(0, "self");
    auto grads = a.tensors(1, "grads");
    auto bufs = a.tensors(2, "momentumBuffers");
    checkFusedLayout(self, {&grads, &bufs});
    at::_fused_sgd_(self, grads, bufs, a.num(3, "weightDecay"), a.num(4, "momentum"), a.num(5, "lr"), a.num(6, "dampening"),
                    a.boolean(7, "nesterov", false), false, a.boolean(8, "isFirstStep", false));
  });
  def(env, exports, "fusedAdamw_", [](Args& a) {
    auto self = a.tensors(0, "self");
    auto grads = a.tensors(1, "grads");
    auto m = a.tensors(2, "expAvgs");
    auto v = a.tensors(3, "expAvgSqs");
    checkFusedLayout(self, {&grads, &m, &v});
    at::_fused_adamw_(self, grads, m, v, {}, a.tensors(4, "stateSteps"), a.num(5, "lr"), a.num(6, "beta1"), a.num(7, "beta2"),
                      a.num(8, "weightDecay"), a.num(9, "eps"), false, false);
  });
}

}  // namespace rts
