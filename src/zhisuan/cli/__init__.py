"""The ``zhisuan`` command line: ``up``, ``agent`` and commands over the REST API."""
