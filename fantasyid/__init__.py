"""fantasyid: train, run and measure identity-preserving text-to-video models of the FantasyID kind."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
