"""Utilisation history: the fleet's allocated share sampled every minute, kept as hour and day buckets."""
