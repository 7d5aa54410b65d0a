#!/usr/bin/env bash
# Issue 23: does the backbone's label-free objective (drawn occluders, `occluder_weight`) help the
# tasks started from it? Two backbones with one config, the objective off (0) and on (1), each
# promoted in a store of its own; then each task fine-tuned from each of them and scored the same way
# (scripts/backbone_runs.sh with STARTS=finetuned). Run it in the background with a log:
#
#   nohup bash scripts/occluder_runs.sh OUT [TASK...] > OUT.log 2>&1 &
#
# TASKS default to mask-face; EPOCHS (default 4) are the backbones' epochs, fewer than the
# default config's 12 so that both fit in an hour on the 2-core CPU. OUT/occluder-<weight>/ holds the
# backbone's training output and backbone_runs.sh's results (runs.csv, score.json per task, curves).
# The data root is $FACELAB_DATA_ROOT or ../shared/data.
set -euo pipefail
out=$(realpath -m "$1"); shift
tasks=("${@:-mask-face}"); tasks=(${tasks[@]})
here=$(dirname "$0")
root=$(realpath "${FACELAB_DATA_ROOT:-$here/../../shared/data}")
facelab=$(realpath "$here/../.venv/bin/facelab")
for weight in 0 1; do
  dir="$out/occluder-$weight"; mkdir -p "$dir"
  echo "{\"epochs\": ${EPOCHS:-4}, \"occluder_weight\": $weight}" > "$dir/backbone-config.json"
  began=$(date +%s)
  "$facelab" train --task backbone --data "$root" --store "$dir/store" --promote --config "$dir/backbone-config.json" \
    > "$dir/backbone-train.json" 2> "$dir/backbone-train.log"
  echo "backbone occluder_weight=$weight: $(( $(date +%s) - began )) s"; cat "$dir/backbone-train.json"
  STARTS=finetuned bash "$here/backbone_runs.sh" "$dir/store" "$dir" "${tasks[@]}"
done
