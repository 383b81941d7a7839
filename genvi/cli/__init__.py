"""The ``genvi`` command."""
