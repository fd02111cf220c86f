"""Root pytest configuration: what the doctest run (`pytest --doctest-modules bench losses models reports`)
must not import. Doctest collection imports every module, so a module with side effects at import is
listed here."""

# runs the CLI when imported (`python -m bench`)
collect_ignore = ["bench/__main__.py"]
