"""Errors of the codec and the data model.

A `ModbusError` is answered with an exception response and the connection goes on. A `FrameError` means
the byte stream itself cannot be trusted any more; it is never answered with an exception code.
"""

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
    """The stream can no longer be framed (MBAP length outside 2..254): drop the connection, answer nothing."""
