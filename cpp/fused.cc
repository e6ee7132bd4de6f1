// Fused inference ops: oneDNN convolutions with the bias (a folded BatchNorm), ReLU and a residual
// addition done inside the kernel, on weights reordered once into oneDNN's blocked layout.
//
// libtorch registers these as `mkldnn::` operators (what TorchInductor's CPU freezing pass emits) but
// exports no C++ function for them, so they are called through the dispatcher, boxed: the schemas
// are looked up by name once, and an older or non-oneDNN build is reported by fusedAvailable()
// instead of failing at load. Argument order follows lib/native.ts.
#include <ATen/ATen.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>
#include <vector>

#include "tensor.h"

namespace rts {

namespace {

// The operator named `name.overload`, or nullopt when this libtorch does not register it.
std::optional<c10::OperatorHandle> findOp(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchema({name, overload});
}

const c10::OperatorHandle& requireOp(const std::optional<c10::OperatorHandle>& op, const char* name) {
  TORCH_CHECK(op.has_value(), "this libtorch build has no ", name, " (oneDNN fused ops need libtorch 2.x built with oneDNN)");
  return *op;
}

const c10::OperatorHandle& convPointwiseOp() {
  static const auto op = findOp("mkldnn::_convolution_pointwise", "");
  return requireOp(op, "mkldnn::_convolution_pointwise");
}

const c10::OperatorHandle& convBinaryOp() {
  static const auto op = findOp("mkldnn::_convolution_pointwise", "binary");
  return requireOp(op, "mkldnn::_convolution_pointwise.binary");
}

const c10::OperatorHandle& reorderWeightOp() {
  static const auto op = findOp("mkldnn::_reorder_convolution_weight", "");
  return requireOp(op, "mkldnn::_reorder_convolution_weight");
}

const c10::OperatorHandle& layoutOp() {
  static const auto op = findOp("mkldnn::_get_mkldnn_serialized_md", "");
  return requireOp(op, "mkldnn::_get_mkldnn_serialized_md");
}

at::Tensor callTensor(const c10::OperatorHandle& op, std::vector<c10::IValue>&& stack) {
  // The packed weights and activations never take part in autograd: dispatch straight to the CPU kernel,
  // past the autograd fallback that would check every input for requires_grad on each call.
  at::AutoDispatchBelowADInplaceOrView belowAutograd;
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

c10::IValue optTensorValue(const std::optional<at::Tensor>& t) { return t ? c10::IValue(*t) : c10::IValue(); }

// The convolution geometry shared by every fused call: padding, stride, dilation (pairs), groups.
struct Geometry {
  std::vector<int64_t> padding, stride, dilation;
  int64_t groups;
};

Geometry geometry(const Args& a, size_t at) {
  Geometry g{a.pair(at, "padding"), a.pair(at + 1, "stride"), a.pair(at + 2, "dilation"), a.integer(at + 3, "groups")};
  if (g.groups < 1) a.typeError("groups", "a positive integer");
  return g;
}

// A CPU float32 or bfloat16 activation, as the fused kernels take.
at::Tensor& activation(const Args& a, size_t i, const char* name) {
  at::Tensor& x = a.tensor(i, name);
  TORCH_CHECK(x.device().is_cpu() && !x.is_mkldnn(), name, " must be a dense CPU tensor; got ", x.device().str());
  TORCH_CHECK(x.dim() == 4, name, " must be 4-D (N, C, H, W); got ", x.dim(), "-D");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, name,
              " must be float32 or bfloat16; got ", c10::toString(x.scalar_type()));
  return x;
}

at::Tensor& packedWeight(const Args& a, size_t i, const at::Tensor& x) {
  at::Tensor& w = a.tensor(i, "weight");
  TORCH_CHECK(w.is_mkldnn(), "weight must come from convPack (a oneDNN blocked tensor)");
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "weight is ", c10::toString(w.scalar_type()), " but the input is ",
              c10::toString(x.scalar_type()));
  return w;
}

}  // namespace

