"""The web console: static ES modules (no build step) served from the package, talking to the REST API."""
