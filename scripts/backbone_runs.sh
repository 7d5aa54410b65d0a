#!/usr/bin/env bash
# Issue 23's comparison: each task trained from the promoted facelab backbone against the same config
# from random init, scored on the same test split. Run it in the background with a log:
#
#   nohup bash scripts/backbone_runs.sh STORE OUT [TASK...] > OUT.log 2>&1 &
#
# STORE must hold a promoted `backbone` run (`facelab train --task backbone --data ../shared/data
# --store STORE --promote`); its width is the tasks' width. OUT gets, per task and start, the
# submission, the score (score.json), the run id and the wall time (runs.csv). Tasks: age-gender,
# emotion (default: both). The data root is $FACELAB_DATA_ROOT or ../shared/data.
set -euo pipefail
store=$(realpath "$1"); out=$(realpath -m "$2"); shift 2
tasks=("${@:-age-gender emotion}"); tasks=(${tasks[@]})
root=$(realpath "${FACELAB_DATA_ROOT:-$(dirname "$0")/../../shared/data}")
facelab=$(realpath "$(dirname "$0")/../.venv/bin/facelab")
width=$(python3 -c "import json,sys,glob; print(json.load(open(sorted(glob.glob(sys.argv[1] + '/backbone/runs/*/model/config.json'))[-1]))['width'])" "$store")
mkdir -p "$out"
[ -f "$out/runs.csv" ] || echo "task,start,run_id,seconds" > "$out/runs.csv"

config() {  # the task's CPU-sized config, as in the README's measured-scores table
  case "$1" in
    age-gender) echo "{\"image_size\": 64, \"width\": $width, \"epochs\": 10}" ;;
    emotion) echo "{\"arch\": \"resnet\", \"width\": $width, \"image_size\": 64, \"epochs\": 6, \"optimizer\": \"adamw\", \"lr\": 0.002, \"weight_decay\": 0.0005, \"schedule\": \"cosine\", \"warmup_epochs\": 1, \"erase\": 0.25, \"batch_size\": 128}" ;;
    *) echo "unknown task $1" >&2; exit 2 ;;
  esac
}
data() { case "$1" in age-gender) echo "$root/utkface" ;; emotion) echo "$root/fer2013" ;; esac; }
truth() { case "$1" in age-gender) echo "$root/utkface" ;; emotion) echo "$root/fer2013/labels.csv" ;; esac; }

for task in "${tasks[@]}"; do
  for start in backbone random; do
    dir="$out/$task-$start"; mkdir -p "$dir"
    base=$(config "$task")
    if [ "$start" = backbone ]; then base="${base%\}}, \"backbone\": \"promoted\"}"; fi
    echo "$base" > "$dir/config.json"
    began=$(date +%s)
    "$facelab" train --task "$task" --data "$(data "$task")" --store "$store" --config "$dir/config.json" > "$dir/train.json" 2> "$dir/train.log"
    seconds=$(( $(date +%s) - began ))
    run=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$dir/train.json")
    "$facelab" submit --task "$task" --data "$(data "$task")" --store "$store" --run "$run" --out "$dir/submission.csv" > /dev/null 2>> "$dir/train.log"
    "$facelab" score --task "$task" --submission "$dir/submission.csv" --truth "$(truth "$task")" --plots "$dir/plots" > "$dir/score.json" 2>> "$dir/train.log"
    echo "$task,$start,$run,$seconds" >> "$out/runs.csv"
    echo "$task $start: run $run, ${seconds} s"; cat "$dir/score.json"
  done
done
