"""The ``haictl`` command line."""
