#!/usr/bin/env bash
# The performance tables of bench/README.md in one go (about 40 minutes on 2 idle cores; run it
# on an otherwise idle machine, since every row is a timing). Needs the runs that the README's
# main command and configs/experiments/minilm_code.gin write (outputs/tiny_code, outputs/minilm_code).
# The comparisons with sentence-transformers run on glibc malloc and, where it is installed, on tcmalloc.
set -euo pipefail
cd "$(dirname "$0")/.."
tcmalloc=$(python3 -c 'from cpt_jax.parallel.runtime import find_tcmalloc; print(find_tcmalloc() or "")')
compare() {
  python "$@"
  if [[ -n "$tcmalloc" ]]; then LD_PRELOAD=$tcmalloc python "$@"; fi
}
compare bench/train.py --shape minilm --batch 64 --seq 64 --rounds 3
compare bench/train.py --shape minilm --batch 64 --seq 64 --rounds 2 --pooling eos
python bench/kernels.py
compare bench/train.py --shape tiny --batch 4096 --seq 64 --chunk 256 --rounds 1 --steps 2 --warmup 1
python bench/memory.py --model configs/model/s.gin --batches 8 --chunk 4 --run_up_to 0 --budget_gb 0
python bench/mfu.py --model configs/model/tiny.gin --batch 64 --seq 64
python bench/mfu.py --model configs/model/tiny.gin --batch 64 --seq 64 --scan_layers 0
python bench/pipeline.py --gin_file configs/experiments/tiny_code.gin --tokenizer outputs/tiny_code/tokenizer
compare bench/packing.py --gin_file configs/experiments/tiny_code.gin --tokenizer outputs/tiny_code/tokenizer --steps 50 --rounds 3
compare bench/packing.py --gin_file configs/experiments/minilm_code.gin --steps 20 --rounds 2
python bench/pipeline.py --gin_file configs/experiments/minilm_code.gin
compare bench/encode.py --checkpoint outputs/minilm_code --docs 1000 --rounds 2
compare bench/encode.py --checkpoint outputs/minilm_code --docs 1000 --rounds 2 --dtype bfloat16
compare bench/encode.py --checkpoint outputs/minilm_code --docs 1000 --rounds 2 --dtype bfloat16 --st_dtype float32
compare bench/encode.py --checkpoint outputs/tiny_code --docs 2000 --rounds 2
python bench/startup.py --tokenizer outputs/tiny_code/tokenizer
