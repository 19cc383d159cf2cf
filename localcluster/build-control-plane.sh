#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from
# Debian bookworm's `kubernetes` source package (no prebuilt control plane is
# reachable offline). Result is cached outside the repository:
#   ${LLM_SERVING_GKE_CACHE:-~/.cache/llm-serving-gke}/kubernetes-v1.20.2/bin
# Debian packages only kubectl from this tree (https://packages.debian.org/source/bookworm/kubernetes); the
# servers build from it in GOPATH/vendor mode with GOPROXY=off, as its debian/rules does.
set -euo pipefail

CACHE="${LLM_SERVING_GKE_CACHE:-$HOME/.cache/llm-serving-gke}"
VERSION=v1.20.2
OUT="$CACHE/kubernetes-$VERSION/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)

# Bump when the patches below change: cached binaries of an older recipe are rebuilt.
RECIPE="2 reflect2-1.0.2 openapi-empty-string"
have_all() {
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
  [ "$(cat "$OUT/.recipe" 2>/dev/null)" = "$RECIPE" ]
}
if have_all; then
  echo "control plane $VERSION already built in $OUT"
  exit 0
fi

# One build at a time. On a new machine `make cluster-up` and the attach scenario's second control plane both find
# no binaries while `make test` runs them in separate lanes; a second build's `rm -rf tree` below would delete the
# first one's source tree under its compiler ("chdir .../_output/local/go/src/k8s.io/kubernetes: no such file").
# flock(1) is util-linux, Essential on Debian.
mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then
  echo "another build of the control plane holds $CACHE/build.lock; waiting for it to end"
  flock 9
  if have_all; then
    echo "control plane $VERSION built meanwhile by the other run in $OUT"
    exit 0
  fi
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
need_pkgs=()
for p in golang-go rsync golang-github-modern-go-reflect2-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi

WORK="$CACHE/build"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
# A private deb-src list: the system's apt configuration is left untouched.
cat > "$WORK/apt/sources.list" <<SRC
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
SRC
APT_OPTS=(-o "Dir::Etc::sourcelist=$WORK/apt/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache")
cd "$WORK/src"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  apt-get "${APT_OPTS[@]}" update -qq
  apt-get "${APT_OPTS[@]}" source --download-only kubernetes
fi
TARBALL=$(ls kubernetes_*.orig.tar.gz | head -1)
rm -rf tree && mkdir tree
tar xzf "$TARBALL" -C tree --strip-components=1
cd tree

# reflect2 1.0.1 (vendored) crashes under Go >= 1.18 when a custom resource is
# served; swap in Debian's 1.0.2 source.
R2=$(dpkg -L golang-github-modern-go-reflect2-dev | grep -E '/github.com/modern-go/reflect2$' | head -1)
rm -rf vendor/github.com/modern-go/reflect2
cp -r "$R2" vendor/github.com/modern-go/reflect2

# go-openapi's type validator tests "zero value" by DeepEqual on two reflect.Value structs. Since Go
# 1.19 reflect.Zero and an interface holding "" share runtime.zeroVal, so every empty string in a
# custom resource is reported as null ("spec.rules.backendRefs.group in body must be of type string:
# \"null\"", and `default: ""` rejected). Before Go 1.19 that comparison was false for every non-nil
# value, so `data == nil` restores the behaviour 1.20 was released with.
for f in vendor/github.com/go-openapi/validate/type.go vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go; do
  sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
  grep -q '^\s*if data == nil {$' "$f" || { echo "patch of $f did not apply" >&2; exit 1; }
done

export GOPROXY=off CGO_ENABLED=0 GOPATH="$PWD/.go" GOCACHE="$WORK/gocache" HOME="$WORK/home" GOFLAGS=
mkdir -p .go/src/k8s.io "$HOME" && ln -sfn ../../.. .go/src/k8s.io/kubernetes
start=$(date +%s)
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" \
  KUBE_GIT_VERSION="$VERSION" KUBE_GIT_TREE_STATE=clean
mkdir -p "$OUT"
# Rename into place: the old binaries may be running (cp would fail with "Text file busy").
for b in "${BINARIES[@]}"; do cp "_output/bin/$b" "$OUT/$b.new" && mv -f "$OUT/$b.new" "$OUT/$b"; done
echo "$RECIPE" > "$OUT/.recipe"
echo "built ${BINARIES[*]} $VERSION in $(( $(date +%s) - start ))s -> $OUT"
cd "$WORK" && rm -rf src/tree
"$OUT/kube-apiserver" --version
