"""The MaaS gateway: an OpenAI-compatible ``/v1`` proxy in front of model replicas.

Hot path: a raw asyncio (uvloop) + httptools HTTP/1.1 server (``http``), persistent keep-alive
connections to replicas (``upstream``), in-memory key grants (``keys``), leased token buckets over a
shared store (``limits``), and a local append-only usage spool that is written before a response is
acknowledged and shipped in batches to a ``UsageSink`` (``usage``). See docs in ``proxy``.
"""
