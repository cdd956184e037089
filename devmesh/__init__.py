"""The dev mesh: herald on one machine (`make up`, the tests, the benchmark). Not shipped: the wheel excludes it,
so no production image carries a process launcher."""
