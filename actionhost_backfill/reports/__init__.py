"""The read-only reports: ``status`` and ``verify`` (``status.py``), ``explain``,
``validate``, and the operator views with the provenance of their hosts.

A report reads the cell database and the state schema and writes neither.
"""
