"""I/O only: move bytes between the operating system and a Session. Never the data model, never PDUs."""
