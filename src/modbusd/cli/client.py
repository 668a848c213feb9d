"""`modbusd get` and `modbusd set`: a client of a running server's control API, on the standard library only."""

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from modbusd.cli.errors import EXIT_OK, _fail, _Parser
from modbusd.cli.options import _port, _positive
from modbusd.cli.parser import DEFAULT_HTTP_PORT

TOKEN_VARIABLE = "MODBUSD_HTTP_TOKEN"  # get/set read the bearer token from here unless --token is given


def _client_parser(name: str, description: str) -> _Parser:
    parser = _Parser(prog=f"modbusd {name}", description=description)
    parser.add_argument(
        "--http", type=_port, default=DEFAULT_HTTP_PORT, metavar="PORT",
        help=f"port of the running server's control API on 127.0.0.1 (default {DEFAULT_HTTP_PORT})",
    )  # fmt: skip
    parser.add_argument("--token", help=f"bearer token, if the server requires one (or set {TOKEN_VARIABLE})")
    parser.add_argument("--timeout", type=_positive(float), default=5.0, help=argparse.SUPPRESS)
    return parser


def _call(args: argparse.Namespace, method: str, point: str, query: str = "", body: object = None) -> int:
    """One request to the control API; prints the value's text, or one line saying what went wrong."""
    url = f"http://127.0.0.1:{args.http}/points/{urllib.parse.quote(point, safe='')}{query}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        return _fail(f"{point}: {message}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(f"no control API on 127.0.0.1 port {args.http} ({reason}): start the server with "
                     f"--http {args.http}, or [http] in its device file")  # fmt: skip
    print(answer["text"])
    return EXIT_OK


def _get(argv: list[str]) -> int:
    parser = _client_parser("get", "Read a data point or any address from a running modbusd (its control API).")
    parser.add_argument("point", metavar="POINT", help="a data point's name, or an address: 30001, 1.0.ir, 40001")
    parser.add_argument("type", metavar="TYPE", nargs="?", help="read it as this type: float, uint, string:8, …")
    args = parser.parse_args(argv)
    query = f"?type={urllib.parse.quote(args.type)}" if args.type else ""
    return _call(args, "GET", args.point, query)


def _set(argv: list[str]) -> int:
    parser = _client_parser("set", "Write a data point or any address of a running modbusd (its control API).")
    parser.add_argument("point", metavar="POINT", help="a data point's name, or an address: 30001, 1.0.ir, 40001")
    parser.add_argument(
        "value", metavar="[TYPE:]VALUE", help="float:21.5, ushort:0x1F, bit:on, bits:1010-0000-1111-0000, "
        "string:8:Pump 1; a named point takes its own type without TYPE:",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return _call(args, "PUT", args.point, body={"value": args.value})
