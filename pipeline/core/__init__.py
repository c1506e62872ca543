"""The pipeline's core: typed config, errors, file I/O, the index, shards, parallel runs, verification."""
