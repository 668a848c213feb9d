"""modbusd: a Modbus server for the command line and for embedding."""

from modbusd.config.writer import device_file
from modbusd.model.device import Device, Layout
from modbusd.model.names import InvalidName, Location, Table, parse_address
from modbusd.model.points import Point, UnknownPoint
from modbusd.model.values import InvalidType, InvalidValue, Order, ValueType, format_value, parse_typed_value
from modbusd.protocol.codes import ExceptionCode, FunctionCode
from modbusd.protocol.errors import (
    FrameError,
    IllegalDataAddress,
    IllegalDataValue,
    IllegalFunction,
    ModbusError,
    ServerDeviceFailure,
)
from modbusd.server import Endpoint, Server
from modbusd.simulate import GeneratorError, UnknownGenerator
from modbusd.version import __version__

__all__ = [
    "Device",
    "Endpoint",
    "ExceptionCode",
    "FrameError",
    "FunctionCode",
    "GeneratorError",
    "IllegalDataAddress",
    "IllegalDataValue",
    "IllegalFunction",
    "InvalidName",
    "InvalidType",
    "InvalidValue",
    "Layout",
    "Location",
    "ModbusError",
    "Order",
    "Point",
    "Server",
    "ServerDeviceFailure",
    "Table",
    "UnknownGenerator",
    "UnknownPoint",
    "ValueType",
    "__version__",
    "device_file",
    "format_value",
    "parse_address",
    "parse_typed_value",
]
