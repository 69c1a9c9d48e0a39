#!/usr/bin/env bash
# Prepare what the GPU check needs on the device machine (which has torch/CUDA but neither `datasets` nor
# `evaluate`, an older transformers, and no network): wheels for Python 3.12 + the real weights + flowers.
#   bash benchmarks/gpu/fetch_carry.sh      # writes .gpu_carry/ (git-ignored; about 55 MB)
# then: device run with carry [".gpu_carry"] and command "bash benchmarks/gpu/gpu_check.sh".
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu_carry/whl
grep -qx '/.gpu_carry/' .git/info/exclude 2>/dev/null || echo '/.gpu_carry/' >> .git/info/exclude
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform any)
for pkg in transformers==5.24.0 timm==1.0.31 datasets==5.2.0 evaluate==0.4.6 huggingface_hub==2.4.0 \
           dill==0.4.0 multiprocess==0.70.18 xxhash==3.6.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .gpu_carry/whl "$pkg"
done
cp -r ../shared/weights/tf_efficientnet_lite0.in1k .gpu_carry/
cp -r ../shared/data/flowers5_128 .gpu_carry/
du -sh .gpu_carry
