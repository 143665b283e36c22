"""First-party stages that are not compression methods: plain fine-tuning and export.

They are registered through the ``yoloslim`` entry points like any third-party plugin.
"""
