#!/bin/sh
# make bench-peers: virtmasq side by side with its peers and floors, in one run
# (benches/peers/). Builds, once, a Python venv with OpenStack ironic at a pinned version in
# a cache directory (not in the tree): the filter comparison runs ironic's own code.
set -eu

IRONIC_VERSION=39.0.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/virtmasq/bench-peers"
venv="$cache/ironic-$IRONIC_VERSION"

if ! "$venv/bin/python" -c 'import ironic.pxe_filter.dnsmasq' 2>/dev/null; then
    echo "bench-peers: installing ironic $IRONIC_VERSION into $venv (once; a few minutes)"
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "ironic==$IRONIC_VERSION"
fi

echo "machine load before the run: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
IRONIC_PYTHON="$venv/bin/python" nice -n 5 cargo bench --locked --bench peers
