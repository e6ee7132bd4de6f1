// Convolutions planned once and run many times, on the system's oneDNN (Debian's libdnnl-dev).
//
// libtorch's own oneDNN (the `mkldnn::` ops of cpp/fused.cc) builds a new primitive descriptor on every call:
// 60-230 us per convolution of resnet50 at batch 1, ~5 ms of its ~30 ms forward on two cores. libtorch does
// not export oneDNN's API, so a plan here is made with the system library: the descriptor, the primitive and
// the weight reordered into the layout it chose are made once for one input shape; a call only binds the
// input, output and residual memory and executes. The same OpenMP runtime runs both libraries (libgomp.so.1,
// loaded once, libtorch's), so at::set_num_threads governs these kernels as well.
//
// A plan lives in a tensor: a uint8 CPU tensor whose storage is the reordered weight and whose deleter frees
// the plan, so it is disposed, counted and shared like any other handle. Built without oneDNN headers
// (RESNET_TS_DNNL=0) every function but dnnlAvailable() reports that plainly.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor.h"

#ifndef RESNET_TS_DNNL
#define RESNET_TS_DNNL 0
#endif

#if RESNET_TS_DNNL
// Quoted, so -iquote finds the system's before libtorch's own (3.x) copy of these headers.
#include "oneapi/dnnl/dnnl.hpp"
static_assert(DNNL_VERSION_MAJOR >= 2, "oneDNN 2.x or 3.x");
#endif

