"""Interfaces over HTTP: the REST API, the console page, metrics and health."""
