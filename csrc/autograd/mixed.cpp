// Autograd of mixed_sum in C++ (a torch::autograd::Function registered for the Autograd key, as torchvision's
// csrc/ops/autograd/ do): the formula of ops/mixed.py's spec without a Python frame per call. A tiny call
// spent most of its time in torch.library's Python autograd wrapper (flattening the candidate list, the
// Python Function's apply). Device-independent: forward and backward redispatch to the CPU or CUDA kernel.
// The Triton twin (mednns_fast_triton::mixed_sum) keeps the spec's Python formula.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <vector>

namespace mednns_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor mixed_sum_call(at::TensorList xs, const at::Tensor& weights) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mednns_fast::mixed_sum", "")
                             .typed<at::Tensor(at::TensorList, const at::Tensor&)>();
  return op.call(xs, weights);
}

std::tuple<std::vector<at::Tensor>, at::Tensor> mixed_sum_backward_call(const at::Tensor& grad, at::TensorList xs,
                                                                        const at::Tensor& weights,
                                                                        const c10::List<bool>& xs_need_grad,
                                                                        bool weights_need_grad) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mednns_fast::mixed_sum_backward", "")
          .typed<std::tuple<std::vector<at::Tensor>, at::Tensor>(const at::Tensor&, at::TensorList, const at::Tensor&,
                                                                 const c10::List<bool>&, bool)>();
  return op.call(grad, xs, weights, xs_need_grad, weights_need_grad);
}

class MixedSum : public torch::autograd::Function<MixedSum> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::TensorList xs, const at::Tensor& weights) {
    const int64_t K = static_cast<int64_t>(xs.size());
    c10::List<bool> xs_need_grad;
    xs_need_grad.reserve(K);
    for (const at::Tensor& x : xs) xs_need_grad.push_back(x.requires_grad());
    const bool weights_need_grad = weights.requires_grad();
    // The inputs' values serve only the weights' gradient: they are kept alive only for it.
    std::vector<at::Tensor> saved{weights};
    if (weights_need_grad) saved.insert(saved.end(), xs.begin(), xs.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["K"] = K;
    ctx->saved_data["xs_need_grad"] = std::move(xs_need_grad);
    ctx->saved_data["weights_need_grad"] = weights_need_grad;
    at::AutoDispatchBelowADInplaceOrView guard;
    return mixed_sum_call(xs, weights);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const int64_t K = ctx->saved_data["K"].toInt();
    const c10::List<bool> xs_need_grad = ctx->saved_data["xs_need_grad"].toBoolList();
    const bool weights_need_grad = ctx->saved_data["weights_need_grad"].toBool();
    const at::Tensor& grad = grad_outputs[0];
    const at::Tensor& weights = saved[0];
    // Without the weights' gradient the inputs' values are unused: the gradient stands in for them.
    const std::vector<at::Tensor> xs = weights_need_grad ? std::vector<at::Tensor>(saved.begin() + 1, saved.end())
                                                         : std::vector<at::Tensor>(K, grad);
    auto [grad_xs, grad_w] = mixed_sum_backward_call(grad, xs, weights, xs_need_grad, weights_need_grad);
    variable_list grads(K + 1);
    for (int64_t k = 0; k < K; ++k)
      if (xs_need_grad.get(k)) grads[k] = std::move(grad_xs[k]);
    if (weights_need_grad) grads[K] = std::move(grad_w);
    return grads;
  }
};

at::Tensor mixed_sum_autograd(at::TensorList xs, const at::Tensor& weights) {
  return MixedSum::apply(xs, weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, Autograd, m) { m.impl("mixed_sum", &mixed_sum_autograd); }

}  // namespace mednns_fast
