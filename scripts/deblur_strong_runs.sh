#!/usr/bin/env bash
# Issue 23, de-blurring at strong blur: real UTKFace faces blurred with `--blur strong` (Gaussian
# sigma 2.5-5 or motion 13-21 px), the multi-scale residual U-Net (`arch: multiscale`) trained from
# random init, its test submission scored against the originals, and the blurred inputs themselves
# scored the same way (the do-nothing baseline). Run it in the background with a log:
#
#   nohup bash scripts/deblur_strong_runs.sh STORE OUT > OUT.log 2>&1 &
#
# OUT gets the data (OUT/data), the config, the train log, the submission, both scores and the wall
# time (seconds.txt). The data root is $FACELAB_DATA_ROOT or ../shared/data.
set -euo pipefail
store=$(realpath -m "$1"); out=$(realpath -m "$2")
facelab=$(realpath "$(dirname "$0")/../.venv/bin/facelab")
mkdir -p "$out"
[ -d "$out/data/test" ] || "$facelab" data convert --task deblur --out "$out/data" --n 1000 --seed 0 --blur strong > "$out/convert.json"
echo '{"arch": "multiscale", "channels": 16, "scale_blocks": 2, "epochs": 12}' > "$out/config.json"
began=$(date +%s)
"$facelab" train --task deblur --data "$out/data" --store "$store" --config "$out/config.json" > "$out/train.json" 2> "$out/train.log"
echo $(( $(date +%s) - began )) > "$out/seconds.txt"
run=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$out/train.json")
"$facelab" submit --task deblur --data "$out/data" --store "$store" --run "$run" --out "$out/submission" > /dev/null 2>> "$out/train.log"
"$facelab" score --task deblur --submission "$out/submission" --truth "$out/data/test/original_truth" > "$out/score.json"
"$facelab" score --task deblur --submission "$out/data/test/blur" --truth "$out/data/test/original_truth" > "$out/blurred-score.json"
cat "$out/score.json" "$out/blurred-score.json"
