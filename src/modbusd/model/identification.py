"""Device identification objects (§6.21) and the conformity level they imply."""

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Final

VENDOR_NAME: Final = 0x00
PRODUCT_CODE: Final = 0x01
MAJOR_MINOR_REVISION: Final = 0x02
VENDOR_URL: Final = 0x03
PRODUCT_NAME: Final = 0x04
MODEL_NAME: Final = 0x05
USER_APPLICATION_NAME: Final = 0x06

OBJECT_NAMES: Final = {
    "vendor_name": VENDOR_NAME,
    "product_code": PRODUCT_CODE,
    "major_minor_revision": MAJOR_MINOR_REVISION,
    "vendor_url": VENDOR_URL,
    "product_name": PRODUCT_NAME,
    "model_name": MODEL_NAME,
    "user_application_name": USER_APPLICATION_NAME,
}

# The largest object that still fits one FC43 response: 253 - 7 header bytes - id and length bytes.
MAX_OBJECT_LENGTH: Final = 244

BASIC_LAST: Final = 0x02
REGULAR_LAST: Final = 0x7F
EXTENDED_LAST: Final = 0xFF


class Identification(MutableMapping[int, bytes]):
    """Object id → value. Strings are stored UTF-8 encoded; the three basic objects are mandatory."""

    def __init__(self, objects: Mapping[int, str | bytes] | None = None) -> None:
        self._objects: dict[int, bytes] = {}
        for object_id, value in (objects or {}).items():
            self[object_id] = value

    def __getitem__(self, object_id: int) -> bytes:
        return self._objects[object_id]

    def __setitem__(self, object_id: int, value: str | bytes) -> None:
        if not 0 <= object_id <= 0xFF:
            raise ValueError(f"object id {object_id} outside 0..255")
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > MAX_OBJECT_LENGTH:
            raise ValueError(
                f"object 0x{object_id:02X} is {len(data)} bytes; at most {MAX_OBJECT_LENGTH} fit a response"
            )
        self._objects[object_id] = data

    def __delitem__(self, object_id: int) -> None:
        if object_id <= BASIC_LAST:
            raise ValueError(f"object 0x{object_id:02X} is mandatory (§6.21)")
        del self._objects[object_id]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._objects))

    def __len__(self) -> int:
        return len(self._objects)

    @property
    def conformity_level(self) -> int:
        """0x81/0x82/0x83: the highest category present, with individual access (which modbusd supports)."""
        highest = max(self._objects, default=0)
        if highest > REGULAR_LAST:
            return 0x83
        if highest > BASIC_LAST:
            return 0x82
        return 0x81
