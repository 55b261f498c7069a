"""Hypothesis profiles for the whole suite.

``ci`` (chosen when the environment variable CI is set) is derandomized, so a CI run
is reproducible and never red by chance; ``dev`` explores new examples on every run.
``HYPOTHESIS_PROFILE=ci`` picks the CI profile locally.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
DEFAULT_PROFILE = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or DEFAULT_PROFILE)
