#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages ringtrain needs to build and test on the CPU
# (Open MPI, OpenBLAS, libyaml, cJSON, hwloc, xxHash). Uses sudo when not root. Skips the
# install when every package is already present.
set -eu
pkgs="build-essential pkg-config openmpi-bin libopenmpi-dev libopenblas-dev libyaml-dev libcjson-dev libhwloc-dev libxxhash-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing:$missing"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