void registerFused(Napi::Env env, Napi::Object exports) {
  // Whether the oneDNN fused ops exist in this libtorch (and it was built with oneDNN at all).
  def(env, exports, "fusedAvailable", [](Args& a) {
    return at::hasMKLDNN() && findOp("mkldnn::_convolution_pointwise", "binary").has_value() &&
           findOp("mkldnn::_reorder_convolution_weight", "").has_value() && findOp("mkldnn::_get_mkldnn_serialized_md", "").has_value();
  });
  // Whether oneDNN runs bfloat16 kernels on this CPU (its own check: AVX-512 BW/VL/DQ or better).
  def(env, exports, "fusedBf16Supported", [](Args& a) {
    static const auto op = findOp("mkldnn::_is_mkldnn_bf16_supported", "");
    if (!op) return false;
    std::vector<c10::IValue> stack;
    op->callBoxed(&stack);
    return stack.at(0).toBool();
  });
  // convPack(weight, padding, stride, dilation, groups, inputSize): the weight reordered once into the blocked
  // layout oneDNN picks for inputs of that size, so no call reorders it again.
  def(env, exports, "convPack", [](Args& a) {
    at::Tensor& w = a.tensor(0, "weight");
    TORCH_CHECK(w.device().is_cpu() && !w.is_mkldnn() && w.dim() == 4, "weight must be a dense 4-D CPU tensor");
    TORCH_CHECK(w.scalar_type() == at::kFloat || w.scalar_type() == at::kBFloat16, "weight must be float32 or bfloat16");
    Geometry g = geometry(a, 1);
    std::vector<int64_t> inputSize = a.ints(5, "inputSize");
    TORCH_CHECK(inputSize.size() == 4, "inputSize must be [N, C, H, W]");
    TORCH_CHECK(inputSize[1] == w.size(1) * g.groups, "inputSize has ", inputSize[1], " channels; the weight takes ",
                w.size(1) * g.groups);
    return callTensor(reorderWeightOp(), {w, g.padding, g.stride, g.dilation, g.groups, inputSize});
  });
  // packedLayout(packed): oneDNN's serialized memory descriptor (uint8), equal for two packings of one layout.
  def(env, exports, "packedLayout", [](Args& a) {
    at::Tensor& w = a.tensor(0, "packed");
    TORCH_CHECK(w.is_mkldnn(), "expected a tensor from convPack");
    return callTensor(layoutOp(), {w});
  });
  // convFused(x, packed, bias, padding, stride, dilation, groups, relu): conv + bias (+ ReLU), channels-last out.
  def(env, exports, "convFused", [](Args& a) {
    at::Tensor& x = activation(a, 0, "input");
    at::Tensor& w = packedWeight(a, 1, x);
    auto b = a.optTensor(2, "bias");
    Geometry g = geometry(a, 3);
    bool relu = a.boolean(7, "relu", false);
    return callTensor(convPointwiseOp(), {x, w, optTensorValue(b), g.padding, g.stride, g.dilation, g.groups,
                                          std::string(relu ? "relu" : "none"), c10::List<std::optional<at::Scalar>>(),
                                          c10::IValue()});
  });
  // convFusedAdd(x, other, packed, bias, padding, stride, dilation, groups, relu): conv + bias + other (+ ReLU)
  // in one kernel: the residual block's last convolution, its shortcut and the block's ReLU.
  def(env, exports, "convFusedAdd", [](Args& a) {
    at::Tensor& x = activation(a, 0, "input");
    at::Tensor& other = activation(a, 1, "other");
    at::Tensor& w = packedWeight(a, 2, x);
    auto b = a.optTensor(3, "bias");
    Geometry g = geometry(a, 4);
    bool relu = a.boolean(8, "relu", false);
    TORCH_CHECK(other.scalar_type() == x.scalar_type(), "other is ", c10::toString(other.scalar_type()),
                " but the input is ", c10::toString(x.scalar_type()));
    std::vector<int64_t> out{x.size(0), w.size(0)};
    for (int d = 0; d < 2; d++) {
      int64_t k = g.dilation[d] * (w.size(2 + d) - 1) + 1;
      out.push_back((x.size(2 + d) + 2 * g.padding[d] - k) / g.stride[d] + 1);
    }
    TORCH_CHECK(other.sizes() == c10::IntArrayRef(out), "other has shape ", other.sizes(), "; the convolution gives ",
                c10::IntArrayRef(out));
    // The kernel reads `other` in the output's layout (channels-last), so hand it over that way.
    at::Tensor o = other.contiguous(at::MemoryFormat::ChannelsLast);
    return callTensor(convBinaryOp(), {x, o, w, optTensorValue(b), g.padding, g.stride, g.dilation, g.groups, std::string("add"),
                                       c10::IValue(at::Scalar(1.0)), relu ? c10::IValue(std::string("relu")) : c10::IValue(),
                                       c10::List<std::optional<at::Scalar>>(), c10::IValue()});
  });
}

}  // namespace rts
