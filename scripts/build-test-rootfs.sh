#!/usr/bin/env bash
# Builds (once, cached) the minimal Debian 12 root that the container tests boot with
# systemd-nspawn: a real systemd, a system bus and the Debian `dnsmasq` service with its default
# configuration, plus libvirt0 because the virtmasq binary links libvirt.
#
#   scripts/build-test-rootfs.sh [--variant libvirt] [DEST]      (as root; default DEST below)
#
# The `libvirt` variant adds libvirt-daemon-system and libvirt-clients (a real libvirtd, whose
# `default` network is not autostarted), for the packaging tests; its default DEST differs.
#
# The root is built in a temporary directory next to DEST and renamed into place only when
# complete, so an interrupted build never leaves a half root behind. An flock on DEST.lock makes
# parallel callers (tests starting at once) build it only once; the others wait and reuse it.
# Bump the -vN suffix of the default DEST whenever the package list or the tweaks change.
set -euo pipefail

VARIANT=base
if [ "${1:-}" = --variant ]; then
  VARIANT=${2:?--variant needs a name}
  shift 2
fi
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus,libpam-systemd,dnsmasq,iproute2,busybox,libvirt0
case "$VARIANT" in
  base) DEST=${1:-/var/cache/virtmasq-tests/rootfs-bookworm-v1} ;;
  libvirt)
    DEST=${1:-/var/cache/virtmasq-tests/rootfs-bookworm-libvirt-v1}
    INCLUDE=$INCLUDE,libvirt-daemon-system,libvirt-clients
    ;;
  *) printf 'build-test-rootfs: unknown variant %s (base, libvirt)\n' "$VARIANT" >&2; exit 2 ;;
esac
# Units that slow down or break a boot inside a container, or start work nobody asked for.
MASK=(
  systemd-networkd-wait-online.service # waits up to 2 min for links it does not manage
  systemd-firstboot.service            # may prompt for locale/timezone on a "first boot"
  getty@tty1.service                   # no ttys in the container
  console-getty.service
  getty-static.service
  systemd-resolved.service # would take over :53 from dnsmasq (not in minbase; masked anyway)
  systemd-timesyncd.service
  apt-daily.timer
  apt-daily-upgrade.timer
  dpkg-db-backup.timer
  e2scrub_all.timer
  e2scrub_reap.service
  fstrim.timer
)

log() { printf 'build-test-rootfs: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot)"
[ -d "$DEST" ] && exit 0
command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/install-deps.sh)"

# The first Debian archive this machine's apt uses (not -security / -updates style archives).
find_mirror() {
  local f uris=()
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822: "URIs: a b c" in stanzas whose Types include deb.
    while read -r line; do uris+=("$line"); done < <(
      awk 'BEGIN{RS=""; FS="\n"}
           /(^|\n)Types:[^\n]*(^|[ \t])deb([ \t]|\n|$)/ {
             for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) {
               sub(/^URIs:[ \t]*/, "", $i); n = split($i, u, /[ \t]+/)
               for (j = 1; j <= n; j++) print u[j]
             }
           }' "$f")
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # one-line style: deb [opts] URI suite components
    while read -r line; do uris+=("$line"); done < <(
      sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f")
  done
  shopt -u nullglob
  local u
  for u in "${uris[@]}"; do
    case "$u" in
      *security* | *updates* | *backports*) continue ;;
      *debian*) printf '%s\n' "${u%/}"; return 0 ;;
    esac
  done
  return 1
}

mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
if ! flock -n 9; then
  log "another build of $DEST is running; waiting for it (at most 15 min)"
  flock -w 900 9 || die "timed out waiting for the lock on $DEST.lock"
fi
# Someone else may have finished it while we waited.
[ -d "$DEST" ] && exit 0
# Until debootstrap runs (see on_signal below), a signal just ends the script after the current
# command; leftovers are removed by the next run.
trap 'exit 130' INT TERM

