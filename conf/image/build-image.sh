#!/bin/bash
# Builds multipy's image here, with no registry: what `make image` and tests/image run.
#
#   conf/image/build-image.sh [--context-only] [--storage DIR] [--work DIR] [--tag NAME] [--archive FILE]
#
# 1. The build context (WORK/context): the recipe (conf/image), multipy's wheel and the wheels of
#    conf/image/requirements.txt, downloaded with $PYTHON's pip (its configured index or find-links).
#    --context-only stops here (`make image-context`: for `docker build`, see the Containerfile).
# 2. The build root: Debian bookworm from mmdebstrap (deb.debian.org, or $MIRROR), with
#    conf/image/build-packages, committed as a local image.
# 3. conf/image/Containerfile, built by buildah from that build root with chroot isolation, in a
#    network namespace of its own (no network: everything comes from the context), then committed
#    as --tag (default localhost/multipy:<version>). The build root image is removed. With --archive,
#    the image is also written there as an OCI archive (`buildah push`: layers gzip-compressed), for
#    `ctr images import`, `podman load` or a registry.
#
# --storage DIR: containers storage of its own (DIR/root, DIR/runroot, vfs driver), as tests use, and
#   nothing written outside it and WORK; default: the host's (/var/lib/containers/storage), where podman
#   and buildah find the image. Never /etc/cni: buildah's CNI conf dir is in WORK.
# --work DIR: where the context and the build root's tar go (default: a temp dir, removed at exit).
# Steps 2 and 3 run in a private mount namespace: no mount of mmdebstrap's or of the storage outlives
# them, even when killed. Prints the glibc floor (also /opt/multipy/GLIBC_FLOOR in the image).
# Needs root, mmdebstrap, buildah and network access to the Debian mirror (not to any registry).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/multipy/__init__.py")
PYTHON=${PYTHON:-python3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
tag=localhost/multipy:$version
storage= work= archive= context_only=
args=("$@")
while [ $# -gt 0 ]; do
	case $1 in
	--storage) storage=$(realpath -m "$2"); shift 2 ;;
	--work) work=$(realpath -m "$2"); shift 2 ;;
	--tag) tag=$2; shift 2 ;;
	--archive) archive=$(realpath -m "$2"); shift 2 ;;
	--context-only) context_only=1; shift ;;
	*) echo "usage: $0 [--context-only] [--storage DIR] [--work DIR] [--tag NAME] [--archive FILE]" >&2; exit 2 ;;
	esac
done

if [ -z "${MULTIPY_IMAGE_NAMESPACE:-}" ]; then
	if [ -z "$work" ]; then
		work=$(mktemp -d /tmp/multipy-image.XXXXXX)
		trap 'rm -rf "$work"' EXIT
	fi
	context=$work/context
	rm -rf "$context" && mkdir -p "$context/recipe" "$context/wheels"
	echo "== context: $context"
	cp "$here/build_runtime.py" "$here/elf.py" "$here/probe.py" "$here/requirements.txt" "$here/build-packages" \
		"$here/Containerfile" "$context/recipe/"
	"$PYTHON" -m pip wheel -q --no-cache-dir --no-deps -w "$context/wheels" "$repo"
	"$PYTHON" -m pip download -q --no-cache-dir --no-deps --only-binary :all: -d "$context/wheels" -r "$here/requirements.txt"
	[ -n "$context_only" ] && exit 0
fi

# From here on in a private mount namespace: mmdebstrap's mounts in its build root and the storage's
# die with it, even when this is killed.
if [ -z "${MULTIPY_IMAGE_NAMESPACE:-}" ]; then
	status=0
	MULTIPY_IMAGE_NAMESPACE=1 unshare --mount --propagation private "$0" "${args[@]}" --work "$work" || status=$?
	exit $status
fi

buildah=buildah
[ -n "$storage" ] && buildah="buildah --root $storage/root --runroot $storage/runroot --storage-driver vfs"
root_image=localhost/multipy-build-root:$$
# buildah's CNI conf dir (it makes /etc/cni/net.d otherwise, which is the node's) and temp files: in WORK.
mkdir -p "$work/cni" "$work/tmp"
printf '[network]\nnetwork_config_dir = "%s"\n' "$work/cni" >"$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf TMPDIR=$work/tmp

echo "== build root (mmdebstrap bookworm)"
packages=$(grep -v '^#' "$here/build-packages" | tr '\n' ',' | sed 's/,*$//')
mmdebstrap --quiet --variant=apt --include="$packages" \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	bookworm "$work/build-root.tar" \
	"deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main"

# The Containerfile's build in a network namespace of its own, which has no network: it uses nothing
# but the context.
echo "== image $tag (buildah, conf/image/Containerfile)"
if [ -n "$storage" ] && [ "${storage#/var/lib/}" = "$storage" ] && [ "${work#/var/lib/}" = "$work" ]; then
	# With a storage of its own, nothing of buildah's outside it either: its blob info cache
	# (/var/lib/containers/cache) goes to an overlay of /var/lib whose upper layer is in WORK.
	mkdir -p "$work/var-lib/upper" "$work/var-lib/work"
	mount -t overlay multipy-image -o "lowerdir=/var/lib,upperdir=$work/var-lib/upper,workdir=$work/var-lib/work" /var/lib
fi
container=
cleanup() {
	[ -z "$container" ] || $buildah rm "$container" >/dev/null 2>&1 || true
	$buildah rmi "$root_image" >/dev/null 2>&1 || true
}
trap cleanup EXIT
container=$($buildah from scratch)
$buildah add --quiet "$container" "$work/build-root.tar" / >/dev/null
$buildah commit --quiet --rm "$container" "$root_image" >/dev/null
container=
rm -f "$work/build-root.tar"
unshare --net $buildah bud --isolation chroot --layers=false --build-arg BUILD_ROOT="$root_image" \
	--build-arg VERSION="$version" -f "$here/Containerfile" -t "$tag" "$work/context" 2>&1 | tee "$work/build.log"
if [ -n "$archive" ]; then
	$buildah push --quiet "$tag" "oci-archive:$archive:$tag"
	echo "== $archive: $(stat -c %s "$archive") bytes (layers gzip-compressed)"
fi
floor=$(sed -n 's/^glibc floor: \([0-9.]*\).*/\1/p' "$work/build.log")
echo "== built $tag; glibc floor $floor"
