"""The command groups of ``fieldsync``, one module each, registered in order by :mod:`workers.cli`."""
