"""The ``mozaiks`` command line: run the runtime, mint a development token, validate workflows."""
