#!/bin/sh
# Install the Debian 12 packages the build and the tests need. Idempotent, quiet when all present.
set -e
PKGS="make gcc g++ clang llvm pkg-config libbpf-dev bpftool libelf-dev libdw-dev zlib1g-dev
libncurses-dev libmicrohttpd-dev libprotobuf-c-dev protobuf-c-compiler libcriterion-dev
python3 python3-pytest elfutils libc6-dbg tmux golang-go prometheus bpftrace libjemalloc2 libtcmalloc-minimal4
jq curl"
missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	"install ok installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages:$missing (run as root: apt-get install$missing)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
