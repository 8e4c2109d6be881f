"""The embedded corpora of the main job: pairs per split and source, drop counts, build time and
peak memory of each build (every dataset is built in its own child process, so its peak RSS is its
own; the child's mining workers, cpt_jax/data/parallel.py, run beside it and their largest peak is
shown apart). Builds into a fresh --data_dir (a prepared dataset there is reused and not timed).

    python bench/corpus.py --data_dir /tmp/corpus_bench
    python bench/corpus.py --data_dir /tmp/corpus_bench --datasets site_code,site_text,stdlib_code
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

_CHILD = """
import json, resource, sys
from cpt_jax.data import builders
from cpt_jax.data.builders import site_pairs
name, data_dir = sys.argv[1], sys.argv[2]
builder = builders.prepare(name, data_dir)
splits = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
kinds = builder.info.metadata.get(site_pairs.KIND_COUNTS_KEY, {})
drops = {s: builders.drop_counts(name, data_dir, s) for s in splits}
workers_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest mining worker (data/parallel.py)
print("RESULT " + json.dumps({"splits": splits, "kinds": kinds, "drops": drops, "workers_kib": workers_kib}))
"""


def build(name: str, data_dir: str) -> dict:
    """Builds one dataset in a child process: its splits, kinds, drops, wall seconds, peak RSS."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, name, data_dir], stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's rusage (ru_maxrss: its largest process)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode:
        raise RuntimeError(f"building {name} failed:\n{stderr[-3000:]}")
    result = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {**result, "seconds": seconds, "peak_mib": usage.ru_maxrss / 1024}  # ru_maxrss: KiB on Linux


def tables(results: dict[str, dict]) -> str:
    lines = ["| dataset | split | pairs | by source | build s | peak RSS MiB | a worker's peak RSS MiB |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        for i, (split, n) in enumerate(r["splits"].items()):
            kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].get(split, {}).items())
            timing = (f"{r['seconds']:.0f} | {r['peak_mib']:.0f} | {r['workers_kib'] / 1024:.0f}" if i == 0
                      else " | | ")
            lines.append(f"| {name} | {split} | {n} | {kinds} | {timing} |")
    lines += ["", "| dataset | split | left out or cut, by rule (cpt_jax.data.sources.base.DROP_RULES) |", "| --- | --- | --- |"]
    for name, r in results.items():
        for split, counts in r["drops"].items():
            applied = ", ".join(f"{rule} {n}" for rule, n in counts.items() if n) or "nothing"
            lines.append(f"| {name} | {split} | {applied} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", required=True, help="a fresh directory (prepared datasets there are reused)")
    p.add_argument("--datasets", default="site_code,site_text")
    args = p.parse_args()
    print(header(f"corpus builds into {args.data_dir}"))
    results = {name: build(name, args.data_dir) for name in args.datasets.split(",")}
    print(tables(results))


if __name__ == "__main__":
    main()
