"""The log: where it goes (standard error, or a rotating file for a service without a terminal) and how much.

Only the command line configures logging (the library never adds handlers). Levels: --log-level (default info);
-v is debug, with one line per request and the values it writes; -vv shows the values each read answers too
(the "modbusd.values" logger, which the session reads once per connection).
"""

import argparse
import logging
import sys
from logging.handlers import RotatingFileHandler

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024  # --log-file is rotated at this size, as the events log is
LOG_FILE_COUNT = 5  # the log file and its rotated copies, .1 … .4
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(args: argparse.Namespace) -> None:
    """ValueError in one line when the log file cannot be written: better said at start than lost later."""
    level = logging.DEBUG if args.verbose else getattr(logging, (args.log_level or "info").upper())
    handler: logging.Handler
    if args.log_file:
        try:
            handler = RotatingFileHandler(args.log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_COUNT - 1,
                                          encoding="utf-8")  # fmt: skip
        except OSError as exc:
            raise ValueError(f"cannot write the log file {args.log_file}: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level, format=FORMAT, handlers=[handler])
    logging.getLogger("modbusd.values").setLevel(logging.DEBUG if args.verbose >= 2 else logging.INFO)
