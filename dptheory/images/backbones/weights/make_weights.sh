#!/usr/bin/env bash
# Remake the committed photo-UNet weights from nothing, on the CPU: the eps network, then the chain of
# v-prediction fine-tunes that ends in the high-noise expert, then the pairing (model card: README.md here).
#
#   bash dptheory/images/backbones/weights/make_weights.sh [WORK_DIR]   # about 2 h 40 min on a 2-core CPU
#
# Every stage is deterministic for a torch version, a thread count and a CPU; each --init logs the sha256 of
# the weights it starts from, so the logs beside the committed files name the whole chain. The last two lines
# overwrite photo_unet32.{pt,json} and photo_unet32_high.{pt,json} in this folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-$(mktemp -d)}"
train="python -m dptheory.images.train --no-progress"
echo "working in $work" >&2
# 1. the eps network: 6000 steps on the 9 photos of dptheory.images.data.bundled_photos (44 min at 2 threads)
$train --prediction eps --photos bundled --threads 2 --out "$work/eps"
# 2. v-prediction on all 20 bundled photos, fine-tuned from the eps weights (24 + 17 + 44 min at 1 thread)
$train --steps 500 --warmup 30 --lr 2e-4 --init "$work/eps/photo_unet32.pt" --out "$work/v500"
$train --steps 700 --warmup 20 --lr 1e-4 --init "$work/v500/photo_unet32.pt" --out "$work/v1200"
$train --steps 4000 --warmup 50 --lr 1e-4 --loss-weight truncated-snr --init "$work/v1200/photo_unet32.pt" \
    --out "$work/v_tsnr"
# 3. the high-noise expert: the v network trained on the steps 400..999 only (28 min at 1 thread)
$train --min-step 400 --steps 3000 --warmup 50 --lr 1e-4 --init "$work/v_tsnr/photo_unet32.pt" --out "$work/high"
# 4. ship: the eps network as is, the expert in float16 with its switch step (chosen on training crops; 3 min)
cp "$work/eps/photo_unet32.pt" "$work/eps/photo_unet32.json" "$here/"
python -m dptheory.images.experts "$work/high/photo_unet32.pt" --low "$here/photo_unet32.pt"
