"""Errors of the codec and the data model.

A `ModbusError` is answered with an exception response and the connection goes on. A `FrameError` means
the byte stream itself cannot be trusted any more; it is never answered with an exception code.
"""

from collections.abc import Sequence
from typing import ClassVar

from modbusd.protocol.codes import ExceptionCode


class ModbusError(Exception):
    """The request is answered with an exception response (§7) carrying `code`."""

    code: ClassVar[ExceptionCode] = ExceptionCode.SERVER_DEVICE_FAILURE


class IllegalFunction(ModbusError):
    code = ExceptionCode.ILLEGAL_FUNCTION


class IllegalDataAddress(ModbusError):
    code = ExceptionCode.ILLEGAL_DATA_ADDRESS


class IllegalDataValue(ModbusError):
    code = ExceptionCode.ILLEGAL_DATA_VALUE


class ServerDeviceFailure(ModbusError):
    code = ExceptionCode.SERVER_DEVICE_FAILURE


class ServerDeviceBusy(ModbusError):
    code = ExceptionCode.SERVER_DEVICE_BUSY


class GatewayPathUnavailable(ModbusError):
    code = ExceptionCode.GATEWAY_PATH_UNAVAILABLE


class GatewayTargetDeviceFailedToRespond(ModbusError):
    code = ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND


class FrameError(Exception):
    """The stream can no longer be framed (MBAP length outside 2..254): drop the connection.

    The bad frame itself is never answered, but the whole frames that came before it in the same bytes were
    real requests: `frames` holds them, and `reply` the responses to them, filled in by whoever answers them.
    """

    def __init__(self, message: str, frames: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.frames = tuple(frames)
        self.reply = b""
