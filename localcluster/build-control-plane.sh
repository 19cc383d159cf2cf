#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from
# Debian bookworm's `kubernetes` source package (no prebuilt control plane is
# reachable offline). Result is cached outside the repository:
#   ${LLM_SERVING_GKE_CACHE:-~/.cache/llm-serving-gke}/kubernetes-v1.20.2/bin
# Facts behind each step: shared/reference/local-test-infrastructure.md section 3.
set -euo pipefail

CACHE="${LLM_SERVING_GKE_CACHE:-$HOME/.cache/llm-serving-gke}"
VERSION=v1.20.2
OUT="$CACHE/kubernetes-$VERSION/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)

have_all() {
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}
if have_all; then
  echo "control plane $VERSION already built in $OUT"
  exit 0
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

export GOPROXY=off CGO_ENABLED=0 GOPATH="$PWD/.go" GOCACHE="$WORK/gocache" HOME="$WORK/home" GOFLAGS=
mkdir -p .go/src/k8s.io "$HOME" && ln -sfn ../../.. .go/src/k8s.io/kubernetes
start=$(date +%s)
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" \
  KUBE_GIT_VERSION="$VERSION" KUBE_GIT_TREE_STATE=clean
mkdir -p "$OUT"
for b in "${BINARIES[@]}"; do cp "_output/bin/$b" "$OUT/$b"; done
echo "built ${BINARIES[*]} $VERSION in $(( $(date +%s) - start ))s -> $OUT"
cd "$WORK" && rm -rf src/tree
"$OUT/kube-apiserver" --version
