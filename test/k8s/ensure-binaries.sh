#!/usr/bin/env bash
# Makes sure the binaries of the test control plane exist: etcd, kube-apiserver and kubectl,
# built from Go modules (nothing else can be downloaded here) into a cache outside the repo:
#   ${OFFTAKE_ENVTEST_DIR:-$HOME/.cache/offtake/envtest}/<k8s version>/{etcd,kube-apiserver,kubectl}
# When $KUBEBUILDER_ASSETS holds all three (setup-envtest's layout), those are used instead.
# Idempotent: binaries already built for these versions are reused; concurrent runs wait on a lock.
# Progress goes to stderr; the only line on stdout is the directory holding the three binaries.
set -euo pipefail

# kube-apiserver and kubectl come from k8s.io/kubernetes; its staging modules
# (k8s.io/api, k8s.io/apiserver, ...) are published as v0.<minor>.<patch>.
k8s_version="v1.34.4"
etcd_version="v3.6.16"

log() { echo "ensure-binaries: $*" >&2; }
elapsed() { echo "$(($(date +%s) - $1))s"; }
started=$(date +%s)
names=(etcd kube-apiserver kubectl)

have_all() {
  local dir="$1" name
  for name in "${names[@]}"; do [ -x "$dir/$name" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then
  log "using the binaries in KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
[ -n "${KUBEBUILDER_ASSETS:-}" ] && log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of ${names[*]}; using the cache"

root="${OFFTAKE_ENVTEST_DIR:-$HOME/.cache/offtake/envtest}"
bin="$root/${k8s_version#v}"
mkdir -p "$bin"

# A binary counts as built when it is executable and its stamp names the version it was built from,
# so changing a version above rebuilds only what it concerns.
stamp_of() { case "$1" in etcd) echo "$etcd_version" ;; *) echo "$k8s_version" ;; esac; }
is_built() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$(stamp_of "$1")" ]; }
all_built() {
  local name
  for name in "${names[@]}"; do is_built "$name" || return 1; done
}

if all_built; then
  log "reusing etcd $etcd_version and kube-apiserver, kubectl $k8s_version in $bin ($(elapsed "$started"))"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go is not on PATH; it is needed to build ${names[*]}"; exit 1; }

# One build at a time per cache: a second run waits, then finds the binaries built.
exec 9>"$bin/.lock"
if ! flock -n 9; then
  log "another ensure-binaries run is building into $bin; waiting for it"
  flock 9
fi

work=$(mktemp -d "$root/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT

# The machine's Go builds (no toolchain download), statically (no C compiler needed), reproducibly.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"
build_flags=(-trimpath -p "${OFFTAKE_ENVTEST_BUILD_JOBS:-2}")
log "$(go version); GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE)"

install_built() { # name: moves $work/out/name into the cache with its stamp
  mv -f "$work/out/$1" "$bin/$1"
  stamp_of "$1" >"$bin/.$1.version"
}

if ! is_built etcd; then
  t=$(date +%s)
  log "building etcd $etcd_version (go.etcd.io/etcd/server/v3)"
  mkdir -p "$work/etcd" "$work/out"
  (
    cd "$work/etcd"
    go mod init offtake.local/envtest-etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2
    go build "${build_flags[@]}" -ldflags "-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3 >&2
  )
  install_built etcd
  log "built etcd in $(elapsed "$t")"
fi

if ! is_built kube-apiserver || ! is_built kubectl; then
  t=$(date +%s)
  log "building kube-apiserver and kubectl $k8s_version (k8s.io/kubernetes)"
  mkdir -p "$work/kube" "$work/out"
  cd "$work/kube"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and points them at ./staging in its
  # own go.mod, which a dependency's replace lines cannot do: map each one to its published release.
  download=$(go mod download -json "k8s.io/kubernetes@$k8s_version")
  kube_mod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$download")
  kube_info=$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p' <<<"$download")
  [ -f "$kube_mod" ] || { log "could not download k8s.io/kubernetes@$k8s_version: $download"; exit 1; }
  staging_version="v0.${k8s_version#v1.}"
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9./-]*\) => ./staging/src/.*#\1#p' "$kube_mod")
  [ -n "$staging" ] || { log "found no staging modules in $kube_mod"; exit 1; }
  {
    echo "module offtake.local/envtest-kube"
    echo
    # The same language version and GODEBUG defaults that Kubernetes itself builds with.
    grep -E '^(go|godebug) ' "$kube_mod"
    echo
    echo "require k8s.io/kubernetes $k8s_version"
    echo
    echo "replace ("
    for module in $staging; do echo "	$module => $module $staging_version"; done
    echo ")"
  } >go.mod
  log "mapped $(echo "$staging" | wc -w) staging modules to $staging_version"
  # /version reports what was built (the variables hack/lib/version.sh sets in a release build).
  major=${k8s_version#v}
  major=${major%%.*}
  minor=${k8s_version#v*.}
  minor=${minor%%.*}
  # The release's time as the build date, so a rebuild gives the same binary.
  released=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$kube_info" 2>/dev/null || true)
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean${released:+ -X $pkg.buildDate=$released}"
  done
  go build "${build_flags[@]}" -ldflags "$ldflags" -o "$work/out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
  install_built kube-apiserver
  install_built kubectl
  log "built kube-apiserver and kubectl in $(elapsed "$t")"
fi

log "binaries ready in $bin ($(elapsed "$started") in all)"
echo "$bin"
