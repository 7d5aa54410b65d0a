#!/usr/bin/env bash
# Issue 23's comparison: each task trained from the promoted facelab backbone against the same config
# from random init, scored on the same test split. Run it in the background with a log:
#
#   nohup bash scripts/backbone_runs.sh STORE OUT [TASK...] > OUT.log 2>&1 &
#
# STORE must hold a promoted `backbone` run (`facelab train --task backbone --data ../shared/data
# --store STORE --promote`); its width is the tasks' width. OUT gets, per task and start, the
# submission, the score (score.json), the run id and the wall time (runs.csv), and per task the
# validation curves of both starts (<task>-curves.png). Tasks: age-gender,
# emotion (default: both), mask-face (the backbone frozen: a feature extractor for its 100 training
# images; scored on the Blitz val images, as there is no labelled test split: the validation metrics
# of the stored run's best epoch). The data root is $FACELAB_DATA_ROOT or ../shared/data.
# STARTS (default "backbone random") picks the starts; "finetuned" starts from the backbone without
# freezing it (what `backbone` already does for every task but mask-face):
#
#   STARTS="finetuned" bash scripts/backbone_runs.sh STORE OUT mask-face
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
    mask-face) echo "{\"image_size\": 64, \"width\": $width, \"epochs\": 30}" ;;
    *) echo "unknown task $1" >&2; exit 2 ;;
  esac
}
from_backbone() {  # the keys that start a task from the promoted backbone
  case "$1" in
    mask-face) echo '"backbone": "promoted", "freeze_backbone": true' ;;
    *) echo '"backbone": "promoted"' ;;
  esac
}
data() { case "$1" in age-gender) echo "$root/utkface" ;; emotion) echo "$root/fer2013" ;; mask-face) echo "$root/aiblitz_mask" ;; esac; }
truth() { case "$1" in age-gender) echo "$root/utkface" ;; emotion) echo "$root/fer2013/labels.csv" ;; esac; }

for task in "${tasks[@]}"; do
  for start in ${STARTS:-backbone random}; do
    dir="$out/$task-$start"; mkdir -p "$dir"
    base=$(config "$task")
    case "$start" in
      backbone) base="${base%\}}, $(from_backbone "$task")}" ;;
      finetuned) base="${base%\}}, \"backbone\": \"promoted\"}" ;;
      random) ;;
      *) echo "unknown start $start" >&2; exit 2 ;;
    esac
    echo "$base" > "$dir/config.json"
    began=$(date +%s)
    "$facelab" train --task "$task" --data "$(data "$task")" --store "$store" --config "$dir/config.json" > "$dir/train.json" 2> "$dir/train.log"
    seconds=$(( $(date +%s) - began ))
    run=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$dir/train.json")
    if [ "$task" = mask-face ]; then
      cp "$dir/train.json" "$dir/score.json"  # no labelled test split: the best epoch's validation metrics
    else
      "$facelab" submit --task "$task" --data "$(data "$task")" --store "$store" --run "$run" --out "$dir/submission.csv" > /dev/null 2>> "$dir/train.log"
      "$facelab" score --task "$task" --submission "$dir/submission.csv" --truth "$(truth "$task")" --plots "$dir/plots" > "$dir/score.json" 2>> "$dir/train.log"
    fi
    echo "$task,$start,$run,$seconds" >> "$out/runs.csv"
    echo "$task $start: run $run, ${seconds} s"; cat "$dir/score.json"
  done
done
"$(dirname "$facelab")/python" "$(dirname "$0")/backbone_curves.py" "$store" "$out"  # OUT/<task>-curves.png
