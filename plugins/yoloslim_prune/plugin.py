"""The pruning plugin's hook implementations (work in progress)."""
