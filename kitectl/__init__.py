"""kitectl: the command-line tool for Kontrol and kites (run Kontrol, get keys, find and call kites).

Importing this package is cheap: typer is loaded by kitectl.main, kitelib
and kontrol only inside the commands that use them.
"""

# Kept equal to kitelib.__version__ (a test checks it); importing kitelib here would cost about 50 ms.
__version__ = "0.1.0"
