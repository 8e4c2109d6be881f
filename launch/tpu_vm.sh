#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice (or several slices), one JAX process per TPU VM worker.
#   launch/tpu_vm.sh --name=NAME --zone=ZONE [options] [--] [train flags...]
# e.g. launch/tpu_vm.sh --name=my-v5e-32 --zone=us-west4-a --setup -- \
#        --gin_file=configs/experiments/tiny_code.gin --gin.TrainConfig.num_steps=200
# Every worker runs `cd REPO_DIR && python3 -m cpt_jax.train <train flags>` through
# `gcloud compute tpus ... ssh --worker=all`; JAX finds the slice (and its process id) itself.
# --dry_run prints the commands (one per line, shell-quoted; the output is itself a runnable
# script) instead of running them. See launch/README.md for the multi-slice modes.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh --name=NAME --zone=ZONE [options] [--] [train flags...]

Launcher options come first; `--` or the first argument that is not one of them starts the
flags passed unchanged to `python3 -m cpt_jax.train`.

  --name=NAME          TPU VM name (one slice); with --num_slices>1 the queued resource
                       (--multislice=queued) or the slice prefix NAME-0..NAME-{K-1} (=env)
  --zone=ZONE          zone of the TPU(s)                                       (required)
  --project=PROJECT    Cloud project (default: gcloud's configured project)
  --repo_dir=DIR       the cpt-jax checkout on every worker (default: ~/cpt-jax)
  --setup              before training: git pull --ff-only, pip install -r requirements.txt,
                       and jax[tpu] at the requirements' jax version
  --num_slices=K       number of TPU slices (default: 1)
  --multislice=MODE    with K>1: `queued` (default) - NAME is a queued resource created with
                       --node-count=K, whose slices already carry the MEGASCALE_* settings;
                       `env` - NAME-0..NAME-{K-1} are separate TPU VMs and each slice i gets
                       MEGASCALE_COORDINATOR_ADDRESS / NUM_SLICES=K / SLICE_ID=i / PORT
  --coordinator=IP     (=env) internal IP of worker 0 of NAME-0 (default: asked of gcloud)
  --megascale_port=P   (=env) Megascale (DCN) port (default: 8080)
  --dry_run            print the commands instead of running them
  -h, --help           this message
EOF
}

die() {
  printf 'tpu_vm.sh: %s\n\n' "$1" >&2
  usage >&2
  exit 2
}

# shellcheck disable=SC2088  # a literal ~: it is expanded on the workers, not here
name='' zone='' project='' repo_dir='~/cpt-jax' setup=0 num_slices=1 mode='' coordinator=''
megascale_port=8080 dry_run=0
while (($#)); do
  arg=$1
  case $arg in
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    --setup) setup=1; shift; continue ;;
    --dry_run | --dry-run) dry_run=1; shift; continue ;;
    --name | --zone | --project | --repo_dir | --num_slices | --multislice | --coordinator | --megascale_port)
      (($# >= 2)) || die "$arg needs a value"
      key=${arg#--} value=$2
      shift 2 ;;
    --name=* | --zone=* | --project=* | --repo_dir=* | --num_slices=* | --multislice=* | --coordinator=* | --megascale_port=*)
      key=${arg%%=*} key=${key#--} value=${arg#*=}
      shift ;;
    *) break ;;  # the train flags start here
  esac
  case $key in
    name) name=$value ;;
    zone) zone=$value ;;
    project) project=$value ;;
    repo_dir) repo_dir=$value ;;
    num_slices) num_slices=$value ;;
    multislice) mode=$value ;;
    coordinator) coordinator=$value ;;
    megascale_port) megascale_port=$value ;;
  esac
done
# "$@" is now the train flags.

[[ -n $name ]] || die "--name is required"
[[ -n $zone ]] || die "--zone is required"
[[ -n $repo_dir ]] || die "--repo_dir must not be empty"
[[ $num_slices =~ ^[1-9][0-9]*$ ]] || die "--num_slices must be a positive integer, not '$num_slices'"
[[ $megascale_port =~ ^[1-9][0-9]*$ ]] || die "--megascale_port must be a port number, not '$megascale_port'"
if ((num_slices == 1)); then
  [[ -z $mode ]] || die "--multislice needs --num_slices > 1"
  [[ -z $coordinator ]] || die "--coordinator is for --num_slices > 1 with --multislice=env"
else
  mode=${mode:-queued}
  [[ $mode == queued || $mode == env ]] || die "--multislice must be 'queued' or 'env', not '$mode'"
  [[ $mode == env || -z $coordinator ]] || die "--coordinator is for --multislice=env"
fi
for a in "$@"; do
  [[ $a != *$'\n'* ]] || die "a train flag contains a newline"
