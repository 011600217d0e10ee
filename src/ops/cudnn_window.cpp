// cuDNN fused attention with a sliding window (see cudnn_window.h). Compiled without
// torch's precompiled header and outside the unity batches: the cudnn_frontend headers
// are large and bundle their own nlohmann copy.
#include "ops/cudnn_window.h"

#include "xdistill/util/error.h"

#if XD_HAVE_CUDNN_FRONTEND
#include <cuda_runtime_api.h>
#include <cudnn_frontend.h>

#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>
#endif

namespace xd::ops::cudnn_window {

#if XD_HAVE_CUDNN_FRONTEND
namespace {

namespace fe = cudnn_frontend;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kLse, kDout, kDq, kDk, kDv };

// A built graph, or why there is none.
struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
  std::string why_not;  // empty when the graph built
};

std::string key_of(const Problem& p, bool backward) {
  std::ostringstream s;
  auto layout = [&](const Layout& l) { s << l.heads << ':' << l.stride[0] << ',' << l.stride[1] << ',' << l.stride[2] << ',' << l.stride[3] << ';'; };
  s << (backward ? 'b' : 'f') << int(p.dtype) << '/' << p.device << '/' << p.batch << '/' << p.seq << '/' << p.head_dim
    << '/' << p.window << '/' << std::hexfloat << p.scale << std::defaultfloat << '/';
  for (const Layout* l : {&p.q, &p.k, &p.v, &p.o}) layout(*l);
  if (backward)
    for (const Layout* l : {&p.dout, &p.dq, &p.dk, &p.dv}) layout(*l);
  return s.str();
}

cudnnHandle_t handle_for(int device) {
  // One handle per thread and device (cuDNN handles are not to be shared between threads).
  thread_local std::map<int, cudnnHandle_t> handles;
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cudnnHandle_t h = nullptr;
  const cudnnStatus_t st = cudnnCreate(&h);
  XD_CHECK(st == CUDNN_STATUS_SUCCESS, "cuDNN: cudnnCreate failed on device ", device, ": ", cudnnGetErrorString(st));
  handles.emplace(device, h);
  return h;
}

std::shared_ptr<fe::graph::Tensor_attributes> input(fe::graph::Graph& g, const char* name, Uid uid, const Problem& p,
                                                     const Layout& l) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({p.batch, l.heads, p.seq, p.head_dim})
                      .set_stride({l.stride[0], l.stride[1], l.stride[2], l.stride[3]}));
}

void as_output(const std::shared_ptr<fe::graph::Tensor_attributes>& t, Uid uid, const Problem& p, const Layout& l) {
  t->set_output(true).set_uid(uid).set_dim({p.batch, l.heads, p.seq, p.head_dim}).set_stride(
      {l.stride[0], l.stride[1], l.stride[2], l.stride[3]});
}

fe::graph::Tensor_attributes lse_tensor(const Problem& p) {
  const int64_t H = p.q.heads, S = p.seq;
  return fe::graph::Tensor_attributes()
      .set_name("lse")
      .set_uid(kLse)
      .set_dim({p.batch, H, S, 1})
      .set_stride({H * S, S, 1, 1})
      .set_data_type(fe::DataType_t::FLOAT);
}

std::shared_ptr<fe::graph::Graph> new_graph(const Problem& p) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(p.dtype == Dtype::bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

// validate -> operation graph -> heuristics -> support -> plans; the first failure's
// message is the reason.
Plan finish(std::shared_ptr<fe::graph::Graph> g, cudnnHandle_t h) {
  Plan plan;
  auto fail = [&](const char* step, fe::error_t e) {
    plan.why_not = std::string(step) + ": " + e.get_message();
    return plan;
  };
  if (auto e = g->validate(); e.is_bad()) return fail("validate", e);
  if (auto e = g->build_operation_graph(h); e.is_bad()) return fail("build_operation_graph", e);
  if (auto e = g->create_execution_plans({fe::HeurMode_t::A}); e.is_bad()) return fail("create_execution_plans", e);
  if (auto e = g->check_support(); e.is_bad()) return fail("check_support", e);
  if (auto e = g->build_plans(h); e.is_bad()) return fail("build_plans", e);
  if (auto e = g->get_workspace_size(plan.workspace); e.is_bad()) return fail("get_workspace_size", e);
  plan.graph = std::move(g);
  return plan;
}

Plan build_forward(const Problem& p, cudnnHandle_t h) {
  auto g = new_graph(p);
  auto q = input(*g, "q", kQ, p, p.q), k = input(*g, "k", kK, p, p.k), v = input(*g, "v", kV, p, p.v);
  auto attrs = fe::graph::SDPA_attributes()
                   .set_name("window_forward")
                   .set_generate_stats(true)
                   .set_attn_scale(p.scale)
                   .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                   .set_diagonal_band_right_bound(0)
                   .set_diagonal_band_left_bound(static_cast<int>(p.window));
  auto [o, lse] = g->sdpa(q, k, v, attrs);
  as_output(o, kO, p, p.o);
  const auto l = lse_tensor(p);
  lse->set_output(true).set_uid(kLse).set_dim(l.get_dim()).set_stride(l.get_stride()).set_data_type(
      fe::DataType_t::FLOAT);
  return finish(std::move(g), h);
}

Plan build_backward(const Problem& p, cudnnHandle_t h) {
  auto g = new_graph(p);
  auto q = input(*g, "q", kQ, p, p.q), k = input(*g, "k", kK, p, p.k), v = input(*g, "v", kV, p, p.v);
  auto o = input(*g, "o", kO, p, p.o), dout = input(*g, "dout", kDout, p, p.dout);
  auto lse = g->tensor(lse_tensor(p));
  auto attrs = fe::graph::SDPA_backward_attributes()
                   .set_name("window_backward")
                   .set_attn_scale(p.scale)
                   .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                   .set_diagonal_band_right_bound(0)
                   .set_diagonal_band_left_bound(static_cast<int>(p.window));
  auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, lse, attrs);
  as_output(dq, kDq, p, p.dq);
  as_output(dk, kDk, p, p.dk);
  as_output(dv, kDv, p, p.dv);
  return finish(std::move(g), h);
}

