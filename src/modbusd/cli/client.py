"""`modbusd get` and `modbusd set`: a client of a running server's control API, on the standard library only.

`watch.py` and `log.py` are clients of the same API and use `api` and `ApiError` from here.
"""

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from modbusd.cli.errors import EXIT_OK, _fail, _Parser
from modbusd.cli.options import _port, _positive
from modbusd.cli.parser import DEFAULT_HTTP_PORT

TOKEN_VARIABLE = "MODBUSD_HTTP_TOKEN"  # get/set read the bearer token from here unless --token is given
POINT_HELP = "a data point's name, or an address: 30001, 1.0.ir, 40001; POINT:COUNT for COUNT values from there"


class ApiError(Exception):
    """The API answered with an error (`refused`: its message) or could not be reached (`refused` False)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def _client_parser(name: str, description: str) -> _Parser:
    parser = _Parser(prog=f"modbusd {name}", description=description)
    parser.add_argument(
        "--http", type=_port, default=DEFAULT_HTTP_PORT, metavar="PORT",
        help=f"port of the running server's control API on 127.0.0.1 (default {DEFAULT_HTTP_PORT})",
    )  # fmt: skip
    parser.add_argument("--token", help=f"bearer token, if the server requires one (or set {TOKEN_VARIABLE})")
    parser.add_argument("--timeout", type=_positive(float), default=5.0, help=argparse.SUPPRESS)
    return parser


def open_api(args: argparse.Namespace, method: str, path: str, body: object = None, timeout: float | None = None
             ) -> Any:  # fmt: skip
    """The open response to one request (`path` with its query); ApiError when it fails."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{args.http}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        return urllib.request.urlopen(request, timeout=timeout or args.timeout)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise ApiError(str(message), refused=True) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"no control API on 127.0.0.1 port {args.http} ({reason}): start the server with "
                       f"--http {args.http}, or [http] in its device file", refused=False) from None  # fmt: skip


def api(args: argparse.Namespace, method: str, path: str, body: object = None) -> Any:
    """One request's JSON answer; ApiError when it fails."""
    try:
        with open_api(args, method, path, body) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:  # the connection broke mid-answer, or the answer is no JSON
        raise ApiError(f"the control API on 127.0.0.1 port {args.http} broke off its answer ({exc})",
                       refused=False) from None  # fmt: skip


def split_count(text: str) -> tuple[str, int | None]:
    """``40001:10`` → ("40001", 10); no colon → (text, None). Names and addresses never hold a colon.

    ValueError for a count that is no whole number; the API checks its range (1..125 registers' worth)."""
    point, colon, count = text.rpartition(":")
    if not colon:
        return text, None
    if not count.isascii() or not count.isdigit() or len(count) > 9:
        raise ValueError(f"{text}: the count after ':' must be a whole number, as in {point or 'POINT'}:10")
    return point, int(count)


def point_path(point: str, count: int | None, vtype: str | None) -> str:
    query = {k: v for k, v in (("type", vtype), ("count", None if count is None else str(count))) if v is not None}
    suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
    return f"/points/{urllib.parse.quote(point, safe='')}{suffix}"


def rows(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A range answer → (address as typed, raw registers or bit, value text) per value."""
    return [(value["address"], value["raw"], value["text"]) for value in answer["values"]]


def columns(lines: list[tuple[str, ...]]) -> list[str]:
    """Each column as wide as its widest cell, two spaces apart (the last one not padded)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[-1]]).rstrip()
            for line in lines]  # fmt: skip


def _call(args: argparse.Namespace, method: str, point: str, query: str = "", body: object = None) -> int:
    """One request to the control API; prints the value's text, or one line saying what went wrong."""
    try:
        answer = api(args, method, f"/points/{urllib.parse.quote(point, safe='')}{query}", body)
    except ApiError as exc:
        return _fail(f"{point}: {exc}" if exc.refused else str(exc))
    print(answer["text"])
    return EXIT_OK


def _get(argv: list[str]) -> int:
    parser = _client_parser("get", "Read a data point, any address, or a range of them from a running modbusd "
                                   "(its control API).")  # fmt: skip
    parser.add_argument("point", metavar="POINT[:COUNT]", help=POINT_HELP)
    parser.add_argument("type", metavar="TYPE", nargs="?", help="read it as this type: float, uint, string:8, …")
    parser.add_argument("--table", action="store_true", help="an aligned table: address, raw registers, value")
    args = parser.parse_args(argv)
    try:
        point, count = split_count(args.point)
    except ValueError as exc:
        return _fail(str(exc))
    if count is None and not args.table:
        return _call(args, "GET", point, f"?type={urllib.parse.quote(args.type)}" if args.type else "")
    try:
        answer = api(args, "GET", point_path(point, 1 if count is None else count, args.type))
    except ApiError as exc:
        return _fail(f"{args.point}: {exc}" if exc.refused else str(exc))
    found = rows(answer)
    if args.table:
        print("\n".join(columns([("ADDRESS", "RAW", "VALUE"), *found])))
    else:
        print("\n".join(columns([(address, text) for address, _, text in found])))
    return EXIT_OK


def _set(argv: list[str]) -> int:
    parser = _client_parser("set", "Write a data point or any address of a running modbusd (its control API).")
    parser.add_argument("point", metavar="POINT", help="a data point's name, or an address: 30001, 1.0.ir, 40001")
    parser.add_argument(
        "value", metavar="[TYPE:]VALUE", help="float:21.5, ushort:0x1F, bit:on, bits:1010-0000-1111-0000, "
        "string:8:Pump 1; a named point takes its own type without TYPE:",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return _call(args, "PUT", args.point, body={"value": args.value})
