#!/usr/bin/env bash
# One prepared GPU check (H200 through the device tool; any CUDA machine with the repo's requirements works):
#   1. the end-to-end and model tests on the GPU machine,
#   2. training throughput of the seed recipe (resnet152, 512 px, batch 16, heavy augmentation) in bf16,
#      channels_last on/off, 8 vs 16 dataloader workers -- images/s and peak GPU memory from the run's metrics,
#   3. a real fine-tune: tf_efficientnet_lite0 ImageNet weights on flowers5 at 224 px, bf16 -> val accuracy.
# Writes $OUT/gpu_check.log and $OUT/summary.txt. Runtime about 6 minutes on an H200.
#   SMOKE=1 bash benchmarks/gpu/gpu_check.sh    # a few steps on CPU: checks the script itself
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_check_out}; mkdir -p "$OUT"
CARRY=${CARRY:-.gpu_carry}
if [ -d "$CARRY/whl" ] && [ -z "${SMOKE:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$CARRY"/whl/*.whl && export PYTHONPATH=/tmp/site
fi
PY=${PY:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 HF_HOME=/tmp/hf_home
log="$OUT/gpu_check.log"; summary="$OUT/summary.txt"; : > "$summary"
say() { echo "$*" | tee -a "$summary"; }

say "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$summary"
$PY -c "import torch, transformers, timm, datasets; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'transformers', transformers.__version__, 'timm', timm.__version__, 'datasets', datasets.__version__)" 2>&1 | tee -a "$summary"

if [ -z "${SMOKE:-}" ]; then
  say "== tests (e2e, model) on the GPU machine"
  $PY -m pytest -q -x tests/test_train_e2e.py tests/test_model.py -p no:cacheprovider >> "$log" 2>&1
  tail -1 "$log" | tee -a "$summary"
fi

say "== throughput: seed recipe, resnet152 (random init: same speed as pretrained), 512 px"
N=${N_IMAGES:-3200}; [ -n "${SMOKE:-}" ] && N=40
$PY - "$N" <<'PYEOF' >> "$log" 2>&1
import os, sys, numpy as np
from PIL import Image
n = int(sys.argv[1]); rng = np.random.default_rng(0)
for split, count in (("train", n), ("val", max(n // 10, 20))):
    for i in range(count):
        d = f"/tmp/synth/{split}/c{i % 10}"; os.makedirs(d, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(f"{d}/{i}.jpg", quality=90)
PYEOF
extra=(); [ -n "${SMOKE:-}" ] && extra=(--image_size 64 --train_resize 72 72 --per_device_train_batch_size 4 --max_steps 2 --use_cpu true)
for variant in "bf16 channels_last 8" "bf16 channels_last 16" "bf16 nchw 16" "fp32 channels_last 16"; do
  set -- $variant
  prec=(); [ "$1" = bf16 ] && [ -z "${SMOKE:-}" ] && prec=(--bf16 true)
  cl=false; [ "$2" = channels_last ] && cl=true
  rm -rf /tmp/run_tp
  timeout 600 $PY train_hf.py --config configs/seed_resnet152.yaml --train_dir /tmp/synth/train \
    --validation_dir /tmp/synth/val --output_dir /tmp/run_tp --model_name_or_path resnet152 --pretrained false \
    --num_train_epochs 1 --save_strategy no --load_best_model_at_end false --report_to none \
    --dataloader_num_workers "$3" --channels_last "$cl" "${prec[@]}" "${extra[@]}" >> "$log" 2>&1
  $PY -c "
import json; r = json.load(open('/tmp/run_tp/all_results.json'))
print(f'$1 $2 workers=$3: {r[\"train_samples_per_second\"]:.1f} train images/s, peak GPU memory {r.get(\"peak_gpu_memory_gb\", \"n/a\")} GB')
" 2>&1 | tee -a "$summary"
done

say "== fine-tune: tf_efficientnet_lite0 (ImageNet) on flowers5_128, 224 px, bf16"
flowers="$CARRY/flowers5_128"; weights="$CARRY/tf_efficientnet_lite0.in1k"
[ -d "$flowers" ] || flowers=../shared/data/flowers5_128
[ -d "$weights" ] || weights=../shared/weights/tf_efficientnet_lite0.in1k
ft=(--num_train_epochs 5); [ -n "${SMOKE:-}" ] && ft=(--max_steps 2 --use_cpu true --image_size 64)
[ -z "${SMOKE:-}" ] && ft+=(--bf16 true)
rm -rf /tmp/run_ft
timeout 600 $PY train_hf.py --train_dir "$flowers" --output_dir /tmp/run_ft --model_name_or_path "$weights" \
  --image_size 224 --optim sgd --optim_args momentum=0.9 --learning_rate 0.01 --weight_decay 1e-4 \
  --per_device_train_batch_size 64 --dataloader_num_workers 12 --drop_rate 0.2 --report_to none \
  --validation_split 0.15 --seed 0 "${ft[@]}" >> "$log" 2>&1
$PY -c "
import json; r = json.load(open('/tmp/run_ft/all_results.json'))
print(f'val accuracy {r[\"eval_accuracy\"]:.4f}, macro F1 {r[\"eval_f1_macro\"]:.4f}, {r[\"eval_samples\"]} val images, train {r[\"train_runtime\"]:.0f} s')
" 2>&1 | tee -a "$summary"
cp /tmp/run_ft/report/curves.png /tmp/run_ft/report/confusion_matrix.png "$OUT/" 2>/dev/null || true  # 8 files come back at most
