#!/usr/bin/env bash
# Prints launch/k8s/jobset.yaml filled in: a JobSet of NUM_PROCESSES pods running cpt_jax.train.
#   launch/k8s/render.sh --name=NAME --image=IMAGE --num_processes=N --gpus_per_pod=G [--port=P] \
#     [--] [train flags...] | kubectl apply -f -
# It only prints (so --dry_run, accepted for symmetry with the other launchers, changes nothing);
# applying the manifest is up to you. Pure bash: no envsubst, no kubectl.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/k8s/render.sh --name=NAME --image=IMAGE --num_processes=N --gpus_per_pod=G
                            [--port=PORT] [--dry_run] [--] [train flags...]

Launcher options come first; `--` or the first argument that is not one of them starts the
flags passed unchanged to `python3 -m cpt_jax.train` (each becomes one container argument).

  --name=NAME          JobSet name: a DNS label (lowercase letters, digits, '-')   (required)
  --image=IMAGE        container image with the cpt-jax checkout as its workdir   (required)
  --num_processes=N    pods = JAX processes                                      (required)
  --gpus_per_pod=G     nvidia.com/gpu per pod; 0 drops the GPU request             (required)
  --port=PORT          the JAX coordinator's port on pod 0 (default: 1234)
  --dry_run            accepted; this script never applies anything
  -h, --help           this message
EOF
}

die() {
  printf 'render.sh: %s\n\n' "$1" >&2
  usage >&2
  exit 2
}

name='' image='' num_processes='' gpus_per_pod='' port=1234
while (($#)); do
  arg=$1
  case $arg in
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    --dry_run | --dry-run) shift; continue ;;
    --name | --image | --num_processes | --gpus_per_pod | --port)
      (($# >= 2)) || die "$arg needs a value"
      key=${arg#--} value=$2
      shift 2 ;;
    --name=* | --image=* | --num_processes=* | --gpus_per_pod=* | --port=*)
      key=${arg%%=*} key=${key#--} value=${arg#*=}
      shift ;;
    *) break ;;  # the train flags start here
  esac
  case $key in
    name) name=$value ;;
    image) image=$value ;;
    num_processes) num_processes=$value ;;
    gpus_per_pod) gpus_per_pod=$value ;;
    port) port=$value ;;
  esac
done

[[ -n $name ]] || die "--name is required"
[[ -n $image ]] || die "--image is required"
[[ -n $num_processes ]] || die "--num_processes is required"
[[ -n $gpus_per_pod ]] || die "--gpus_per_pod is required"
[[ $num_processes =~ ^[1-9][0-9]*$ ]] || die "--num_processes must be a positive integer, not '$num_processes'"
[[ $gpus_per_pod =~ ^(0|[1-9][0-9]*)$ ]] || die "--gpus_per_pod must be a non-negative integer, not '$gpus_per_pod'"
[[ $port =~ ^[1-9][0-9]*$ && $port -le 65535 ]] || die "--port must be a port number, not '$port'"
[[ $name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name must be a DNS label (lowercase letters, digits, '-'), not '$name'"
# The last pod's host name, <name>-workers-0-<N-1>, must fit a 63-character DNS label.
last_host="$name-workers-0-$((num_processes - 1))"
((${#last_host} <= 63)) || die "--name is too long: pod host name '$last_host' exceeds 63 characters"
[[ $image =~ ^[^[:space:]\'\"]+$ ]] || die "--image must not contain spaces or quotes"

# One train flag as a YAML list item: single-quoted ('' inside), and `$(` doubled so that
# Kubernetes passes it through instead of expanding it as a $(VAR) reference.
yaml_arg() {
  local a=$1
  [[ $a != *$'\n'* ]] || die "a train flag contains a newline"
  a=${a//\'/\'\'}
  # shellcheck disable=SC2016  # literal $( and $$(
  a=${a//'$('/'$$('}
  printf "'%s'" "$a"
}

template=$(dirname "$0")/jobset.yaml
[[ -r $template ]] || { echo "render.sh: template $template not found" >&2; exit 1; }
while IFS= read -r line || [[ -n $line ]]; do
  if [[ $line =~ ^([[:space:]]*)-\ __TRAIN_ARGS__$ ]]; then
    indent=${BASH_REMATCH[1]}
    for a in "$@"; do
      printf '%s- %s\n' "$indent" "$(yaml_arg "$a")"
    done
    continue
  fi
  if [[ $line == *'  # @gpu' ]]; then
    ((gpus_per_pod > 0)) || continue
    line=${line%'  # @gpu'}
  fi
  # Quoted replacements: taken literally (no & or \ handling), whatever the values hold.
  line=${line//__NAME__/"$name"}
  line=${line//__IMAGE__/"$image"}
  line=${line//__NUM_PROCESSES__/"$num_processes"}
  line=${line//__GPUS_PER_POD__/"$gpus_per_pod"}
  line=${line//__PORT__/"$port"}
  printf '%s\n' "$line"
done <"$template"
