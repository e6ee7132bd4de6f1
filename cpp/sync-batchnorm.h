// SyncBatchNorm's autograd function (used by cpp/distributed.cc only).
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace rts {

// Sums t over all ranks of the process group, in place (defined in cpp/distributed.cc).
void allreduceSum(at::Tensor& t);

// SyncBatchNorm (training mode): batch statistics over the whole global batch. The mean comes
// from one allreduce of [sum, count], the variance from a second of the squared deviations (no
// E[x^2] - E[x]^2 cancellation). Backward allreduces sum(dy) and sum(dy * xhat) for the input
// gradient; the weight and bias gradients stay local, for DDP to average as torch's does.
struct SyncBatchNormFn : public torch::autograd::Function<SyncBatchNormFn> {
  static std::vector<int64_t> statShape(const at::Tensor& x) {
    std::vector<int64_t> s(x.dim(), 1);
    s[1] = x.size(1);
    return s;
  }
  static std::vector<int64_t> reduceDims(const at::Tensor& x) {
    std::vector<int64_t> d;
    for (int64_t i = 0; i < x.dim(); i++)
      if (i != 1) d.push_back(i);
    return d;
  }

  // The optional inputs are std::optional: an undefined at::Tensor input is not allowed by
  // autograd (it records every tensor input's device), an absent optional is simply not an input.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const std::optional<at::Tensor>& weightArg,
                            const std::optional<at::Tensor>& biasArg, const std::optional<at::Tensor>& runningMeanArg,
                            const std::optional<at::Tensor>& runningVarArg, double eps, double momentum) {
    const at::Tensor weight = weightArg.value_or(at::Tensor());
    const at::Tensor bias = biasArg.value_or(at::Tensor());
    at::Tensor runningMean = runningMeanArg.value_or(at::Tensor());
    at::Tensor runningVar = runningVarArg.value_or(at::Tensor());
    const int64_t C = x.size(1);
    const auto dims = reduceDims(x);
    const auto shape = statShape(x);
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor s = at::cat({xf.sum(dims), at::full({1}, static_cast<double>(x.numel() / C), xf.options())});
    allreduceSum(s);
    const double n = s[C].item<double>();
    at::Tensor mean = s.narrow(0, 0, C) / n;
    at::Tensor xc = xf - mean.view(shape);
    at::Tensor sq = (xc * xc).sum(dims);
    allreduceSum(sq);
    at::Tensor var = sq / n;
    at::Tensor invstd = (var + eps).rsqrt();
    at::Tensor xhat = xc * invstd.view(shape);
    at::Tensor y = weight.defined() ? xhat * weight.view(shape) + bias.view(shape) : xhat;
    if (runningMean.defined()) {
      at::NoGradGuard ng;
      runningMean.mul_(1 - momentum).add_(mean.to(runningMean.scalar_type()), momentum);
      runningVar.mul_(1 - momentum).add_((var * (n / std::max(n - 1, 1.0))).to(runningVar.scalar_type()), momentum);
    }
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["n"] = n;
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    return y.to(x.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& xhat = saved[0];
    const at::Tensor& invstd = saved[1];
    const at::Tensor& weight = saved[2];
    const double n = ctx->saved_data["n"].toDouble();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const int64_t C = xhat.size(1);
    const auto dims = reduceDims(xhat);
    const auto shape = statShape(xhat);
    at::Tensor dy = grads[0].to(at::kFloat);
    at::Tensor sumDy = dy.sum(dims);
    at::Tensor sumDyXhat = (dy * xhat).sum(dims);
    at::Tensor t = at::cat({sumDy, sumDyXhat});
    allreduceSum(t);
    at::Tensor meanDy = t.narrow(0, 0, C) / n;
    at::Tensor meanDyXhat = t.narrow(0, C, C) / n;
    at::Tensor scale = weight.defined() ? invstd * weight : invstd;
    at::Tensor dx = (dy - meanDy.view(shape) - xhat * meanDyXhat.view(shape)) * scale.view(shape);
    at::Tensor dw = weight.defined() ? sumDyXhat.to(weight.scalar_type()) : at::Tensor();
    at::Tensor db = weight.defined() ? sumDy.to(weight.scalar_type()) : at::Tensor();
    return {dx.to(dtype), dw, db, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace rts
