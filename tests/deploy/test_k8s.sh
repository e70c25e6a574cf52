#!/usr/bin/env bash
# deploy/k8s for real, without a cluster: `kubectl kustomize` renders every overlay, each object
# validates against the Kubernetes OpenAPI schemas (npm `kubernetes-models`, installed once
# into a cache directory), and k8s_check.py reads manifests and binary side by side (flags,
# ports, Services, probes; a real node and gateway started with the manifests' args answer
# the probe paths). Usage: tests/deploy/test_k8s.sh [path/to/strata]
set -euo pipefail
start_ns=$(date +%s%N)
root=$(cd "$(dirname "$0")/../.." && pwd)
strata=${1:-${STRATA_BIN:-$root/build/strata}}
[[ -x $strata ]] || { echo "test_k8s: no strata binary at $strata (build it first)" >&2; exit 1; }

if ! command -v kubectl >/dev/null; then
  echo "test_k8s: installing kubectl (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y kubectl >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm >/dev/null
fi
modules=${STRATA_K8S_SCHEMAS:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-k8s-validate}
if [[ ! -d $modules/node_modules/kubernetes-models || ! -d $modules/node_modules/yaml ]]; then
  echo "test_k8s: installing kubernetes-models (npm) into $modules"
  mkdir -p "$modules"
  [[ -f $modules/package.json ]] || echo '{"name":"strata-k8s-validate","private":true}' >"$modules/package.json"
  (cd "$modules" && npm install --no-audit --no-fund --loglevel=error kubernetes-models@5.1.0 yaml@2 >/dev/null)
fi
export K8S_VALIDATE_MODULES=$modules/node_modules

work=$(mktemp -d /tmp/strata-k8s.XXXXXX)
trap 'rm -rf "$work"' EXIT
rc=0
overlays=(replica pipeline replica-hpa)
for o in "${overlays[@]}"; do
  if kubectl kustomize "$root/deploy/k8s/overlays/$o" >"$work/$o.yaml"; then
    echo "ok   kubectl kustomize overlays/$o: $(grep -c '^kind:' "$work/$o.yaml") objects"
  else
    echo "FAIL kubectl kustomize overlays/$o"; rc=1
  fi
done
if [[ $rc == 0 ]]; then
  files=()
  for o in "${overlays[@]}"; do files+=("$work/$o.yaml"); done
  K8S_JSON_OUT=$work node "$root/tests/deploy/k8s_validate.mjs" "${files[@]}" | sed "s|$work/||" || rc=$?
  python3 "$root/tests/deploy/k8s_check.py" --strata "$strata" --json-dir "$work" \
    "${overlays[@]}" || rc=$?
fi
ms=$((($(date +%s%N) - start_ns) / 1000000))
echo "test_k8s: $([[ $rc == 0 ]] && echo PASS || echo FAIL), wall $((ms / 1000)).$((ms % 1000 / 100)) s"
exit "$rc"
