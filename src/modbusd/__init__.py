"""modbusd: a Modbus server for the command line and for embedding."""

from modbusd.model.device import Device, Layout
from modbusd.protocol.errors import (
    FrameError,
    IllegalDataAddress,
    IllegalDataValue,
    IllegalFunction,
    ModbusError,
    ServerDeviceFailure,
)
from modbusd.server import Server
from modbusd.version import __version__

__all__ = [
    "Device",
    "FrameError",
    "IllegalDataAddress",
    "IllegalDataValue",
    "IllegalFunction",
    "Layout",
    "ModbusError",
    "Server",
    "ServerDeviceFailure",
    "__version__",
]
