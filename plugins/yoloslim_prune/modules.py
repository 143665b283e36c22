"""Where checkpoints pruned by yoloslim 0.1.0 pickled the split blocks; they now live in :mod:`yoloslim.structure`.

Kept so that such a checkpoint still unpickles (``yoloslim_prune.modules.SplitC2f`` resolves to the same class).
"""

from yoloslim import SplitC2f, SplitC2PSA

__all__ = ["SplitC2f", "SplitC2PSA"]
