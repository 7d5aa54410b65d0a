#!/usr/bin/env bash
# Issue 23 part 2, fusion: the fairface task (multi-head MLP) on dlib's encodings alone against the
# same config on dlib's encodings with the facelab backbone's trunk features appended
# (`facelab data fuse`), scored on the same test faces. Run it in the background with a log:
#
#   nohup bash scripts/fusion_runs.sh STORE OUT > OUT.log 2>&1 &
#
# STORE must hold a promoted `backbone` run. The FairFace-layout data is converted with the
# backbone's own UTKFace split (`--split utkface`: the test faces are the age-gender task's, and
# the backbone never trained on them) into OUT/dlib once (dlib HOG + both encodings: the slow step),
# then fused into OUT/fused. OUT gets, per input, the config, train log, submission, score.json,
# plots and the wall time (runs.csv). The data root is $FACELAB_DATA_ROOT or ../shared/data.
set -euo pipefail
store=$(realpath "$1"); out=$(realpath -m "$2")
facelab=$(realpath "$(dirname "$0")/../.venv/bin/facelab")
mkdir -p "$out"
[ -f "$out/runs.csv" ] || echo "input,run_id,seconds" > "$out/runs.csv"
[ -f "$out/dlib/embeddings.parquet" ] || "$facelab" data convert --task fairface --split utkface --out "$out/dlib" > "$out/convert.json"
[ -f "$out/fused/embeddings.parquet" ] || "$facelab" data fuse --data "$out/dlib" --out "$out/fused" --store "$store" > "$out/fuse.json"

for input in dlib fused; do
  dir="$out/run-$input"; mkdir -p "$dir"
  echo '{}' > "$dir/config.json"  # the task's default config (the seed's): 30 epochs, width 512, baselines
  began=$(date +%s)
  "$facelab" train --task fairface --data "$out/$input" --store "$store" --config "$dir/config.json" > "$dir/train.json" 2> "$dir/train.log"
  seconds=$(( $(date +%s) - began ))
  run=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$dir/train.json")
  "$facelab" submit --task fairface --data "$out/$input" --store "$store" --run "$run" --out "$dir/submission.csv" > /dev/null 2>> "$dir/train.log"
  "$facelab" score --task fairface --submission "$dir/submission.csv" --truth "$out/$input/test_truth.csv" --plots "$dir/plots" > "$dir/score.json" 2>> "$dir/train.log"
  cp "$store/fairface/runs/$run/model/comparison.csv" "$dir/comparison.csv" 2>/dev/null || true
  echo "$input,$run,$seconds" >> "$out/runs.csv"
  echo "$input: run $run, ${seconds} s"; cat "$dir/score.json"
done
