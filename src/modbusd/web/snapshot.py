"""``GET /snapshot``: the values the server holds now, as a device file that serves them again.

Written by `device_file`, the writer `modbusd clone` uses, so a snapshot is what a clone of this server would be:
table sizes, sparse tables, every value, the FC43 objects and the FC17 answer of each device of the default
endpoint. Data point names are not in it (a client cannot see them either): add the device file's points back by
hand, or merge the snapshot's ``[device.values]`` into your own file.
"""

import time

from modbusd import Server, device_file
from modbusd.web.window import units

MEDIA_TYPE = "application/toml"


def snapshot(server: Server, now: float | None = None) -> tuple[str, str]:
    """(the device file's text, a file name for it with the time it was taken)."""
    taken = time.localtime(now)
    found = units(server)
    devices = found[None] if None in found else {u: d for u, d in found.items() if u is not None}
    served = server.endpoints_info()[0]["listening"]  # the default endpoint's, first
    comment = (f"modbusd snapshot of the server on {served}, {time.strftime('%Y-%m-%d %H:%M:%S', taken)}\n"
               "serve it with: modbusd --config FILE")  # fmt: skip
    name = f"modbusd-snapshot-{time.strftime('%Y%m%d-%H%M%S', taken)}.toml"
    return device_file(devices, comment=comment), name
