"""The pure core: placement, matching, rating, catalog math.

Nothing in this package does I/O, opens a database session, starts a thread or keeps global
mutable state. Every function takes frozen snapshots and returns decisions.
"""
