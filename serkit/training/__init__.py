"""Training of serkit's neural models (needs the ``torch`` extra: ``pip install 'serkit[torch]'``)."""