// Graphs by problem, built once per process (building takes milliseconds to seconds).
const Plan& plan_for(const Problem& p, bool backward) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::unique_ptr<Plan>> plans;
  const std::string key = key_of(p, backward);
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  cudnnHandle_t h = handle_for(p.device);
  Plan built;
  try {
    built = backward ? build_backward(p, h) : build_forward(p, h);
  } catch (const std::exception& e) {  // the frontend throws on some malformed graphs
    built.why_not = e.what();
  }
  return *plans.emplace(key, std::make_unique<Plan>(std::move(built))).first->second;
}

void run(const Problem& p, bool backward, std::unordered_map<int64_t, void*>& pack, void* workspace, void* stream) {
  const Plan& plan = plan_for(p, backward);
  XD_CHECK(plan.graph, "cuDNN window attention: no graph for this problem (", plan.why_not, ")");
  cudnnHandle_t h = handle_for(p.device);
  const cudnnStatus_t st = cudnnSetStream(h, static_cast<cudaStream_t>(stream));
  XD_CHECK(st == CUDNN_STATUS_SUCCESS, "cuDNN: cudnnSetStream failed: ", cudnnGetErrorString(st));
  if (fe::error_t e = plan.graph->execute(h, pack, workspace); e.is_bad())
    throw Error("cuDNN window attention " + std::string(backward ? "backward" : "forward") +
                " failed: " + e.get_message());
}

bool supports(const Problem& p, bool backward, std::string* why) {
  const Plan& plan = plan_for(p, backward);
  if (why) *why = plan.why_not;
  return static_cast<bool>(plan.graph);
}

}  // namespace

bool compiled_in() { return true; }

bool supports_forward(const Problem& p, std::string* why) { return supports(p, false, why); }
bool supports_backward(const Problem& p, std::string* why) { return supports(p, true, why); }
int64_t forward_workspace(const Problem& p) { return plan_for(p, false).workspace; }
int64_t backward_workspace(const Problem& p) { return plan_for(p, true).workspace; }

void forward(const Problem& p, const void* q, const void* k, const void* v, void* o, float* lse, void* workspace,
             void* stream) {
  std::unordered_map<int64_t, void*> pack{{kQ, const_cast<void*>(q)}, {kK, const_cast<void*>(k)},
                                          {kV, const_cast<void*>(v)}, {kO, o}, {kLse, lse}};
  run(p, false, pack, workspace, stream);
}

void backward(const Problem& p, const void* q, const void* k, const void* v, const void* o, const void* dout,
              const float* lse, void* dq, void* dk, void* dv, void* workspace, void* stream) {
  std::unordered_map<int64_t, void*> pack{{kQ, const_cast<void*>(q)},       {kK, const_cast<void*>(k)},
                                          {kV, const_cast<void*>(v)},       {kO, const_cast<void*>(o)},
                                          {kDout, const_cast<void*>(dout)}, {kLse, const_cast<float*>(lse)},
                                          {kDq, dq},                        {kDk, dk},
                                          {kDv, dv}};
  run(p, true, pack, workspace, stream);
}

#else  // built without the cudnn_frontend headers

bool compiled_in() { return false; }
bool supports_forward(const Problem&, std::string* why) {
  if (why) *why = "built without cudnn_frontend";
  return false;
}
bool supports_backward(const Problem& p, std::string* why) { return supports_forward(p, why); }
int64_t forward_workspace(const Problem&) { return 0; }
int64_t backward_workspace(const Problem&) { return 0; }
void forward(const Problem&, const void*, const void*, const void*, void*, float*, void*, void*) {
  throw Error("cuDNN window attention: this build has no cudnn_frontend");
}
void backward(const Problem&, const void*, const void*, const void*, const void*, const void*, const float*, void*,
              void*, void*, void*, void*) {
  throw Error("cuDNN window attention: this build has no cudnn_frontend");
}

#endif

}  // namespace xd::ops::cudnn_window
