#!/usr/bin/env bash
# Runs one bench/ script at two commits side by side, alternating, in one session on one machine.
#
#   bash bench/commits.sh OLD_REV ROUNDS SCRIPT [ARGS...]
#   bash bench/commits.sh d8988f4 2 bench/packing.py --gin_file configs/experiments/tiny_code.gin \
#       --tokenizer outputs/tiny_code/tokenizer --steps 50 --rounds 1
#
# OLD_REV is checked out into a temporary git worktree; each round runs the script of that
# commit on that commit's package (PYTHONPATH puts the worktree first, ahead of the editable
# install), then the working tree's, each in a fresh process. Paths in ARGS are resolved from the
# repository root, so both commits read the same outputs/ (the prepared data, a tokenizer).
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: bash bench/commits.sh OLD_REV ROUNDS SCRIPT [ARGS...]" >&2
  exit 2
fi
old_rev=$1 rounds=$2 script=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tree=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT
git worktree add --detach "$tree" "$old_rev" >/dev/null 2>&1
ln -s "$root/outputs" "$tree/outputs"  # the same prepared data for both
old_name="$(git rev-parse --short "$old_rev")" new_name="$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes)"
for round in $(seq 1 "$rounds"); do
  echo "== round $round: $old_name (old)"
  (cd "$tree" && PYTHONPATH="$tree" python "$tree/$script" "$@")
  echo "== round $round: $new_name (new)"
  python "$root/$script" "$@"
done
