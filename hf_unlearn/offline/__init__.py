"""Offline material, apart from the library's core: synthetic benchmark-format data generators and the
tiny-model factory (the ``tiny-llama`` preset) used by ``make demo``, the benchmarks and the tests, so
that everything runs without the Hub."""
