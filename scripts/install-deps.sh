#!/bin/sh
# Installs the Debian 12 packages tyto needs, only when something is missing, so that `make run`
# and `make test` work on a fresh machine with no other step. --test adds what the tests use.
set -eu

pkgs="libhiredis-dev libevent-dev libyaml-dev libsodium-dev libcmocka-dev redis-server pkg-config gcc make"
if [ "${1:-}" = "--test" ]; then
    pkgs="$pkgs python3 python3-libtorrent curl haproxy openssl docker-compose faketime chromium fonts-dejavu-core"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "install-deps: missing$missing and not root (no sudo): install them with apt-get" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing >&2
