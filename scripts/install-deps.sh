#!/usr/bin/env bash
# Installs the system packages virtmasq's build, tests and demo need (Debian 12, as root).
# Idempotent: packages already present are left alone; no service is started on this host.
set -euo pipefail

PACKAGES=(
  dnsmasq-base        # the dnsmasq binary (the `dnsmasq` package would also add a service)
  iproute2            # ip netns / veth / bridge for the lab
  busybox             # udhcpc, a real DHCP client
  python3-scapy       # one-shot DHCP probes (PXE vendor class, no-offer checks)
  ndisc6              # rdisc6: router solicitations from lab clients (IPv6 tests)
  isc-dhcp-client     # dhclient -6: real DHCPv6 leases in the lab (IPv6 tests)
  libvirt0            # libvirt's client library, loaded at run time
  libvirt-clients     # virsh
  libvirt-daemon      # the test driver and a real libvirtd
  pkg-config
  dbus                # a private dbus-daemon for D-Bus tests
  systemd-container   # systemd-nspawn: a booted Debian with a system dnsmasq
  debootstrap
  ca-certificates
  qemu-system-x86 ipxe-qemu  # a real network boot from the lab: a VM with iPXE ROMs (tests/pxe_boot_qemu.rs)
  lintian             # checks the Debian package (tests/packaging.rs)
  rpm                 # rpmbuild and rpmspec: builds the RPM from packaging/rpm (tests/packaging.rs)
  shellcheck          # make lint checks every shell script (scripts/lint-shell.sh)
  protobuf-compiler   # protoc: the etcd-client crate generates etcd's gRPC API at build time
  etcd-server etcd-client  # a real etcd and etcdctl for the filter's etcd source (tests/filter_etcd.rs)
  openssl             # a CA and certificates made at test time for etcd over TLS (tests/filter_etcd_tls.rs)
)
# Where package scripts look for the policy that keeps them from starting services; tests point
# this elsewhere (tests/install_deps.rs), so that they never touch the host's.
POLICY_RC_D=${VIRTMASQ_POLICY_RC_D:-/usr/sbin/policy-rc.d}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

# Keep package scripts from starting services on this host while installing.
created_policy=no
if [ ! -e "$POLICY_RC_D" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC_D"
  chmod 0755 "$POLICY_RC_D"
  created_policy=yes
fi
# An `if`, not `[ ... ] && ...`: under `set -e` a false test as the trap's last command would
# become the script's exit status, and a machine that already had a policy-rc.d would fail.
cleanup() {
  if [ "$created_policy" = yes ]; then
    rm -f "$POLICY_RC_D"
  fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${#missing[@]} Debian packages (${missing[*]})"
echo "install-deps: downloading about 300 MB: from under a minute to several on a slow mirror"
start=$SECONDS
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done in $((SECONDS - start)) s"
