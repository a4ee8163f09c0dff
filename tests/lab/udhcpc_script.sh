#!/bin/sh
# shellcheck disable=SC2154 # udhcpc passes ip, router, siaddr, ... in the environment
# udhcpc event script for the integration-test lab (tests/lab/mod.rs).
# It never configures the interface: on "bound" it records what the server
# sent, one key=value per line, in the file named by $LAB_LEASE_OUT.
case "$1" in
bound | renew)
	[ -n "$LAB_LEASE_OUT" ] || exit 1
	{
		echo "ip=$ip"
		echo "serverid=$serverid"
		echo "router=$router"
		echo "siaddr=$siaddr"
		echo "boot_file=$boot_file"
		echo "sname=$sname"
		echo "lease=$lease"
		echo "domain=$domain"
		echo "subnet=$subnet"
		echo "dns=$dns"
	} >"$LAB_LEASE_OUT.tmp" && mv "$LAB_LEASE_OUT.tmp" "$LAB_LEASE_OUT"
	;;
esac
exit 0