done

# -- the command every worker runs (a string for the worker's login shell) --------------------

# `~` stays unquoted so the worker's shell expands it to that user's home.
# shellcheck disable=SC2088
case $repo_dir in
  '~') cd_cmd='cd ~' ;;
  '~/'*) cd_cmd="cd ~/$(printf '%q' "${repo_dir#\~/}")" ;;
  *) cd_cmd="cd $(printf '%q' "$repo_dir")" ;;
esac
remote=$cd_cmd
if ((setup)); then
  # requirements.txt pins jax[cpu]; the TPU runtime (libtpu) comes with jax[tpu] at the same version.
  req=$(dirname "$0")/../requirements.txt
  jax_version=$(sed -n 's/^jax\[[a-z0-9_,]*\]==\([^ ;#]*\).*/\1/p' "$req" 2>/dev/null | head -n 1 || true)
  remote+=" && git pull --ff-only && python3 -m pip install -r requirements.txt"
  remote+=" && python3 -m pip install $(printf '%q' "jax[tpu]${jax_version:+==$jax_version}")"
fi
remote+=" && python3 -m cpt_jax.train"
if (($#)); then
  remote+=$(printf ' %q' "$@")
fi

# -- the gcloud commands --------------------------------------------------------------------------

location=(--zone="$zone")
[[ -z $project ]] || location+=(--project="$project")

# Prints one command, each word quoted for bash; the coordinator placeholder (dry run without
# --coordinator) becomes a reference to the COORDINATOR variable set by the describe line.
placeholder='@@COORDINATOR@@'
print_cmd() {
  local line suffix=''
  if [[ $1 == '&' ]]; then suffix=' &'; shift; fi
  line=$(printf '%q ' "$@")
  line=${line% }
  # shellcheck disable=SC2016  # a literal ${COORDINATOR} for the printed script
  printf '%s%s\n' "${line//"$placeholder"/'"${COORDINATOR}"'}" "$suffix"
}

if ((num_slices == 1)); then
  cmd=(gcloud compute tpus tpu-vm ssh "$name" "${location[@]}" --worker=all --command="$remote")
  if ((dry_run)); then print_cmd "${cmd[@]}"; exit 0; fi
  exec "${cmd[@]}"
fi

if [[ $mode == queued ]]; then
  # A queued resource made with `gcloud compute tpus queued-resources create NAME --node-count=K`:
  # Cloud TPU gives every worker the MEGASCALE_* settings (in its tpu-env metadata), which
  # jax.distributed.initialize() and libtpu read; one ssh reaches every worker of every slice.
  cmd=(gcloud compute tpus queued-resources ssh "$name" "${location[@]}" --node=all --worker=all --command="$remote")
  if ((dry_run)); then print_cmd "${cmd[@]}"; exit 0; fi
  exec "${cmd[@]}"
fi

# mode=env: K independently created slices NAME-0 .. NAME-{K-1} (same zone and VPC network).
# Slice i gets MEGASCALE_SLICE_ID=i; all share the coordinator, worker 0 of slice 0, which is
# also JAX's process 0 (process id = slice id * workers per slice + worker id).
describe=(gcloud compute tpus tpu-vm describe "$name-0" "${location[@]}" '--format=value(networkEndpoints[0].ipAddress)')
if [[ -z $coordinator ]]; then
  if ((dry_run)); then
    # shellcheck disable=SC2016  # a literal $(...) for the printed script
    printf 'COORDINATOR=$(%s)\n' "$(print_cmd "${describe[@]}")"
    coordinator=$placeholder
  else
    coordinator=$("${describe[@]}")
    [[ -n $coordinator ]] || { echo "tpu_vm.sh: no internal IP for $name-0 (pass --coordinator=IP)" >&2; exit 1; }
  fi
fi
slice_cmd() {  # slice_cmd I: sets cmd to the ssh command for slice I
  local env_cmd
  env_cmd="export MEGASCALE_COORDINATOR_ADDRESS=$(printf '%q' "$coordinator:$megascale_port")"
  env_cmd+=" MEGASCALE_NUM_SLICES=$num_slices MEGASCALE_SLICE_ID=$1 MEGASCALE_PORT=$megascale_port"
  cmd=(gcloud compute tpus tpu-vm ssh "$name-$1" "${location[@]}" --worker=all --command="$env_cmd && $remote")
}
if ((dry_run)); then
  for ((i = 0; i < num_slices; i++)); do
    slice_cmd "$i"
    print_cmd '&' "${cmd[@]}"
  done
  echo wait
  exit 0
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < num_slices; i++)); do
  slice_cmd "$i"
  "${cmd[@]}" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
