#include "xdistill/train/adamw.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "xdistill/util/error.h"

namespace xd::train {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options) : opt_(options) {
  XD_CHECK(!params.empty(), "optimizer: no parameters to train");
  at::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    XD_CHECK(p.is_floating_point(), "optimizer: parameter '", name, "' is not floating point");
    names_.push_back(name);
    params_.push_back(p);
    // fp32 parameters are their own master; others get an fp32 copy.
    masters_.push_back(p.scalar_type() == at::kFloat ? p : p.detach().to(at::kFloat).clone());
    grads_.push_back(at::zeros_like(masters_.back()));
    exp_avg_.push_back(at::zeros_like(masters_.back()));
    exp_avg_sq_.push_back(at::zeros_like(masters_.back()));
    decayed_.push_back(opt_.decay_vectors || p.dim() >= 2);
  }
}

int64_t AdamW::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.numel();
  return n;
}

void AdamW::accumulate_gradients() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& g = params_[i].mutable_grad();
    if (!g.defined()) continue;  // a parameter the loss did not reach this micro-batch
    grads_[i].add_(g);
    g = at::Tensor();  // autograd allocates afresh: the buffer is never aliased
  }
}

void AdamW::zero_grad() {
  for (auto& g : grads_) g.zero_();
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
}

double AdamW::clip_grad_norm(double max_norm) {
  at::NoGradGuard no_grad;
  const auto norms = at::_foreach_norm(grads_, 2);
  const double total = at::stack(norms).to(at::kDouble).square().sum().sqrt().item<double>();
  if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
    at::_foreach_mul_(grads_, max_norm / (total + 1e-6));
  }
  return total;
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(step_));
  if (opt_.weight_decay != 0.0) {
    std::vector<at::Tensor> decayed;
    for (size_t i = 0; i < masters_.size(); ++i)
      if (decayed_[i]) decayed.push_back(masters_[i]);
    if (!decayed.empty()) at::_foreach_mul_(decayed, 1.0 - lr * opt_.weight_decay);
  }
  at::_foreach_lerp_(exp_avg_, grads_, 1.0 - opt_.beta1);
  at::_foreach_mul_(exp_avg_sq_, opt_.beta2);
  at::_foreach_addcmul_(exp_avg_sq_, grads_, grads_, 1.0 - opt_.beta2);
  auto denom = at::_foreach_sqrt(exp_avg_sq_);
  at::_foreach_div_(denom, std::sqrt(bc2));
  at::_foreach_add_(denom, opt_.eps);
  at::_foreach_addcdiv_(masters_, exp_avg_, denom, -lr / bc1);
  for (size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].is_same(masters_[i])) params_[i].copy_(masters_[i]);
  for (auto& g : grads_) g.zero_();
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
}

}  // namespace xd::train
