#include "xdistill/train/adamw.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "adamw_step_params.h"
#include "ops/kernel_args.h"
#endif

namespace xd::train {
namespace {

// Every tensor contiguous on CUDA in a dtype the kernel takes, and XD_FUSED_ADAMW not "off".
bool kernel_usable(const std::vector<std::pair<std::string, at::Tensor>>& params) {
#ifdef XDISTILL_WITH_CUDA
  using namespace ops::kernel_args;
  if (env_is("XD_FUSED_ADAMW", "off")) return false;
  for (const auto& [name, p] : params)
    if (!p.is_cuda() || !p.is_contiguous() || !supported_dtype(p)) return false;
  return !params.empty();
#else
  (void)params;
  return false;
#endif
}

}  // namespace

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options) : opt_(options) {
  XD_CHECK(!params.empty(), "optimizer: no parameters to train");
  at::NoGradGuard no_grad;
  use_kernel_ = kernel_usable(params);
  buffers_ = opt_.fp32_gradient_buffers || !use_kernel_;
  for (auto& [name, p] : params) {
    XD_CHECK(p.is_floating_point(), "optimizer: parameter '", name, "' is not floating point");
    names_.push_back(name);
    params_.push_back(p);
    // fp32 parameters are their own master; others get an fp32 copy.
    masters_.push_back(p.scalar_type() == at::kFloat ? p : p.detach().to(at::kFloat).clone());
    if (buffers_) grads_.push_back(at::zeros_like(masters_.back()));
    exp_avg_.push_back(at::zeros_like(masters_.back()));
    exp_avg_sq_.push_back(at::zeros_like(masters_.back()));
    decayed_.push_back(opt_.decay_vectors || p.dim() >= 2);
    steps_.push_back(at::zeros({}, masters_.back().options()));
  }
}

int64_t AdamW::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.numel();
  return n;
}

std::vector<at::Tensor>& AdamW::gradients() {
  XD_CHECK(buffers_, "optimizer: gradients() needs fp32 gradient buffers (this AdamW reads .grad in place)");
  return grads_;
}

std::vector<at::Tensor> AdamW::current_gradients() const {
  if (buffers_) return grads_;
  std::vector<at::Tensor> out;
  for (const auto& p : params_)
    if (p.grad().defined()) out.push_back(p.grad());
  return out;
}

void AdamW::release_gradients() {
  if (buffers_) at::_foreach_zero_(grads_);
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
  micro_batches_ = 0;
}

void AdamW::accumulate_gradients() {
  if (!buffers_) {
    // The gradients stay in .grad; a second backward would sum into them in bf16.
    XD_CHECK(++micro_batches_ == 1, "optimizer: a second micro-batch in one step needs fp32 gradient buffers ",
             "(AdamWOptions::fp32_gradient_buffers)");
    return;
  }
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> sums, fresh;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& g = params_[i].mutable_grad();
    if (!g.defined()) continue;  // a parameter the loss did not reach this micro-batch
    sums.push_back(grads_[i]);
    fresh.push_back(g);  // bf16 into fp32: foreach takes its per-tensor path, no fp32 temporaries
    g = at::Tensor();  // autograd allocates afresh: the buffer is never aliased
  }
  if (!sums.empty()) at::_foreach_add_(sums, fresh);
}

void AdamW::zero_grad() { release_gradients(); }

double AdamW::clip_grad_norm(double max_norm) {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> grads = current_gradients();
  double total = 0.0;
  if (!grads.empty()) {
    // Norms in fp32 whatever the gradients' dtype (a bf16 norm would round the clip coefficient).
    const auto norms = at::_foreach_norm(grads, 2, at::kFloat);
    total = at::stack(norms).to(at::kDouble).square().sum().sqrt().item<double>();
  }
  last_norm_ = total;
  norm_measured_ = true;
  clip_coef_ = 1.0;
  if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
    clip_coef_ = max_norm / (total + 1e-6);
    if (!use_kernel_) at::_foreach_mul_(grads_, clip_coef_);
  }
  return total;
}

