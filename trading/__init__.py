"""Pairs trading of a rolled TLT at-the-money buy-write against TLTW on Interactive Brokers."""

__version__ = "0.1.0"
