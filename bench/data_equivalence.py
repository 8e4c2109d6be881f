"""Proves the one data path changed nothing the README's main run sees, against a checkout of the
old code (two batchers, two miners):

  python bench/data_equivalence.py --old /work/old [--data_dir outputs/tfds] [--steps 20] [--rebuild]

1. batches: the first `steps` global batches of configs/experiments/tiny_code.gin's data (one
   stdlib_code source, global batch 64, seed 0) from the old PairBatches and the new Batches,
   token arrays equal, row order included, for process counts 1 and 2 (P=2: each process's
   local batch compared with the old one of the same process);
2. tokenizer texts: the old iter_training_texts(data_dir, datasets=("stdlib_code",)) and the new
   training_texts(config) give the same texts in the same order;
3. --rebuild: stdlib_code and stdlib_text built afresh by the old and the new builders (into
   temporary directories) hold the same records in every split, in the same order; both also
   equal the prepared copies under data_dir.

The old code runs in a subprocess with PYTHONPATH=<old> (its package has the same name). Exit
status 0 iff everything is equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

OLD_SIDE = r"""
import json, sys
import numpy as np
from cpt_jax.data import builders, pipeline
from cpt_jax.data.tokenizer import Tokenizer
task, data_dir, out, steps, tok = sys.argv[1:6]
if task == "batches":
    tokenizer = Tokenizer.load(tok)
    config = pipeline.DataConfig(data_dir=data_dir, dataset="stdlib_code", split="train", max_len_x=64, max_len_y=128)
    arrays = {}
    for count in (1, 2):
        for p in range(count):
            batches = pipeline.PairBatches(config, tokenizer, 64, p, count)
            for s in range(int(steps)):
                for k, v in batches.batch(s).items():
                    arrays[f"{count}/{p}/{s}/{k}"] = v
    np.savez(out, **arrays)
elif task == "texts":
    json.dump(list(pipeline.iter_training_texts(data_dir, datasets=("stdlib_code",), max_texts=int(steps))), open(out, "w"))
elif task == "build":
    for name in builders.DATASETS:
        builders.prepare(name, data_dir)
"""


def _old(old: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": old}
    subprocess.run([sys.executable, "-c", OLD_SIDE, *args], check=True, env=env, cwd=old)


def _records(data_dir: str) -> dict[str, list[dict]]:
    from cpt_jax.data import builders
    from cpt_jax.data.pipeline import iter_split_texts

    return {f"{n}/{s}": list(iter_split_texts(n, s, data_dir)) for n in builders.DATASETS for s in ("train", "validation", "test")}


def compare_batches(old: str, data_dir: str, steps: int, work: str) -> bool:
    from cpt_jax.data.config import DataConfig
    from cpt_jax.data.pipeline import Batches
    from cpt_jax.data.sources import PreparedPairsSource
    from cpt_jax.data.tokenizer import Tokenizer

    tok = os.path.join(work, "tok")
    source = PreparedPairsSource(dataset="stdlib_code", split="train", data_dir=os.path.abspath(data_dir))
    config = DataConfig(max_len_x=64, max_len_y=128, sources=(source,), prefetch_batches=0)
    from cpt_jax.data.pipeline import training_texts

    Tokenizer.train(training_texts(config, 4000), 2000, tok)
    _old(old, "batches", os.path.abspath(data_dir), os.path.join(work, "old.npz"), str(steps), tok)
    want = np.load(os.path.join(work, "old.npz"))
    tokenizer, same = Tokenizer.load(tok), True
    for count in (1, 2):
        for p in range(count):
            produced = Batches(config, tokenizer, 64, p, count).produce()
            for s in range(steps):
                b = next(produced).batch
                got = {"x_tokens": b.x.tokens, "x_mask": b.x.mask, "y_tokens": b.y.tokens, "y_mask": b.y.mask}
                same &= all(np.array_equal(want[f"{count}/{p}/{s}/{k}"], v) for k, v in got.items())
            produced.close()
        print(f"batches: P={count}, {steps} steps x {count} processes: {'EQUAL' if same else 'DIFFERENT'}")
    return bool(same)


def compare_texts(old: str, data_dir: str, work: str, max_texts: int = 1_000_000) -> bool:
    from cpt_jax.data.config import DataConfig
    from cpt_jax.data.pipeline import training_texts
    from cpt_jax.data.sources import PreparedPairsSource

    _old(old, "texts", os.path.abspath(data_dir), os.path.join(work, "texts.json"), str(max_texts), "-")
    with open(os.path.join(work, "texts.json")) as f:
        want = json.load(f)
    source = PreparedPairsSource(dataset="stdlib_code", data_dir=os.path.abspath(data_dir))
    got = list(training_texts(DataConfig(max_len_x=8, max_len_y=8, sources=(source,)), max_texts))
    print(f"tokenizer texts: {len(want)} old, {len(got)} new: {'EQUAL' if got == want else 'DIFFERENT'}")
    return got == want


def compare_builds(old: str, data_dir: str, work: str) -> bool:
    from cpt_jax.data import builders

    old_dir, new_dir = os.path.join(work, "old_tfds"), os.path.join(work, "new_tfds")
    _old(old, "build", old_dir, "-", "0", "-")
    for name in builders.DATASETS:
        builders.prepare(name, new_dir)
    old_records, new_records, prepared = _records(old_dir), _records(new_dir), _records(data_dir)
    same = True
    for key in old_records:
        equal = old_records[key] == new_records[key] == prepared[key]
        same &= equal
        print(f"records {key}: {len(old_records[key])} old, {len(new_records[key])} new, "
              f"{len(prepared[key])} prepared: {'EQUAL' if equal else 'DIFFERENT'}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="a checkout of the old code")
    parser.add_argument("--data_dir", default="outputs/tfds")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true", help="also rebuild both datasets with both builders")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        ok = compare_batches(args.old, args.data_dir, args.steps, work)
        ok &= compare_texts(args.old, args.data_dir, work)
        if args.rebuild:
            ok &= compare_builds(args.old, args.data_dir, work)
    print("ALL EQUAL" if ok else "SOME DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