// One pass of ATen's fused AdamW kernel per weight-decay group (decoupled decay,
// bias-corrected moments, the definition in the header) instead of a dozen foreach
// passes over all the fp32 state: fewer bytes moved and no full-size temporary for
// the denominator (12.8 GB at 3B parameters).
bool AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  if (!norm_measured_) clip_grad_norm(0.0);  // the non-finite check needs the norm
  norm_measured_ = false;
  if (!std::isfinite(last_norm_)) {
    // An inf/NaN gradient would poison the moments for good: skip, as ShardedAdamW does.
    log::warn("AdamW: gradient norm is ", last_norm_, " at step ", step_ + 1, "; the step is skipped");
    release_gradients();
    return false;
  }
  ++step_;
  if (use_kernel_) {
    kernel_update(lr);
    release_gradients();
    return true;
  }
  at::_foreach_add_(steps_, 1.0);
  for (const bool decayed : {true, false}) {
    std::vector<at::Tensor> masters, grads, exp_avg, exp_avg_sq, steps;
    for (size_t i = 0; i < masters_.size(); ++i) {
      if (decayed_[i] != decayed) continue;
      masters.push_back(masters_[i]);
      grads.push_back(grads_[i]);
      exp_avg.push_back(exp_avg_[i]);
      exp_avg_sq.push_back(exp_avg_sq_[i]);
      steps.push_back(steps_[i]);
    }
    if (masters.empty()) continue;
    at::_fused_adamw_(masters, grads, exp_avg, exp_avg_sq, /*max_exp_avg_sqs=*/{}, steps, lr, opt_.beta1,
                      opt_.beta2, decayed ? opt_.weight_decay : 0.0, opt_.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
  std::vector<at::Tensor> low_precision, their_masters;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].is_same(masters_[i])) continue;
    low_precision.push_back(params_[i]);
    their_masters.push_back(masters_[i]);
  }
  if (!low_precision.empty()) at::_foreach_copy_(low_precision, their_masters);
  release_gradients();
  return true;
}

// One kernel pass per tensor: masters, moments and the model's copy, the clipping
// coefficient applied to the gradient as it is read.
void AdamW::kernel_update(double lr) {
#ifdef XDISTILL_WITH_CUDA
  namespace xk = xd::kernels;
  using ops::kernel_args::dtype_or_throw;
  const c10::cuda::CUDAGuard guard(masters_.front().device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const double t = static_cast<double>(step_);
  for (size_t i = 0; i < masters_.size(); ++i) {
    xk::AdamWStepParams p{};
    p.master = masters_[i].data_ptr<float>();
    p.exp_avg = exp_avg_[i].data_ptr<float>();
    p.exp_avg_sq = exp_avg_sq_[i].data_ptr<float>();
    const at::Tensor& g = buffers_ ? grads_[i] : params_[i].grad();
    if (g.defined()) {
      XD_CHECK(g.is_contiguous() && g.numel() == masters_[i].numel(), "optimizer: the gradient of '", names_[i],
               "' is not a contiguous tensor of ", masters_[i].numel(), " elements");
      p.grad = g.data_ptr();
      p.grad_dtype = dtype_or_throw(g);
    }
    if (!params_[i].is_same(masters_[i])) {
      p.param = params_[i].data_ptr();
      p.param_dtype = dtype_or_throw(params_[i]);
    }
    p.n = masters_[i].numel();
    p.lr = static_cast<float>(lr);
    p.beta1 = static_cast<float>(opt_.beta1);
    p.beta2 = static_cast<float>(opt_.beta2);
    p.eps = static_cast<float>(opt_.eps);
    p.weight_decay = static_cast<float>(decayed_[i] ? opt_.weight_decay : 0.0);
    p.grad_scale = static_cast<float>(clip_coef_);
    p.bias_correction1 = static_cast<float>(1.0 - std::pow(opt_.beta1, t));
    p.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(opt_.beta2, t)));
    xk::adamw_step(p, stream);
    ops::kernel_args::check_launch("adamw_step");
  }
#else
  (void)lr;
  throw Error("optimizer: the CUDA AdamW kernel is not built");
#endif
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < names_.size(); ++i) {
    out.emplace_back("master/" + names_[i], masters_[i].detach());
    out.emplace_back("exp_avg/" + names_[i], exp_avg_[i]);
    out.emplace_back("exp_avg_sq/" + names_[i], exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, at::Tensor>& tensors, int64_t step) {
  at::NoGradGuard no_grad;
  auto fetch = [&](const std::string& key, const at::Tensor& like) {
    auto it = tensors.find(key);
    XD_CHECK(it != tensors.end(), "optimizer state: tensor '", key, "' is missing (was the checkpoint ",
             "written for another stage or model?)");
    XD_CHECK(it->second.sizes() == like.sizes(), "optimizer state: tensor '", key, "' has shape ",
             it->second.sizes(), ", expected ", like.sizes());
    return it->second;
  };
  for (size_t i = 0; i < names_.size(); ++i) {
    masters_[i].copy_(fetch("master/" + names_[i], masters_[i]));
    exp_avg_[i].copy_(fetch("exp_avg/" + names_[i], exp_avg_[i]));
    exp_avg_sq_[i].copy_(fetch("exp_avg_sq/" + names_[i], exp_avg_sq_[i]));
    if (!params_[i].is_same(masters_[i])) params_[i].copy_(masters_[i]);
  }
  step_ = step;
  for (auto& t : steps_) t.fill_(static_cast<double>(step));
}

}  // namespace xd::train
