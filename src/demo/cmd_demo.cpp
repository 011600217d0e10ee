// `xdistill demo`: the README's main job (see include/xdistill/demo/demo.h).
#include "xdistill/cli/commands.h"
#include "xdistill/demo/demo.h"

namespace xd::cli {

void add_demo_command(CLI::App& app) {
  auto o = std::make_shared<demo::DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "end-to-end distillation on an embedded, generated default (no download)");
  cmd->add_option("--out", o->out, "output directory (re-running resumes)")->capture_default_str();
  cmd->add_option("--size", o->size, "tiny (CPU, minutes) or small (GPU)")
      ->check(CLI::IsMember({"tiny", "small"}))->capture_default_str();
  cmd->add_option("--device", o->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--steps-scale", o->steps_scale, "multiply every training stage's steps (CI uses < 1)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--eval-items", o->eval_items, "items per evaluation task (0: the size's default)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the corpus and the teacher")->capture_default_str();
  // Hidden: for tuning the corpus and the teacher's training without the distillation.
  cmd->add_option("--stop-after", o->stop_after, "stop after this stage")->check(CLI::IsMember({"teacher"}))->group("");
  cmd->add_option("--pretrain-set", o->pretrain_overrides, "KEY=VALUE recipe setting of the teacher's pretraining")
      ->group("");
  cmd->callback([o] {
    const int rc = demo::run_demo(*o);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace xd::cli
