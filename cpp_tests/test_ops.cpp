// Loads the shared library the way a libtorch user would (dlopen, like torch.ops.load_library) and calls
// its ops through the dispatcher, checking them against plain ATen expressions.
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>
#include <torch/torch.h>

#include <iostream>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  failures += ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || !dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)) {
    std::cerr << "usage: test_ops path/to/libmednns_fast.so (" << (argc == 2 ? dlerror() : "no path") << ")\n";
    return 2;
  }
  torch::manual_seed(0);

  auto mixed_sum = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mednns_fast::mixed_sum", "")
                       .typed<at::Tensor(at::TensorList, const at::Tensor&)>();
  std::vector<at::Tensor> xs = {torch::randn({3, 7, 5}), torch::randn({3, 7, 5}), torch::randn({3, 7, 5})};
  at::Tensor w = torch::randn({3});
  at::Tensor expected = w[0] * xs[0] + w[1] * xs[1] + w[2] * xs[2];
  check(torch::allclose(mixed_sum.call(xs, w), expected, 1e-5, 1e-6), "mixed_sum [K] weights");
  at::Tensor wb = torch::randn({3, 3});
  at::Tensor expected_b = wb.select(1, 0).view({3, 1, 1}) * xs[0] + wb.select(1, 1).view({3, 1, 1}) * xs[1] +
                          wb.select(1, 2).view({3, 1, 1}) * xs[2];
  check(torch::allclose(mixed_sum.call(xs, wb), expected_b, 1e-5, 1e-6), "mixed_sum [B, K] weights");
  bool raised = false;
  try {
    mixed_sum.call(xs, torch::randn({2}));
  } catch (const c10::Error& e) {
    raised = std::string(e.what()).find("K mismatch") != std::string::npos;
  }
  check(raised, "mixed_sum K mismatch raises a clear error");

  auto depthwise = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mednns_fast::multi_depthwise_conv2d", "")
                       .typed<at::Tensor(const at::Tensor&, at::TensorList, at::IntArrayRef, int64_t, bool)>();
  at::Tensor x = torch::randn({2, 4, 9, 8});
  std::vector<at::Tensor> ws = {torch::randn({4, 1, 3, 3}), torch::randn({4, 1, 5, 5})};
  at::Tensor got = depthwise.call(x, ws, {1, 2}, 1, true);
  at::Tensor want = torch::cat({torch::conv2d(x, ws[0], {}, 1, 1, 1, 4), torch::conv2d(x, ws[1], {}, 1, 4, 2, 4)}, 1);
  check(torch::allclose(got, want, 1e-4, 1e-5), "multi_depthwise_conv2d vs conv2d");

  auto pools = c10::Dispatcher::singleton()
                   .findSchemaOrThrow("mednns_fast::max_avg_pool3x3", "")
                   .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>();
  at::Tensor pooled = std::get<0>(pools.call(x, 2));
  at::Tensor pooled_want = torch::cat({torch::max_pool2d(x, 3, 2, 1), torch::avg_pool2d(x, 3, 2, 1, false, false)}, 1);
  check(torch::equal(pooled, pooled_want), "max_avg_pool3x3 vs max_pool2d and avg_pool2d");

  auto js = c10::Dispatcher::singleton()
                .findSchemaOrThrow("mednns_fast::js_divergence", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>();
  at::Tensor p = torch::softmax(torch::randn({6, 5}, torch::kDouble), 1);
  at::Tensor q = torch::softmax(torch::randn({6, 5}, torch::kDouble), 1);
  at::Tensor m = (p + q) / 2;
  at::Tensor js_want = 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1);
  check(torch::allclose(js.call(p, q, false), js_want, 1e-10, 1e-12), "js_divergence vs textbook formula");

  auto update = c10::Dispatcher::singleton()
                    .findSchemaOrThrow("mednns_fast::feature_stats_update_", "")
                    .typed<void(at::Tensor&, at::Tensor&, const at::Tensor&, int64_t)>();
  at::Tensor feats = torch::randn({50, 7}, torch::kDouble) + 1e3;
  at::Tensor mean = torch::zeros({7}, torch::kDouble), m2 = torch::zeros({7, 7}, torch::kDouble);
  update.call(mean, m2, feats.narrow(0, 0, 20), 0);
  update.call(mean, m2, feats.narrow(0, 20, 30), 20);
  at::Tensor centred = feats - feats.mean(0);
  check(torch::allclose(mean, feats.mean(0), 1e-12, 1e-9) && torch::allclose(m2, centred.t().mm(centred), 1e-9, 1e-9),
        "feature_stats_update_ in two batches equals one pass");

  std::cout << (failures ? "FAILED" : "all passed") << "\n";
  return failures ? 1 : 0;
}
