// Every option of a training recipe, declared once with its default and help.
// Defaults follow ../spec/method.md; "we decide" choices of the spec are options here.
#include "xdistill/train/options.h"

namespace xd::train {
using config::field;
using config::Schema;
using config::Type;

const Schema& recipe_schema() {
  static const Schema schema = [] {
    Schema s("train recipe");
    s.add("run.name", Type::String, "xdistill", "run name, used in logs and metrics");
    s.add_required("run.dir", Type::String, "run directory: checkpoints, logs, metrics.jsonl");
    s.add("run.output", Type::String, "~", "where the final model is saved (unset: RUN_DIR/final)");
    s.add("run.seed", Type::Int, "1234", "seed for initialisation, data order and dropout");
    s.add("run.device", Type::String, "auto", "cpu, cuda, or auto (cuda when available)", {"auto", "cpu", "cuda"});
    s.add("run.log_every", Type::Int, "10", "steps between progress lines and metrics records");
    s.add("run.stop_after_steps", Type::Int, "0",
          "stop (checkpoint, exit 0) after this many steps of one invocation; continue with --resume (0 = off)");
    s.add("run.peak_tflops", Type::Float, "989.0",
          "the device's peak dense bf16 TFLOP/s, for model-FLOPs utilisation (H100/H200 SXM: 989)");

    s.add("stage", Type::String, "distill",
          "align: Stage I layer-wise alignment; distill: Stage II end-to-end; pretrain: plain CE (for demo teachers)",
          {"align", "distill", "pretrain"});

    s.add_required("teacher.path", Type::String, "teacher checkpoint directory (Hugging Face layout)");
    s.add("teacher.dtype", Type::String, "bf16", "teacher compute dtype", {"bf16", "f32"});
    s.add("teacher.cache", Type::String, "~", "top-k teacher cache written by `xdistill teacher-cache`; unset = run the teacher online");
    s.add("teacher.create_tiny", Type::Bool, "false", "create a tiny random Llama teacher at teacher.path if none is there (tiny recipes)");
    s.add("teacher.random_shape", Type::String, "~",
          "benchmarks: instead of loading teacher.path, build a random-weight teacher of this named shape in "
          "memory (llama-3b: Llama-3.2-3B, llama-8b: Llama-3.1-8B, tiny)",
          {"llama-3b", "llama-8b", "tiny"});

    s.add("student.init", Type::String, "~", "student checkpoint to start from (theta(0) for experts); unset = build from the teacher");
    s.add("student.window", Type::Int, "512", "sliding-window size of the local branch");
    s.add("student.sinks", Type::Int, "4", "number of sink tokens (first tokens of each row)");
    s.add("student.feature_map", Type::String, "hedgehog", "feature map on q and k", {"hedgehog", "hedgehog_pm"});
    s.add("student.feature_dim", Type::Int, "0", "feature dimension d_feat (0 = head dim)");
    s.add("student.gate_softcap", Type::Float, "15.0", "soft-cap a of the gate pre-activations: a*tanh(x/a)");
    s.add("student.forget_init_min", Type::Float, "0.9", "sigma(f) at init, lowest head");
    s.add("student.forget_init_max", Type::Float, "0.999", "sigma(f) at init, highest head");
    s.add("student.input_gate_bias", Type::Float, "-2.0", "initial input-gate bias b_i");
    s.add("student.output_gate_bias", Type::Float, "-2.0", "initial c_h of the mixing gate (negative: local branch dominates)");
    s.add("student.chunk_size", Type::Int, "64", "mLSTM chunk size", {"64", "128"});

    s.add_records("data.mixture",
                  {field("path", Type::String, "~", "directory of prepared token shards (`xdistill data prepare`)"),
                   field("weight", Type::Float, "1.0", "sampling weight (normalised over the mixture)"),
                   field("name", Type::String, "\"\"", "display name")},
                  "weighted list of shard sets; the per-domain mixtures of the paper are such lists");
    s.add("data.seq_len", Type::Int, "4096", "context length of packed rows");
    s.add("data.tokenizer", Type::String, "~", "tokenizer directory whose fingerprint the shards must match (unset: not checked)");
    s.add("data.synthetic_vocab", Type::Int, "0",
          "> 0: train on synthetic rows over this many token ids instead of data.mixture (tiny recipes, benchmarks)");
    s.add("data.synthetic_rows", Type::Int, "0",
          "> 0: the synthetic rows repeat with this period (a fixed batch when equal to the rows per step)");

    s.add("optim.lr", Type::Float, "1e-5", "peak learning rate");
    s.add("optim.min_lr", Type::Float, "1e-5", "final learning rate of the cosine schedule");
    s.add("optim.weight_decay", Type::Float, "0.1", "AdamW weight decay");
    s.add("optim.beta1", Type::Float, "0.9", "AdamW beta1");
    s.add("optim.beta2", Type::Float, "0.95", "AdamW beta2");
    s.add("optim.eps", Type::Float, "1e-8", "AdamW epsilon");
    s.add("optim.grad_clip", Type::Float, "1.0", "global gradient-norm clip (0 = off)");

    s.add("schedule.kind", Type::String, "warmup_constant", "learning-rate schedule", {"warmup_cosine", "warmup_constant"});
    s.add("schedule.warmup_steps", Type::Int, "100", "linear warm-up steps");
    s.add_required("schedule.steps", Type::Int, "total optimizer steps");

    s.add("batch.micro_batch", Type::Int, "1", "rows per micro-batch per rank");
    s.add("batch.grad_accum", Type::Int, "1", "micro-batches accumulated per optimizer step");

    s.add("loss.ce_weight", Type::Float, "0.9", "gamma: weight of next-token cross-entropy (Stage II)");
    s.add("loss.kl_weight", Type::Float, "0.1", "beta: weight of the top-k KL(teacher || student) (Stage II)");
    s.add("loss.top_k", Type::Int, "256", "k of the teacher's top-k distribution");
    s.add("loss.temperature", Type::Float, "1.0", "distillation temperature");

    s.add("precision.compute", Type::String, "bf16", "compute dtype of the student", {"bf16", "f32"});
    s.add("precision.activation_checkpointing", Type::Bool, "false", "recompute each layer in the backward pass");

    s.add("dist.shard_optimizer", Type::String, "auto",
          "data parallelism (several processes, see docs/cluster.md): true shards the fp32 master weights, AdamW "
          "moments and gradients over the ranks (reduce-scatter in the backward pass, all-gather of the weights); "
          "false keeps them whole on every rank (all-reduce); auto = true when there is more than one rank",
          {"auto", "true", "false"});
    s.add("dist.bucket_mb", Type::Float, "100",
          "MiB of fp32 gradient per reduction bucket (buckets are reduced while the backward pass goes on); "
          "keep it when resuming a sharded checkpoint (its shards are cut by bucket)");

    s.add("checkpoint.every", Type::Int, "500",
          "steps between checkpoints, and one at the end of the schedule (0: none of these, e.g. for benchmarks; "
          "a stop by signal or run.stop_after_steps still writes one)");
    s.add("checkpoint.keep", Type::Int, "3", "how many recent checkpoints to keep");
    return s;
  }();
  return schema;
}

}  // namespace xd::train