namespace rts {

#if RESNET_TS_DNNL
namespace {

using dnnl::memory;
using tag = memory::format_tag;

const dnnl::engine& engine() {
  static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

memory::data_type dnnlType(at::ScalarType t) {
  if (t == at::kFloat) return memory::data_type::f32;
  if (t == at::kBFloat16) return memory::data_type::bf16;
  TORCH_CHECK(false, "oneDNN plans take float32 or bfloat16; got ", c10::toString(t));
}

// The reordered weight, shared by the plans of one convolution whose primitives chose the same layout.
struct Weights {
  at::Tensor buffer;
  memory::desc md;
};

struct Plan {
  std::shared_ptr<Weights> weights;
  at::Tensor bias;  // dense, the compute dtype
  std::vector<int64_t> inputSize, outputSize;
  at::ScalarType dtype;
  bool add;
  bool inPlace;  // the residual is accumulated into `other`'s own memory (oneDNN's sum post-op), which is the output
  bool reorderSrc, reorderDst;  // the kernel's activations are blocked (winograd): reordered from and to channels-last
  dnnl::reorder toBlocked, fromBlocked;  // those reorders, made once with the plan
  memory::desc src, dst, biasMd;
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
  std::string impl;
};

void deletePlan(void* p) { delete static_cast<Plan*>(p); }

// A plan's tensor: the weight bytes when it owns them, empty when it borrows another plan's.
at::Tensor planTensor(std::unique_ptr<Plan> plan, bool owner) {
  void* data = plan->weights->buffer.data_ptr();
  size_t bytes = owner ? plan->weights->buffer.nbytes() : 0;
  Plan* raw = plan.release();
  c10::DataPtr ptr(data, raw, &deletePlan, c10::Device(c10::kCPU));
  c10::Storage storage(c10::Storage::use_byte_size_t(), bytes, std::move(ptr), nullptr, false);
  return at::empty({0}, at::TensorOptions().dtype(at::kByte)).set_(storage, 0, {static_cast<int64_t>(bytes)}, {1});
}

Plan* planOf(const at::Tensor& t) {
  const c10::DataPtr& ptr = t.storage().data_ptr();
  TORCH_CHECK(ptr.get_deleter() == &deletePlan, "expected a plan from dnnlConvPlan");
  return static_cast<Plan*>(ptr.get_context());
}

// Whether a kernel that wants its weight as `md` in `dtype` can run on `like`'s reordered copy.
bool fitsWeights(const Plan* like, const memory::desc& md, at::ScalarType dtype) {
  return like->weights->md == md && like->dtype == dtype && like->weights->buffer.nbytes() == md.get_size();
}

// The two plans of a diagnostic (both arguments read before either is checked).
std::pair<Plan*, Plan*> twoPlans(const Args& a) {
  const at::Tensor& ta = a.tensor(0, "a");
  const at::Tensor& tb = a.tensor(1, "b");
  return {planOf(ta), planOf(tb)};
}

memory::desc nhwc(const std::vector<int64_t>& size, memory::data_type t) { return memory::desc(memory::dims(size.begin(), size.end()), t, tag::nhwc); }

at::Tensor& denseCpu(const Args& a, size_t i, const char* name) {
  at::Tensor& t = a.tensor(i, name);
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, name, " must be a dense CPU tensor");
  return t;
}

}  // namespace
#endif

void registerDnnl(Napi::Env env, Napi::Object exports) {
  // Whether the addon was built with the system oneDNN (its headers were found at build time).
  def(env, exports, "dnnlAvailable", [](Args& a) { return RESNET_TS_DNNL != 0; });
#if RESNET_TS_DNNL
  // The oneDNN the plans run on, e.g. "2.6.3".
  def(env, exports, "dnnlVersion", [](Args& a) {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  });
  // dnnlConvPlan(weight, bias, padding, stride, dilation, groups, inputSize, relu, add, like, inPlace): a
  // convolution with bias (and a residual addition, then ReLU) for inputs of exactly inputSize [N, C, H, W],
  // channels-last in and out. `like` is another plan of the same weight, or an array of them: the reordered copy of
  // the first whose layout matches is shared (direct and winograd kernels want different layouts, and winograd ones
  // differ by batch size too: compared with the first plan only, each new batch size of another layout copied it again).
  // `inPlace` (with `add`): the run accumulates into the residual's memory and returns it, so oneDNN adds it with its
  // sum post-op, for which 2.6 keeps its fastest 1x1 kernel (a binary add does not).
  // `winograd` (no residual): oneDNN's winograd kernel where it has one for this CPU and shape (3x3, stride 1,
  // AVX-512; ~25 % faster on resnet50's 3x3 convolutions at batch 16), else the direct one.
  def(env, exports, "dnnlConvPlan", [](Args& a) {
    at::Tensor w = denseCpu(a, 0, "weight").contiguous();
    TORCH_CHECK(w.dim() == 4, "weight must be 4-D [out, in/groups, kh, kw]; got ", w.dim(), "-D");
    auto b = a.optTensor(1, "bias");
    std::vector<int64_t> padding = a.pair(2, "padding"), stride = a.pair(3, "stride"), dilation = a.pair(4, "dilation");
    int64_t groups = a.integer(5, "groups");
    std::vector<int64_t> in = a.ints(6, "inputSize");
    bool relu = a.boolean(7, "relu", false), add = a.boolean(8, "add", false), inPlace = a.boolean(10, "inPlace", false);
    bool wino = a.boolean(11, "winograd", false);
    TORCH_CHECK(!inPlace || add, "inPlace needs add: it is where the residual is accumulated");
    TORCH_CHECK(!wino || !add, "a winograd plan takes no residual");
    TORCH_CHECK(groups >= 1 && w.size(0) % groups == 0, "groups must divide the output channels");
    TORCH_CHECK(in.size() == 4 && in[0] >= 1 && in[2] >= 1 && in[3] >= 1, "inputSize must be [N, C, H, W] with N, H, W >= 1");
    TORCH_CHECK(in[1] == w.size(1) * groups, "inputSize has ", in[1], " channels; the weight takes ", w.size(1) * groups);
    for (int d = 0; d < 2; d++) TORCH_CHECK(stride[d] >= 1 && dilation[d] >= 1 && padding[d] >= 0, "stride and dilation must be >= 1, padding >= 0");
    auto plan = std::make_unique<Plan>();
    plan->dtype = w.scalar_type();
    auto dt = dnnlType(plan->dtype);
    plan->add = add;
    plan->inPlace = inPlace;
    plan->inputSize = in;
    int64_t K = w.size(0);
    plan->outputSize = {in[0], K};
    for (int d = 0; d < 2; d++) {
      int64_t k = dilation[d] * (w.size(2 + d) - 1) + 1;
      int64_t o = (in[2 + d] + 2 * padding[d] - k) / stride[d] + 1;
      TORCH_CHECK(in[2 + d] + 2 * padding[d] >= k && o >= 1, "the input (", in[2], "x", in[3], ") is smaller than the kernel");
      plan->outputSize.push_back(o);
    }
    plan->src = nhwc(in, dt);
    plan->dst = nhwc(plan->outputSize, dt);
    if (b) {
      plan->bias = b->to(at::kCPU, plan->dtype).contiguous();
      TORCH_CHECK(plan->bias.dim() == 1 && plan->bias.size(0) == K, "bias must be [", K, "]");
    } else {
      plan->bias = at::zeros({K}, w.options());
    }
    plan->biasMd = memory::desc({K}, dt, tag::a);
    memory::dims wdims = groups == 1 ? memory::dims{K, w.size(1), w.size(2), w.size(3)}
                                     : memory::dims{groups, K / groups, w.size(1), w.size(2), w.size(3)};
    memory::desc userW(wdims, dt, groups == 1 ? tag::oihw : tag::goihw);
    memory::desc anyW(wdims, dt, tag::any);
    dnnl::post_ops po;
    if (inPlace) po.append_sum(1.f);
    else if (add) po.append_binary(dnnl::algorithm::binary_add, plan->dst);
#if DNNL_VERSION_MAJOR >= 3
    if (relu) po.append_eltwise(dnnl::algorithm::eltwise_relu, 0.f, 0.f);
#else
    if (relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
#endif
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    memory::dims st{stride[0], stride[1]}, dil{dilation[0] - 1, dilation[1] - 1}, pad{padding[0], padding[1]};
    // Direct convolutions read and write channels-last as they are. Winograd (oneDNN has it for 3x3, stride 1, on
    // AVX-512) wants its own blocked activations: src and dst are left to it and reordered around each run.
    auto make = [&](dnnl::algorithm algo) {
      bool blocked = algo == dnnl::algorithm::convolution_winograd;
      memory::desc src = blocked ? memory::desc(plan->src.dims(), dt, tag::any) : plan->src;
      memory::desc dst = blocked ? memory::desc(plan->dst.dims(), dt, tag::any) : plan->dst;
#if DNNL_VERSION_MAJOR >= 3
      return dnnl::convolution_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference, algo, src, anyW, plan->biasMd, dst,
                                                       st, dil, pad, pad, attr);
#else
      dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, algo, src, anyW, plan->biasMd, dst, st, dil, pad, pad);
      return dnnl::convolution_forward::primitive_desc(desc, attr, engine());
#endif
    };
    bool winograd = false;
    if (wino) {
      try {
        plan->pd = make(dnnl::algorithm::convolution_winograd);
        winograd = true;
      } catch (const dnnl::error&) {
        // Not on this CPU or for this shape: the direct kernel below.
      }
    }
    if (!winograd) plan->pd = make(dnnl::algorithm::convolution_direct);
    plan->reorderSrc = plan->pd.src_desc() != plan->src;
    plan->reorderDst = plan->pd.dst_desc() != plan->dst;
    if (plan->reorderSrc) plan->toBlocked = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), plan->src, engine(), plan->pd.src_desc()));
    if (plan->reorderDst) plan->fromBlocked = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), plan->pd.dst_desc(), engine(), plan->dst));
    plan->impl = plan->pd.impl_info_str();
    // oneDNN's reference and gemm (im2col) kernels are far slower than libtorch's path: refuse, and the caller keeps
    // that. 2.6 has no direct kernel for grouped convolutions of 4 channels per group on AVX2 (resnext50_32x4d's
    // layer1), where it picks "gemm:jit" (3 ms against 1.1 ms for libtorch's brg_conv_fwd:avx2, and its nhwc
    // variant fails to execute), so only JIT kernels are planned.
    TORCH_CHECK(plan->impl.rfind("ref", 0) != 0 && plan->impl.find("gemm") == std::string::npos,
                "oneDNN has only its reference or gemm kernel (", plan->impl, ") for this convolution");
    plan->prim = dnnl::convolution_forward(plan->pd);
    memory::desc chosen = plan->pd.weights_desc();
    bool owner = true;
    if (a.has(9)) {
      std::vector<Plan*> likes;
      if (a[9].IsArray()) {
        for (const at::Tensor& t : a.tensors(9, "like")) likes.push_back(planOf(t));
      } else {
        likes.push_back(planOf(a.tensor(9, "like")));
      }
      for (Plan* like : likes) {
        if (fitsWeights(like, chosen, plan->dtype)) {
          plan->weights = like->weights;
          owner = false;
          break;
        }
      }
    }
    if (owner) {
      auto ws = std::make_shared<Weights>();
      ws->md = chosen;
      ws->buffer = at::empty({static_cast<int64_t>(chosen.get_size())}, at::TensorOptions().dtype(at::kByte));
      memory from(userW, engine(), w.data_ptr());
      memory to(chosen, engine(), ws->buffer.data_ptr());
      dnnl::reorder(from, to).execute(stream(), from, to);
      stream().wait();
      plan->weights = std::move(ws);
    }
    return planTensor(std::move(plan), owner);
  });
  // dnnlMaxPool(input, kernel, stride, padding): max pooling of a float32 or bf16 [N, C, H, W] input, channels-last in
  // and out, on oneDNN's pooling kernel (libtorch's channels-last one takes 2-3x as long: resnet50's stem pool at
  // batch 1, 154 against 46 us; AMD EPYC, 2 threads). Padding is skipped, not read as zeros, and the output is
  // floor((H + 2 * padding - kernel) / stride) + 1 high, as torch's max_pool2d without ceil_mode. The primitive is
  // made once per shape and kept (per thread); where oneDNN has only its reference kernel, or none (bf16 on AVX2),
  // it is refused.
  def(env, exports, "dnnlMaxPool", [](Args& a) {
    at::Tensor& x0 = denseCpu(a, 0, "input");
    std::vector<int64_t> kernel = a.pair(1, "kernel"), stride = a.pair(2, "stride"), padding = a.pair(3, "padding");
    TORCH_CHECK(x0.dim() == 4, "dnnlMaxPool: expected [N, C, H, W]; got ", x0.sizes());
    auto dt = dnnlType(x0.scalar_type());
    std::vector<int64_t> in = x0.sizes().vec(), out = {in[0], in[1]};
    for (int d = 0; d < 2; d++) {
      TORCH_CHECK(kernel[d] >= 1 && stride[d] >= 1 && padding[d] >= 0 && padding[d] * 2 <= kernel[d],
                  "dnnlMaxPool: kernel and stride must be >= 1, padding >= 0 and at most half the kernel");
      TORCH_CHECK(in[2 + d] + 2 * padding[d] >= kernel[d], "dnnlMaxPool: the input (", in[2], "x", in[3], ") is smaller than the kernel");
      out.push_back((in[2 + d] + 2 * padding[d] - kernel[d]) / stride[d] + 1);
    }
    std::vector<int64_t> key = in;
    for (auto* v : {&kernel, &stride, &padding}) key.insert(key.end(), v->begin(), v->end());
    key.push_back(static_cast<int64_t>(dt));
    static thread_local std::map<std::vector<int64_t>, dnnl::primitive> made;
    auto it = made.find(key);
    if (it == made.end()) {
      memory::dims st{stride[0], stride[1]}, k{kernel[0], kernel[1]}, pad{padding[0], padding[1]}, dil{0, 0};
      dnnl::primitive prim;
      std::string impl;
      // No kernel at all is possible too (bf16 on an AVX2 CPU): refused the same way.
      try {
#if DNNL_VERSION_MAJOR >= 3
        dnnl::pooling_forward::primitive_desc pd(engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_max, nhwc(in, dt),
                                                 nhwc(out, dt), st, k, dil, pad, pad);
        prim = dnnl::pooling_forward(pd);
#else
        dnnl::pooling_v2_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_max, nhwc(in, dt), nhwc(out, dt), st, k,
                                            dil, pad, pad);
        dnnl::pooling_v2_forward::primitive_desc pd(desc, engine());
        prim = dnnl::pooling_v2_forward(pd);
#endif
        impl = pd.impl_info_str();
      } catch (const dnnl::error& e) {
        TORCH_CHECK(false, "oneDNN has no kernel for this pooling (", e.what(), ")");
      }
      TORCH_CHECK(impl.rfind("ref", 0) != 0, "oneDNN has only its reference kernel (", impl, ") for this pooling");
      if (made.size() >= 64) made.clear();
      it = made.emplace(key, prim).first;
    }
    at::Tensor x = x0.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor y = at::empty(out, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    it->second.execute(stream(), {{DNNL_ARG_SRC, memory(nhwc(in, dt), engine(), x.data_ptr())},
                                  {DNNL_ARG_DST, memory(nhwc(out, dt), engine(), y.data_ptr())}});
    stream().wait();
    return y;
  });
