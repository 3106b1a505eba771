"""Use cases: the only layer that combines the API client, format modules,
the local filesystem and the relay. One module per use case; each returns
result objects and never prints.
"""
