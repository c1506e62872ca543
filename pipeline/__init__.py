"""mixseg preprocessing: dataset sources, split, UCM, box soft labels, label shards."""

__version__ = "0.1.0"
