"""`modbusd log [--follow [--per-second N]]`: the control API's live request log, one line per request.

``--follow`` streams new requests until Ctrl-C (exit code 0); a lost control API ends it with one line and exit
code 2, since what was missed meanwhile cannot be known. ``--per-second N`` asks the API for at most N records a
second (``GET /log?follow=1&per_second=N``, the web console's cap): on a busy server the rest are counted, not
recorded, and a line says how many were not shown. Without ``--follow``: the last requests the server kept (it
records only while someone follows). The line is the ``-v`` log's, with the values written and the latency:
``12:00:01.234 127.0.0.1:50312 tcp unit=1 fc=16 addr=0 qty=2 values=[1, 2] -> ok (0.081 ms)``, with
``endpoint=meter7`` after the transport for a request to one of the server's named endpoints.
"""

import json
import time
from typing import Any

from modbusd.cli.client import ApiError, _client_parser, open_api
from modbusd.cli.errors import EXIT_OK, _fail
from modbusd.cli.options import _per_second

QUIET_TIMEOUT = 30.0  # seconds without a byte (the API sends a keep-alive line every few) before it counts as lost


def line(record: dict[str, Any]) -> str:
    """One record as one line; ``{"dropped": N}`` says how many this follower lost, ``{"not_shown": N}`` how many
    were past its cap (--per-second)."""
    if "dropped" in record:
        return f"… {record['dropped']} requests not shown: this terminal fell behind"
    if "not_shown" in record:
        return f"… {record['not_shown']} requests not shown: more than --per-second allows"
    when = time.strftime("%H:%M:%S", time.localtime(record["time"])) + f".{int(record['time'] * 1000) % 1000:03d}"
    parts = [when, record["client"], record["transport"]]
    if record.get("endpoint") is not None:  # one of the server's named endpoints; the default one has none
        parts.append(f"endpoint={record['endpoint']}")
    parts += [f"unit={record['unit_id']}", f"fc={record['function']}"]
    for key, short in (("address", "addr"), ("quantity", "qty"), ("write_address", "write_addr")):
        if key in record:
            parts.append(f"{short}={record[key]}")
    if "values" in record:
        more = f" +{record['more_values']} more" if record.get("more_values") else ""
        parts.append(f"values=[{', '.join(str(v) for v in record['values'])}{more}]")
    if "data" in record:
        parts.append(f"data={record['data']}")
    outcome = record["outcome"]
    if outcome == "exception":
        outcome = f"exception {record['exception']} ({record['exception_name'].lower().replace('_', ' ')})"
    parts.append(f"-> {outcome}")
    if "latency_ms" in record:
        parts.append(f"({record['latency_ms']:.3f} ms)")
    return " ".join(parts)


def _log(argv: list[str]) -> int:
    parser = _client_parser("log", "Show the requests a running modbusd answers (its control API's request log).")
    parser.add_argument("-f", "--follow", action="store_true", help="show each new request as it comes, until Ctrl-C")
    parser.add_argument("--per-second", type=_per_second, metavar="N",
                        help="with --follow: at most N requests a second (the rest are counted, and a line says how "
                        "many); a busy server then records only those")  # fmt: skip
    args = parser.parse_args(argv)
    if args.per_second is not None and not args.follow:
        return _fail("--per-second caps what --follow shows: add --follow")
    path = "/log?follow=1" if args.follow else "/log"
    if args.per_second is not None:
        path += f"&per_second={args.per_second}"
    try:
        with open_api(args, "GET", path, timeout=QUIET_TIMEOUT if args.follow else None) as response:
            for raw in response:
                if raw.strip():  # an empty line is the API's keep-alive
                    print(line(json.loads(raw)), flush=True)
    except ApiError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # our own standard output's reader left (`modbusd log | head`): main() ends quietly
        raise
    except (OSError, ValueError) as exc:  # the stream broke off (the server stopped), or a line is no JSON
        return _fail(f"lost the control API on 127.0.0.1 port {args.http} ({exc})")
    except KeyboardInterrupt:
        return EXIT_OK
    if args.follow:
        return _fail(f"the control API on 127.0.0.1 port {args.http} ended the request log (the server stopped)")
    return EXIT_OK
