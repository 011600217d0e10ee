#!/usr/bin/env bash
# Submits the whole pipeline with dependencies: Stage I -> expert array -> merge -> eval.
# Run from the repository root; see docs/cluster.md. Prints the job ids.
#   STAGE1_RECIPE=... DOMAINS=... TEACHER=... TASKS=... RUN=runs/llama8b scripts/slurm/pipeline.sh
set -euo pipefail
: "${STAGE1_RECIPE:?}" "${DOMAINS:?}" "${TEACHER:?}" "${TASKS:?}" "${RUN:?}"
cd "${XDISTILL_HOME:-$PWD}"
mkdir -p logs  # sbatch does not create the directory of --output
here=scripts/slurm
theta0="$RUN/stage1/final"
n=$(grep -c . "$DOMAINS")

s1=$(RECIPE="$STAGE1_RECIPE" RUN_DIR="$RUN/stage1" sbatch --parsable "$here/stage1_align.sbatch")
experts=$(DOMAINS="$DOMAINS" THETA0="$theta0" RUN_ROOT="$RUN/experts" \
  sbatch --parsable --dependency="afterok:$s1" --array="0-$((n - 1))" "$here/expert_array.sbatch")
expert_dirs=$(awk -v r="$RUN/experts" 'NF { printf "%s/%s/final ", r, $1 }' "$DOMAINS")
merge=$(EXPERTS="$expert_dirs" THETA0="$theta0" OUT="$RUN/merged" METHOD="${METHOD:-linear}" \
  sbatch --parsable --dependency="afterok:$experts" "$here/merge.sbatch")
eval_job=$(TEACHER="$TEACHER" STUDENTS="$RUN/merged $expert_dirs" TASKS="$TASKS" OUT_DIR="$RUN/eval" \
  sbatch --parsable --dependency="afterok:$merge" "$here/eval.sbatch")
echo "stage1 $s1  experts $experts  merge $merge  eval $eval_job"
