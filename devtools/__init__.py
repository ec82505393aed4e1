"""Developer tooling, outside the product's entry points: the local service stack (``landmarks dev``),
isolated stacks for tests, and the demo's sample data from Debian's gcompris-qt-data."""
