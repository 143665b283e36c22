"""A plugin whose import fails, as a third-party package with a missing dependency would."""

import yoloslim_dependency_that_does_not_exist  # noqa: F401