#else
  def(env, exports, "dnnlVersion", [](Args& a) { return std::string(); });
  for (const char* name : {"dnnlConvPlan", "dnnlPlanImpl", "dnnlPlanSameLayout", "dnnlPlanSameWeight", "dnnlConvRun", "dnnlMaxPool"})
    def(env, exports, name, [](Args& a) -> at::Tensor {
      TORCH_CHECK(false, a.fn(), ": this addon was built without the system oneDNN (install libdnnl-dev, then rebuild)");
    });
#endif
#if RESNET_TS_DNNL
  // dnnlPlanImpl(plan): the kernel oneDNN chose, e.g. "brgconv_1x1:avx512_core".
  def(env, exports, "dnnlPlanImpl", [](Args& a) { return planOf(a.tensor(0, "plan"))->impl; });
  // dnnlPlanSameLayout(a, b): whether b's kernel could run on a's reordered weight, the test dnnlConvPlan shares by
  // (diagnostics and tests).
  def(env, exports, "dnnlPlanSameLayout", [](Args& a) {
    auto [p, q] = twoPlans(a);
    return fitsWeights(p, q->pd.weights_desc(), q->dtype);
  });
  // dnnlPlanSameWeight(a, b): whether two plans run on one reordered copy of the weight (diagnostics and tests).
  def(env, exports, "dnnlPlanSameWeight", [](Args& a) {
    auto [p, q] = twoPlans(a);
    return p->weights == q->weights;
  });
  // dnnlConvRun(plan, input, other): the planned convolution of input (and + other); channels-last out. An
  // inPlace plan writes the result over `other` (over its channels-last copy when it is not already one) and
  // returns that tensor.
  def(env, exports, "dnnlConvRun", [](Args& a) {
    Plan* p = planOf(a.tensor(0, "plan"));
    at::Tensor& x0 = denseCpu(a, 1, "input");
    TORCH_CHECK(x0.scalar_type() == p->dtype, "input is ", c10::toString(x0.scalar_type()), "; the plan is ", c10::toString(p->dtype));
    TORCH_CHECK(x0.sizes() == c10::IntArrayRef(p->inputSize), "input has shape ", x0.sizes(), "; the plan is for ", c10::IntArrayRef(p->inputSize));
    at::Tensor x = x0.contiguous(at::MemoryFormat::ChannelsLast);
    std::optional<at::Tensor> other;
    if (a.has(2)) {
      at::Tensor& o = denseCpu(a, 2, "other");
      TORCH_CHECK(o.scalar_type() == p->dtype, "other is ", c10::toString(o.scalar_type()), "; the plan is ", c10::toString(p->dtype));
      TORCH_CHECK(o.sizes() == c10::IntArrayRef(p->outputSize), "other has shape ", o.sizes(), "; the convolution gives ",
                  c10::IntArrayRef(p->outputSize));
      other = o.contiguous(at::MemoryFormat::ChannelsLast);
    }
    TORCH_CHECK(other.has_value() == p->add, p->add ? "this plan adds a residual: pass `other`" : "this plan adds no residual");
    TORCH_CHECK(!p->inPlace || !other->storage().is_alias_of(x.storage()), "this plan writes over `other`: it must not share memory with the input");
    at::Tensor y = p->inPlace ? *other : at::empty(p->outputSize, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    at::Tensor scratch = at::empty({static_cast<int64_t>(p->pd.scratchpad_desc().get_size())}, x.options().dtype(at::kByte));
    const auto& eng = engine();
    memory srcM(p->src, eng, x.data_ptr()), dstM(p->dst, eng, y.data_ptr()), userDst = dstM;
    at::Tensor blockedSrc, blockedDst;
    if (p->reorderSrc) {
      blockedSrc = at::empty({static_cast<int64_t>(p->pd.src_desc().get_size())}, x.options().dtype(at::kByte));
      memory to(p->pd.src_desc(), eng, blockedSrc.data_ptr());
      p->toBlocked.execute(stream(), srcM, to);
      srcM = to;
    }
    if (p->reorderDst) {
      blockedDst = at::empty({static_cast<int64_t>(p->pd.dst_desc().get_size())}, x.options().dtype(at::kByte));
      dstM = memory(p->pd.dst_desc(), eng, blockedDst.data_ptr());
    }
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, srcM},
        {DNNL_ARG_WEIGHTS, memory(p->weights->md, eng, p->weights->buffer.data_ptr())},
        {DNNL_ARG_BIAS, memory(p->biasMd, eng, p->bias.data_ptr())},
        {DNNL_ARG_DST, dstM},
        {DNNL_ARG_SCRATCHPAD, memory(p->pd.scratchpad_desc(), eng, scratch.data_ptr())},
    };
    if (other && !p->inPlace) args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, memory(p->dst, eng, other->data_ptr()));
    p->prim.execute(stream(), args);
    if (p->reorderDst) p->fromBlocked.execute(stream(), dstM, userDst);
    stream().wait();
    return y;
  });
#endif
}

}  // namespace rts
