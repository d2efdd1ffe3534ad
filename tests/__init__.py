"""jaxseg's tests. A regular package so `tests.stepkit` resolves here, not to the
stray top-level `tests` package that mmsegmentation 1.2.2 installs into site-packages."""
