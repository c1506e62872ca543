"""mixseg training: networks, the three-branch loss, the shard loader, fit, evaluate, report.

It reads the label shards only through ``pipeline.core.shards.ShardReader``.
"""
