#!/usr/bin/env bash
# On the lent H200 (third of three calls; see ../shared/gpu/README.md): the extra packages are
# unpacked in /tmp/site, the model's first half is /tmp/part.aa and .m2/part.ab came with this call.
# Runs the training-backend benchmark, then a 3-round loop with the unsloth backend, GRPO included.
# Env: MODEL (default the real GGUF; tiny:llama-1.5b needs LOOP_TINY_TOKENIZER=a folder with the
# SmolLM2 tokenizer files, e.g. a carried copy), TAG, STEPS, BACKENDS (NAME@GC, e.g. unsloth@off),
# METHODS. UNSLOTH_PADDING_CHOICE=padded forces unsloth's padded SFT batches. `sft`, `sft7`, `sftdef`: SFT-only rows
# (1.5B, 7B shapes, the defaults); `grpoeager`; `x2`: train.launcher on nvidia-h200-x2.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -f .m2/part.ab ]; then  # the real model's modes; tiny: rows need only LOOP_TINY_TOKENIZER
  cat /tmp/part.aa .m2/part.ab > /tmp/smollm2.gguf && sha256sum /tmp/smollm2.gguf | cut -c1-12
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
what=${1:-all}
if [ "$what" = all ] || [ "$what" = bench ]; then
  model=${MODEL:-gguf:/tmp/smollm2.gguf}; tag=${TAG:-smollm2}
  timeout ${BENCH_TIMEOUT:-450} python bench/train_gpu.py --model "$model" --steps ${STEPS:-5} \
    --backends ${BACKENDS:-unsloth,trl} --methods ${METHODS:-sft,grpo} --json "$OUT/train_gpu_$tag.json" 2>&1 \
    | tee "$OUT/train_gpu_$tag.log" | grep -E 'x faster|│|error|: _prepare_inputs|: transformers' | cut -c1-400
fi
g='x faster|│|rror'
if [ "$what" = sft ]; then  # SFT rows, 1.5B short chains: offload, CUDA graphs on 64-token shapes
  cg=unsloth+UNSLOTH_PADDING_CHOICE=padded+UNSLOTH_BLOCK_COMPILE=1+UNSLOTH_BLOCK_CUDAGRAPHS=1
  timeout 280 python bench/train_gpu.py --model tiny:llama-1.5b --steps 30 --methods sft --sft-pad-multiple 64 \
    --backends trl,unsloth,unsloth@offload,$cg --json "$OUT/train_gpu_1p5b_sft_pad64.json" 2>&1 | grep -E "$g"
fi
if [ "$what" = sft7 ]; then  # SFT rows, 7B shape, ~460-token chains: compute-bound; 16-bit and 4-bit LoRA
  timeout 540 python bench/train_gpu.py --model tiny:llama-7b --steps 20 --methods sft --sft-tokens 384 \
    --backends trl,unsloth,unsloth:4bit --json "$OUT/train_gpu_7b_sft_long.json" 2>&1 | grep -E "$g"
fi
if [ "$what" = sftdef ]; then  # the code defaults on 120 steps of spread lengths (~80-460 tokens)
  timeout 300 python bench/train_gpu.py --model tiny:llama-1.5b --steps 120 --methods sft --sft-tokens 384 --sft-spread \
    --backends trl,unsloth,unsloth@on,unsloth+UNSLOTH_BLOCK_COMPILE=0 --json "$OUT/train_gpu_1p5b_sft_defaults.json" 2>&1 | grep -E "$g"
fi
if [ "$what" = grpoeager ]; then  # GRPO's compiled blocks vs eager on a loop-sized job
  timeout 200 python bench/train_gpu.py --model tiny:llama-1.5b --steps 8 --methods grpo \
    --backends unsloth,unsloth+UNSLOTH_BLOCK_COMPILE=0 --json "$OUT/train_gpu_1p5b_grpo_eager.json" 2>&1 | grep -E "$g"
fi
if [ "$what" = x2 ]; then  # nvidia-h200-x2: one SFT job per backend under train.launcher, both GPUs
  timeout 240 python bench/train_gpu.py --model tiny:llama-1.5b --steps 30 --methods sft --sft-pad-multiple 64 \
    --backends trl,unsloth --launcher "torchrun --nproc_per_node 2" --json "$OUT/train_gpu_1p5b_sft_x2.json" 2>&1 \
    | tee "$OUT/train_gpu_x2.log" | grep -E "$g"
fi
if [ "$what" = all ] || [ "$what" = loop ]; then
  [ "${RESUME:-0}" = 1 ] || rm -rf /tmp/gpurun
  timeout ${LOOP_TIMEOUT:-540} python -m cli start --rounds 3 -c configs/gpu.yaml --set run.dir=/tmp/gpurun 2>&1 | grep -v Warning | tee "$OUT/gpu_loop.log" | tail -40
  python -m cli inspect --json -c configs/gpu.yaml --set run.dir=/tmp/gpurun > "$OUT/gpu_rounds.json"
  python -m cli inspect -c configs/gpu.yaml --set run.dir=/tmp/gpurun
  cp /tmp/gpurun/config.yaml "$OUT/gpu_config.yaml" 2>/dev/null
fi
