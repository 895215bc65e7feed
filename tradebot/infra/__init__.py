"""Machinery around the product, kept off the domain's import graph.

* :mod:`~tradebot.infra.localpg` — the embedded PostgreSQL (created and started when ``DATABASE_URL`` is
  unset); only the application layer (:mod:`tradebot.app`), ``doctor``, ``demo`` and the ``local-db``
  commands use it.
* :mod:`~tradebot.infra.faults` — test-only crash points; the application layer passes
  :func:`~tradebot.infra.faults.crashpoint` to the cycle and the Upbit adapter as a hook.
* :mod:`~tradebot.infra.fsutil` — careful file-system helpers (private directories, complete writes).
"""
