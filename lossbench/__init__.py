"""lossbench: which loss should I train this with? Answered with measurements."""

__version__ = "0.1.0"
