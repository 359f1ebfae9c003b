"""Shared test settings: keep torch to the cores we have so parallel test processes don't thrash."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
