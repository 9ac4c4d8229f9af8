"""Leasing market: price books, contracts, amendments, the price index and breach risk."""
