"""Sans-I/O data model: tables, devices, diagnostics. Imports `modbusd.protocol` only."""
