"""Sans-I/O Modbus codec: bytes in, messages out, and back. Imports the standard library only."""
