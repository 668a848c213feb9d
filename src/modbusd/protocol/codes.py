"""Function codes, exception codes and the specification's limits.

Section numbers refer to the MODBUS Application Protocol Specification V1.1b3 (§) and the
MODBUS Messaging on TCP/IP Implementation Guide V1.0b (TCP guide).
"""

from enum import IntEnum
from typing import Final


class FunctionCode(IntEnum):
    READ_COILS = 0x01
    READ_DISCRETE_INPUTS = 0x02
    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04
    WRITE_SINGLE_COIL = 0x05
    WRITE_SINGLE_REGISTER = 0x06
    READ_EXCEPTION_STATUS = 0x07
    DIAGNOSTICS = 0x08
    GET_COMM_EVENT_COUNTER = 0x0B
    GET_COMM_EVENT_LOG = 0x0C
    WRITE_MULTIPLE_COILS = 0x0F
    WRITE_MULTIPLE_REGISTERS = 0x10
    REPORT_SERVER_ID = 0x11
    MASK_WRITE_REGISTER = 0x16
    READ_WRITE_MULTIPLE_REGISTERS = 0x17
    ENCAPSULATED_INTERFACE_TRANSPORT = 0x2B


class ExceptionCode(IntEnum):
    """§7. 07 (NAK) survives only in the FC08/FC12 counter and event definitions."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    NEGATIVE_ACKNOWLEDGE = 0x07
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 0x0B


class DiagnosticSubFunction(IntEnum):
    """§6.8.1. The serial-line sub-functions modbusd implements; the rest are exception 01."""

    RETURN_QUERY_DATA = 0x00
    RESTART_COMMUNICATIONS_OPTION = 0x01
    RETURN_DIAGNOSTIC_REGISTER = 0x02
    CHANGE_ASCII_INPUT_DELIMITER = 0x03
    FORCE_LISTEN_ONLY_MODE = 0x04
    CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER = 0x0A
    RETURN_BUS_MESSAGE_COUNT = 0x0B
    RETURN_BUS_COMMUNICATION_ERROR_COUNT = 0x0C
    RETURN_BUS_EXCEPTION_ERROR_COUNT = 0x0D
    RETURN_SERVER_MESSAGE_COUNT = 0x0E
    RETURN_SERVER_NO_RESPONSE_COUNT = 0x0F
    RETURN_SERVER_NAK_COUNT = 0x10
    RETURN_SERVER_BUSY_COUNT = 0x11
    RETURN_BUS_CHARACTER_OVERRUN_COUNT = 0x12
    CLEAR_OVERRUN_COUNTER_AND_FLAG = 0x14


class DeviceIdCode(IntEnum):
    """§6.21 Read Device ID code: three stream categories and one individual access."""

    BASIC = 0x01
    REGULAR = 0x02
    EXTENDED = 0x03
    INDIVIDUAL = 0x04


MEI_READ_DEVICE_IDENTIFICATION: Final = 0x0E

MAX_PDU: Final = 253  # §4.1: 256-byte serial ADU minus address and CRC
MAX_READ_BITS: Final = 2000  # §6.1, §6.2: 0x07D0
MAX_READ_REGISTERS: Final = 125  # §6.3, §6.4: 0x7D
MAX_WRITE_BITS: Final = 1968  # §6.11: 0x07B0
MAX_WRITE_REGISTERS: Final = 123  # §6.12: 0x7B
MAX_RW_READ_REGISTERS: Final = 125  # §6.17: 0x7D
MAX_RW_WRITE_REGISTERS: Final = 121  # §6.17: 0x79
MAX_EVENT_LOG: Final = 64  # §6.10: 0..64 event bytes
ADDRESS_SPACE: Final = 0x10000  # every table is addressed 0..65535 (§4.4)
COIL_ON: Final = 0xFF00  # §6.5
COIL_OFF: Final = 0x0000

# Serial Line §2.2: 0 is the broadcast address, 1..247 individual devices, 248..255 reserved.
BROADCAST_UNIT_ID: Final = 0
MIN_UNIT_ID: Final = 1
MAX_UNIT_ID: Final = 247
