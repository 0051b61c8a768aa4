"""posthorn: the whole post office in one package."""

__version__ = "0.1.0"
