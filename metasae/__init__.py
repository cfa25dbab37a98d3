"""metasae: sparse autoencoders and meta-SAEs, to any depth, on vision models."""

__version__ = "0.1.0"
