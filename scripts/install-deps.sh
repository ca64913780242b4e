#!/usr/bin/env bash
# Installs the Debian packages ChainFS builds, tests and benchmarks with.
# Idempotent: packages already present are not fetched again, and apt-get
# update runs only when something is missing. Run as root (or with sudo).
set -euo pipefail

# Build and libraries (the README says why each one is there).
PKGS=(
  build-essential cmake pkg-config clang libclang-rt-dev
  libssl-dev          # HMAC handshake (libcrypto)
  libinih-dev         # config files
  liblmdb-dev         # embedded KV backend + chunk metadata
  liburing-dev        # O_DIRECT data I/O on storage targets
  libisal-dev         # CRC32C (Intel ISA-L: carry-less-multiply folding)
  libcurl4-openssl-dev libjansson-dev  # etcd v3 JSON gateway client
  libfuse3-dev fuse3  # FUSE mount
  libcmocka-dev       # unit tests
  etcd-server etcd-client  # distributed KV backend, started by tests
  fio                 # benchmark baselines and verify runs
  python3-dev         # the Python module (CPython extension for /usr/bin/python3)
  python3-numpy       # examples/torch_dataset.py without PyTorch (torch is too big for CI)
  procps psmisc iproute2 git sqlite3
  acl                 # setfacl / getfacl for the POSIX ACL tests
  e2fsprogs           # mkfs.ext4: loop-mounted targets of scripts/netns_cluster.py (disk-full fault)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "install-deps: all packages present"; exit 0; }

# Root installs directly; otherwise sudo, if it can run without a password
# or can ask on a terminal. Anything else (plain `make` in a script, no
# sudo) stops with one line naming the command that fixes it.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
    SUDO="sudo"
  else
    echo "install-deps: missing Debian packages: ${missing[*]}; run 'make deps' as root (or with sudo)" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# etcd-server's package starts a system etcd on 127.0.0.1:2379; our tests
# start their own members on other ports, so the system one is left alone.
