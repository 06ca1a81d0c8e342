"""The ``fantasyid`` command line: a thin Typer + Rich layer over the :mod:`fantasyid` library."""
