"""The web console: a single static page that talks to the REST API."""
