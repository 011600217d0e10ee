# Sourced by every xdistill sbatch file. sbatch runs a copy of the job script from
# its spool directory, so the scripts find this file through XDISTILL_HOME (default:
# the directory sbatch was called from, which should be the repository root).
#
# Provides:
#   xd_setup                 prints the job, creates run/log directories, shows NCCL_*
#   xd_srun_with_requeue ARGS...
#                            srun one task per GPU running `xdistill ARGS...`; on the
#                            preemption warning (USR1, from #SBATCH --signal=B:USR1@T)
#                            sends XD_STOP_SIGNAL (default TERM, on which `xdistill
#                            train` checkpoints and exits) to the tasks through srun,
#                            then requeues the job, which resumes (train --resume)
#                            from the newest complete checkpoint in its run directory.

: "${XDISTILL_HOME:=${SLURM_SUBMIT_DIR:-$PWD}}"
: "${XDISTILL:=$XDISTILL_HOME/build/xdistill}"
: "${XD_STOP_SIGNAL:=TERM}"

xd_setup() {
  echo "== $(date -Is) job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}) array ${SLURM_ARRAY_TASK_ID:--}" \
       "restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-?}"
  if [[ ! -x "$XDISTILL" ]]; then
    echo "error: $XDISTILL is not an executable: build xdistill or set XDISTILL=/path/to/xdistill" >&2
    exit 1
  fi
  # NCCL settings are the user's: printed for the record, never overridden here.
  env | grep -E '^(NCCL_|GLOO_SOCKET_IFNAME)' | sort | sed 's/^/   /' || true
}

xd_srun_with_requeue() {
  local requeue=0 rc=0 srun_pid
  trap 'echo "== $(date -Is) USR1: preemption or time limit ahead; SIG$XD_STOP_SIGNAL to the ranks";
        requeue=1; kill -s "$XD_STOP_SIGNAL" "$srun_pid" 2>/dev/null' USR1
  # --kill-on-bad-exit: one failing rank ends the step instead of leaving the
  # others blocked in a collective until NCCL's timeout.
  srun --kill-on-bad-exit=1 --label "$XDISTILL" "$@" &
  srun_pid=$!
  # `wait` returns early (status > 128) when the trap runs: wait again until srun is done.
  while true; do
    wait "$srun_pid"
    rc=$?
    kill -0 "$srun_pid" 2>/dev/null || break
  done
  trap - USR1
  if [[ $requeue == 1 ]]; then
    echo "== $(date -Is) training exited with $rc after the signal; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  return "$rc"
}
