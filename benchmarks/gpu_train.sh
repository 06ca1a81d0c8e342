#!/usr/bin/env bash
# Full-size training step per strategy on this node's GPUs: seconds per step, MFU and peak GPU memory per process,
# for DDP and DeepSpeed ZeRO-2 (launched as the README launches them), trainable = identity, lora and full.
#
#   bash benchmarks/gpu_train.sh [WHEELS_DIR]          # from the repository root; ~10 minutes on one H100
#
# For a GPU machine with PyTorch but no network: on a machine with network and the same Python version,
#   pip download --no-deps -d wheels/ diffusers==0.42.1 accelerate==1.15.0 peft deepspeed==0.19.8
# (and timm + the torchvision wheel of the GPU machine's torch, see benchmarks/README.md), copy the repository with
# wheels/ over, and run this script: it installs what is missing from WHEELS_DIR (default wheels/) without network.
# Random weights, built on the GPU (nothing downloaded); 49×480×720, bf16 autocast, gradient checkpointing, batch 1
# per GPU. A configuration that does not fit says so in its row. Not run by the tests (no GPU in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-wheels}
if ! python -c "import diffusers, accelerate, peft, deepspeed" 2> /dev/null; then
  pip install --no-index --no-deps "$WHEELS"/*   # the carried wheels (and deepspeed's source archive)
fi
pip install --no-deps --no-build-isolation -e . > /dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} HF_HUB_OFFLINE=1
for trainable in identity lora full; do
  python benchmarks/train_strategies.py --size full --trainable "$trainable" --steps "${STEPS:-3}"
done
