"""The exchange: offers, requests, the anonymous order book, clearing rounds and matches → contracts."""
