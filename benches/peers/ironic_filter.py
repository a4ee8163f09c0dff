"""One sync of OpenStack ironic's own dnsmasq PXE filter (ironic/pxe_filter/dnsmasq.py).

Usage: python ironic_filter.py HOSTSDIR LISTS.json

LISTS.json is the file a user gives `virtmasq filter sync --from`: {"allow": [...],
"deny": [...]}. Unknown MACs are denied, as in virtmasq's run. Prints the time of ironic's
`sync()` call alone, in milliseconds; the caller times the whole process.
"""

import json
import sys
import time

from ironic.conf import CONF
from ironic.pxe_filter import dnsmasq


def main():
    hostsdir, lists = sys.argv[1], sys.argv[2]
    CONF([], project="ironic", default_config_files=[])
    CONF.set_override("dhcp_hostsdir", hostsdir, group="pxe_filter")
    with open(lists) as f:
        wanted = json.load(f)
    start = time.monotonic()
    dnsmasq.sync(wanted.get("allow", []), wanted.get("deny", []), False)
    print("%.3f" % ((time.monotonic() - start) * 1000))


main()
