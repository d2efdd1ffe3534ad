"""jaxseg tests. A regular package, so `from tests import ...` finds these modules, not the
top-level `tests` package that mmsegmentation's wheel installs into site-packages."""
