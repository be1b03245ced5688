"""The ``aetk`` command line (installed as the package ``aetk.cli``).

Each command module pairs a thin Typer function (arguments only) with a plain function
that does the work and can be called from Python.
"""
