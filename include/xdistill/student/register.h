// Makes the student loadable everywhere (torch-free declaration for command files).
#pragma once

namespace xd::student {
// Registers the "xlstm_hybrid" mixer and model type with the models module, so that
// load_model (info, logits, generate, eval) accepts a student wherever it accepts a
// teacher. Idempotent; the CLI calls it once at start-up (add_train_command).
void register_student();
}  // namespace xd::student
