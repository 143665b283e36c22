"""Exception types of yoloslim.

Every error that bad input can cause is one of these, raised where the input is first seen, with a
message that names the input and the fix. The CLI prints ``str(error)`` on one line and exits
non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class YoloslimError(Exception):
    """Base class of every user-facing yoloslim error."""


class ModelError(YoloslimError):
    """A checkpoint or model file is missing, corrupt, or not a detection model."""


class DataError(YoloslimError):
    """A dataset YAML or its images/labels are missing or malformed."""


class RecipeError(YoloslimError):
    """A recipe file is missing, malformed, or names an unknown stage, key or wrong type."""


class PluginError(YoloslimError):
    """A plugin failed to load, is missing for a stage, or raised inside a hook."""


class ExportError(YoloslimError):
    """No plugin can export to the requested format, or the export failed."""
