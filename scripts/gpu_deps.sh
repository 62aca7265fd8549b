#!/usr/bin/env bash
# Unpacks the Debian packages the GPU machine lacks (libyaml, cJSON, xxHash: libraries and
# headers) into .deps/ (git-ignored), so a build there can use them:
#   make CUDA=1 EXTRA_CFLAGS="-I.deps/usr/include" \
#        EXTRA_LDFLAGS="-L.deps/usr/lib/x86_64-linux-gnu -Wl,-rpath,$PWD/.deps/usr/lib/x86_64-linux-gnu"
# (scripts/gpu_build.sh does exactly that). Run it here, then name .deps in the device call's carry.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .deps/debs
(cd .deps/debs && apt-get download libyaml-0-2 libyaml-dev libcjson1 libcjson-dev libxxhash0 libxxhash-dev)
for f in .deps/debs/*.deb; do dpkg -x "$f" .deps; done
rm -rf .deps/debs
echo "unpacked into .deps/"
