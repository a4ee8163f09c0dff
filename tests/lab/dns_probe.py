#!/usr/bin/env python3
"""One DNS query over UDP to a server in the lab, the answers printed as JSON.

Usage: dns_probe.py SERVER NAME TYPE [--timeout S]
Prints {"rcode": N, "answers": ["A 10.0.0.1", "SRV 10 10 389 ldap.lab.", "TXT a,b", ...]}
or {"rcode": null} when no answer came in time.
"""

import argparse
import json
import random
import socket

from scapy.layers.dns import DNS, DNSQR


def rdata(rr):
    kind = {1: "A", 28: "AAAA", 12: "PTR", 33: "SRV", 16: "TXT"}.get(rr.type, str(rr.type))
    if kind == "SRV":
        target = rr.target.decode() if isinstance(rr.target, bytes) else str(rr.target)
        return f"SRV {rr.priority} {rr.weight} {rr.port} {target}"
    if kind == "TXT":
        parts = rr.rdata if isinstance(rr.rdata, list) else [rr.rdata]
        return "TXT " + ",".join(p.decode() if isinstance(p, bytes) else str(p) for p in parts)
    value = rr.rdata
    if isinstance(value, bytes):
        value = value.decode()
    return f"{kind} {value}"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("server")
    p.add_argument("name")
    p.add_argument("qtype")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args()
    qid = random.randrange(1, 65535)
    query = DNS(id=qid, rd=1, qd=DNSQR(qname=args.name, qtype=args.qtype))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(args.timeout)
    s.sendto(bytes(query), (args.server, 53))
    try:
        while True:
            data, _ = s.recvfrom(4096)
            reply = DNS(data)
            if reply.id == qid:
                break
    except socket.timeout:
        print(json.dumps({"rcode": None}))
        return
    answers = [rdata(reply.an[i]) for i in range(reply.ancount)] if reply.ancount else []
    print(json.dumps({"rcode": reply.rcode, "answers": answers}))


if __name__ == "__main__":
    main()
