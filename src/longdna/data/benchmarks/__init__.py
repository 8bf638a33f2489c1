"""Benchmarks: the on-disk format, the suites materialised into it and the carving of their splits."""
