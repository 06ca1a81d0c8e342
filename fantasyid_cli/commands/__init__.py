"""One module per command; :mod:`fantasyid_cli.main` registers them."""
