#!/usr/bin/env bash
# Runs one bench/ script at two commits side by side, alternating, in one session on one machine.
#
#   bash bench/commits.sh OLD_REV NEW_REV ROUNDS SCRIPT [ARGS...]
#   bash bench/commits.sh d8988f4 HEAD 2 bench/packing.py --gin_file configs/experiments/tiny_code.gin \
#       --tokenizer outputs/tiny_code/tokenizer --steps 50 --rounds 1
#
# Each commit is checked out into a temporary git worktree (NEW_REV "." runs the working tree as
# it is); each round runs the script of OLD_REV on that commit's package (PYTHONPATH puts the
# worktree first, ahead of the editable install), then NEW_REV's, each in a fresh process. Both
# see the repository's outputs/ (the prepared data, a tokenizer), so relative paths in ARGS agree.
set -euo pipefail
if [ "$#" -lt 4 ]; then
  echo "usage: bash bench/commits.sh OLD_REV NEW_REV ROUNDS SCRIPT [ARGS...]" >&2
  exit 2
fi
old_rev=$1 new_rev=$2 rounds=$3 script=$4
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
trees=()
cleanup() { for t in "${trees[@]}"; do git -C "$root" worktree remove --force "$t" >/dev/null 2>&1 || rm -rf "$t"; done; }
trap cleanup EXIT
checkout() {  # REV -> $checked_out, a directory holding that commit ("." -> the working tree)
  if [ "$1" = "." ]; then checked_out=$root; return; fi
  checked_out=$(mktemp -d)
  trees+=("$checked_out")
  git worktree add --detach "$checked_out" "$1" >/dev/null 2>&1
  ln -s "$root/outputs" "$checked_out/outputs"
}
checkout "$old_rev"; old_tree=$checked_out
checkout "$new_rev"; new_tree=$checked_out
name() { if [ "$1" = "." ]; then echo "working tree"; else git rev-parse --short "$1"; fi; }
for round in $(seq 1 "$rounds"); do
  for side in old new; do
    if [ "$side" = old ]; then tree=$old_tree rev=$old_rev; else tree=$new_tree rev=$new_rev; fi
    echo "== round $round: $(name "$rev") ($side)"
    (cd "$tree" && PYTHONPATH="$tree" python "$tree/$script" "$@")
  done
done