# Unmounts everything under $1 (debootstrap mounts /proc and /sys inside its target) and
# removes it without ever crossing into a mount that could not be unmounted.
remove_tree() {
  local dir=$1 m
  [ -e "$dir" ] || return 0
  # Mount points in /proc/mounts have their blanks escaped (\040): one word each.
  # shellcheck disable=SC2013
  for m in $(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$dir"
}

# Leftovers of builds that were killed (we hold the lock, so none of these is in progress).
for stale in "$DEST".tmp.*; do
  [ -e "$stale" ] || continue
  log "removing the leftover $stale"
  remove_tree "$stale"
done

# Every process below $1, deepest first.
descendants() {
  local c
  # The children files are lists of pids separated by blanks.
  # shellcheck disable=SC2013
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    descendants "$c"
    echo "$c"
  done
}

# Ends debootstrap and everything it started (dpkg, chroot...), at most ~10 s.
stop_tree() {
  local pid=$1
  # shellcheck disable=SC2046 # word splitting of the pid list is intended
  kill -TERM $(descendants "$pid") "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  # shellcheck disable=SC2046
  kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
}

MIRROR=$(find_mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
TMP=$(mktemp -d "$DEST.tmp.XXXXXX")
DEBOOTSTRAP=
# An `if`, not `[ ... ] && ... && wait`: under `set -e` the failing `wait` (debootstrap ended by
# a signal) would exit with its status, 143, before `exit 130` ran.
on_signal() {
  trap '' INT TERM
  if [ -n "$DEBOOTSTRAP" ]; then
    stop_tree "$DEBOOTSTRAP"
    wait "$DEBOOTSTRAP" 2>/dev/null || true
  fi
  exit 130
}
trap 'remove_tree "$TMP"' EXIT
trap on_signal INT TERM

START=$(date +%s)
log "debootstrap $SUITE from $MIRROR into $TMP"
log "this is done once and cached in $DEST: about a minute (two with libvirt) on a fast mirror"
DEBLOG=$TMP/debootstrap.log
# In the background: bash runs a trap only once its foreground command returns, and a
# signalled build should stop now, not after debootstrap has finished.
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$TMP/root" "$MIRROR" >"$DEBLOG" 2>&1 &
DEBOOTSTRAP=$!
if ! wait "$DEBOOTSTRAP"; then
  tail -n 30 "$DEBLOG" >&2
  [ -f "$TMP/root/debootstrap/debootstrap.log" ] && tail -n 30 "$TMP/root/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi
DEBOOTSTRAP=
rm -f "$DEBLOG"
ROOT=$TMP/root

# Offline unit changes: systemctl --root works on an unbooted tree.
systemctl --root="$ROOT" --quiet mask "${MASK[@]}"
systemctl --root="$ROOT" --quiet enable dnsmasq.service
[ -f "$ROOT/etc/dnsmasq.conf" ] || die "the root has no /etc/dnsmasq.conf"

if [ "$VARIANT" = libvirt ]; then
  # libvirt's `default` network would add virbr0 and its own dnsmasq to every container.
  rm -f "$ROOT/etc/libvirt/qemu/networks/autostart/default.xml"
fi

echo virtmasq-test >"$ROOT/etc/hostname"
# debootstrap copied this machine's resolv.conf. The containers live in lab namespaces with no
# way out; dnsmasq inside should not even try an upstream server (tests write one if they need it).
printf '# no upstream servers in test containers\n' >"$ROOT/etc/resolv.conf"
# Empty: systemd-nspawn hands each container its own id; no "first boot" either.
: >"$ROOT/etc/machine-id"
# Keep the journal in /run: nothing to clean up, and journalctl -u still works.
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$ROOT/etc/systemd/journald.conf.d/volatile.conf"
# No package manager runs in the tests; drop the downloaded .debs (~100 MB).
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
printf 'suite=%s\nvariant=%s\nmirror=%s\ninclude=%s\nbuilt=%s\n' "$SUITE" "$VARIANT" "$MIRROR" "$INCLUDE" \
  "$(date -u +%FT%TZ)" >"$ROOT/etc/virtmasq-test-rootfs"

mv -T "$ROOT" "$DEST"
sync -f "$DEST" 2>/dev/null || true
log "built $DEST in $(($(date +%s) - START)) s ($(du -sh "$DEST" | cut -f1))"
