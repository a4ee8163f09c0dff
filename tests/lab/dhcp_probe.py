#!/usr/bin/python3
"""Send one DHCPDISCOVER and print the matching DHCPOFFER as JSON.

Used by the integration-test lab (tests/lab/mod.rs) inside a client network
namespace. The packet socket is opened before the DISCOVER is sent, so a
reply can never arrive before we listen. Output is a single JSON object on
stdout: {"offer": null} when nothing matching arrived before the timeout,
otherwise {"offer": {...}} with the BOOTP fields and every option as hex.
"""

import argparse
import json
import os
import select
import struct
import sys
import time

from scapy.config import conf

conf.verb = 0
conf.checkIPaddr = False

from scapy.arch.linux import L2Socket  # noqa: E402
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

BOOTP_FIXED = 236  # op .. file, before the magic cookie
MAGIC = b"\x63\x82\x53\x63"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--mac", required=True)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--vendor-class")
    p.add_argument("--client-arch", type=int)
    p.add_argument("--client-ndi", action="store_true")
    p.add_argument("--uuid", help="32 hex digits")
    p.add_argument("--user-class")
    p.add_argument("--ipxe-175", action="store_true")
    p.add_argument(
        "--request-list",
        help="option 55 as comma-separated codes (default: common options, "
        "without 66/67 so that dnsmasq puts the boot file in the BOOTP field)",
    )
    return p.parse_args()


def option(code, payload):
    if len(payload) > 255:
        sys.exit("option %d longer than 255 bytes" % code)
    return bytes([code, len(payload)]) + payload


def discover(args, mac, xid):
    """Build the BOOTP/DHCP payload of a DHCPDISCOVER by hand."""
    opts = option(53, b"\x01")
    opts += option(61, b"\x01" + mac)
    opts += option(57, struct.pack("!H", 1500))
    if args.request_list is None:
        prl = [1, 3, 6, 12, 15, 26, 28, 42, 43, 51, 54, 58, 59, 60, 97, 119, 175]
    else:
        prl = [int(c) for c in args.request_list.split(",") if c]
    opts += option(55, bytes(prl))
    if args.vendor_class is not None:
        opts += option(60, args.vendor_class.encode())
    if args.user_class is not None:
        opts += option(77, args.user_class.encode())
    if args.client_arch is not None:
        opts += option(93, struct.pack("!H", args.client_arch))
    if args.client_ndi:
        opts += option(94, bytes([1, 3, 16]))
    if args.uuid is not None:
        uuid = bytes.fromhex(args.uuid)
        if len(uuid) != 16:
            sys.exit("--uuid needs 16 bytes")
        opts += option(97, b"\x00" + uuid)
    if args.ipxe_175:
        # iPXE feature flags: HTTP (0x13) and DNS (0x17) supported.
        opts += option(175, bytes([0x13, 1, 1, 0x17, 1, 1]))
    opts += b"\xff"
    fixed = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 0, xid, 0, 0x8000,
        bytes(4), bytes(4), bytes(4), bytes(4),
        mac.ljust(16, b"\x00"), bytes(64), bytes(128),
    )
    return fixed + MAGIC + opts


def parse_options(buf, out):
    """Parse an option area into out (code -> bytes), concatenating repeats."""
    i = 0
    while i < len(buf):
        code = buf[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(buf):
            break
        length = buf[i + 1]
        out[code] = out.get(code, b"") + buf[i + 2:i + 2 + length]
        i += 2 + length


def cstr(field):
    text = field.split(b"\x00", 1)[0]
    return text.decode("latin-1") if text else None


def ip4(b):
    return ".".join(str(x) for x in b)


def parse_reply(payload, xid):
    """Return the decoded offer if payload is a DHCPOFFER for xid, else None."""
    if len(payload) < BOOTP_FIXED + 4 or payload[0] != 2:
        return None
    if struct.unpack("!I", payload[4:8])[0] != xid:
        return None
    if payload[BOOTP_FIXED:BOOTP_FIXED + 4] != MAGIC:
        return None
    opts = {}
    parse_options(payload[BOOTP_FIXED + 4:], opts)
    sname_field = payload[44:108]
    file_field = payload[108:236]
    overload = opts.get(52, b"\x00")[:1]
    overload = overload[0] if overload else 0
    if overload & 1:
        parse_options(file_field, opts)
    if overload & 2:
        parse_options(sname_field, opts)
    if opts.get(53) != b"\x02":
        return None
    server_id = opts.get(54)
    return {
        "yiaddr": ip4(payload[16:20]),
        "siaddr": ip4(payload[20:24]),
        "server_id": ip4(server_id) if server_id and len(server_id) == 4 else None,
        "file": None if overload & 1 else cstr(file_field),
        "sname": None if overload & 2 else cstr(sname_field),
        "options": {str(k): v.hex() for k, v in sorted(opts.items())},
    }


def main():
    args = parse_args()
    mac = bytes.fromhex(args.mac.replace(":", ""))
    if len(mac) != 6:
        sys.exit("--mac needs 6 bytes")
    xid = struct.unpack("!I", os.urandom(4))[0]
    frame = (
        Ether(src=args.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / discover(args, mac, xid)
    )
    deadline = time.monotonic() + args.timeout
    sock = L2Socket(iface=args.iface)
    offer = None
    try:
        sock.send(frame)
        while offer is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([sock.ins], [], [], remaining)
            if not ready:
                break
            _, raw, _ = sock.recv_raw()
            if not raw or len(raw) < 14 or raw[12:14] != b"\x08\x00":
                continue
            try:
                pkt = Ether(raw)
            except Exception:  # malformed frame: not ours
                continue
            if UDP not in pkt or pkt[UDP].dport != 68:
                continue
            offer = parse_reply(bytes(pkt[UDP].payload), xid)
    finally:
        sock.close()
    json.dump({"xid": "%08x" % xid, "offer": offer}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
