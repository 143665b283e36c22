"""SlimTrainer: Ultralytics' DetectionTrainer, keeping the model it is given and firing yoloslim hooks.

What it changes, and nothing else:

- ``get_model`` keeps a given module (a pruned or wrapped model is never rebuilt from its YAML).
- The training loss gets the terms plugins return from ``yoloslim_extra_loss``, each logged by
  name in the progress bar and ``results.csv`` (``train/<name>``).
- Training-loop hooks fire at Ultralytics' own callback points (``run_callbacks``) and after each
  optimizer step; ``yoloslim_model_to_save`` filters what every checkpoint stores.
- On CPU it uses every core instead of Ultralytics' ``cpu_count - 1`` (1 thread on 2 cores).

Multi-GPU: Ultralytics' DDP launcher pickles the trainer *class* (by its import path, this
module), the arguments and the model, and rebuilds the trainer in each rank with
``SlimTrainer(cfg, overrides, _callbacks)``. The yoloslim context cannot ride in the arguments
(Ultralytics rejects unknown keys), so ``train()`` exports it to the ``YOLOSLIM_CONTEXT``
environment variable, which the ranks inherit; each rank's ``__init__`` rebuilds the context
and reloads the plugins from entry points. Hooks are not registered as Ultralytics callbacks,
so nothing of yoloslim is pickled and nothing fires twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG
from ultralytics.utils import torch_utils as ul_torch_utils
from ultralytics.utils.torch_utils import unwrap_model

from yoloslim.context import SlimContext
from yoloslim.errors import DataError, PluginError

LOGGER = logging.getLogger("yoloslim.trainer")

# Ultralytics callback event -> yoloslim hook fired right after Ultralytics' own callbacks.
_EVENT_HOOKS = {
    "on_train_start": "yoloslim_train_start",
    "on_train_batch_start": "yoloslim_batch_start",
    "on_train_epoch_end": "yoloslim_epoch_end",
    "on_train_end": "yoloslim_train_end",
}


def cpu_threads() -> int:
    """Threads for CPU training: ``YOLOSLIM_THREADS`` if set, else every core this process may use."""
    if os.environ.get("YOLOSLIM_THREADS"):
        return max(1, int(os.environ["YOLOSLIM_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _AtomicPath(type(Path())):  # type: ignore[misc]
    """A path whose ``write_bytes`` writes a temporary file and renames it (Ultralytics saves with ``write_bytes``)."""

    def write_bytes(self, data: bytes) -> int:  # type: ignore[override]
        from yoloslim.files import atomic_write_bytes

        atomic_write_bytes(self, bytes(data))
        return len(data)


class SlimCriterion:
    """Wraps a model's detection criterion and appends the plugins' extra loss terms."""

    def __init__(self, base: Any, trainer: SlimTrainer) -> None:
        """Wrap ``base`` (the model's Ultralytics criterion) for ``trainer``."""
        self.base = base
        self.trainer = trainer
        self.names: tuple[str, ...] | None = None

    def __getattr__(self, name: str) -> Any:
        # Ultralytics calls e.g. criterion.update() at epoch end; forward what we do not define.
        if name in {"base", "trainer", "names"}:
            raise AttributeError(name)
        return getattr(self.base, name)

    def __call__(self, preds: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return Ultralytics' loss with the extra terms appended, and the extended loss-item dict."""
        loss, items = self.base(preds, batch)
        model = unwrap_model(self.trainer.model)
        if not model.training:
            return loss, items
        ctx = self.trainer.ctx
        terms: dict[str, torch.Tensor] = {}
        for result in ctx.get_plugins().call("yoloslim_extra_loss", batch=batch, preds=preds, model=model, ctx=ctx):
            for name, value in (result or {}).items():
                if name in terms or name in items:
                    raise PluginError(f"extra loss term '{name}' is returned twice; plugins must use unique names")
                terms[name] = value
        if self.names is None:
            self.names = tuple(terms)
        elif set(terms) - set(self.names):
            raise PluginError(
                f"extra loss terms {sorted(set(terms) - set(self.names))} appeared after the first batch; "
                "a plugin must return the same term names from the first batch on (use 0 when inactive)"
            )
        if not self.names:
            return loss, items
        bs = batch["img"].shape[0]
        values = [terms[n].reshape(()).to(loss.dtype) if n in terms else loss.new_zeros(()) for n in self.names]
        for n, v in zip(self.names, values):
            if not torch.isfinite(v):
                LOGGER.warning("extra loss term '%s' is not finite (%s)", n, float(v))
        extra = torch.stack(values)
        return torch.cat([loss.reshape(-1), extra * bs]), {
            **items,
            **{n: v.detach() for n, v in zip(self.names, values)},
        }


class SlimTrainer(DetectionTrainer):
    """DetectionTrainer that keeps its model, fires yoloslim hooks and adds plugin loss terms.

    Use it like Ultralytics' own trainer::

        YOLO("pruned.pt").train(data="data.yaml", epochs=5, trainer=SlimTrainer)

    or directly, with a module: ``SlimTrainer(overrides={...}, model=module, ctx=ctx).train()``.
    """

    def __init__(
        self,
        cfg: Any = DEFAULT_CFG,
        overrides: dict[str, Any] | None = None,
        _callbacks: dict | None = None,
        model: nn.Module | None = None,
        ctx: SlimContext | None = None,
    ) -> None:
        """Create the trainer.

        Args:
            cfg: Ultralytics configuration (defaults to Ultralytics' default.yaml).
            overrides: Ultralytics train arguments (``data``, ``epochs``, ``imgsz``, ...).
            _callbacks: Ultralytics callbacks (passed through).
            model: A detection model to train as it is; when None, ``overrides["model"]`` is used.
            ctx: The yoloslim context; rebuilt from ``YOLOSLIM_CONTEXT`` (DDP ranks) or empty.
        """
        # select_device() (called by BaseTrainer.__init__) sets torch's CPU threads from this global.
        ul_torch_utils.NUM_THREADS = cpu_threads()
        self.ctx = ctx or SlimContext.from_env() or SlimContext()
        super().__init__(cfg, overrides, _callbacks)
        self.ctx.trainer = self
        if self.ctx.data is None:
            self.ctx.data = str(self.args.data)
        if model is not None:
            self.model = self._keep(model)

    def _keep(self, model: nn.Module) -> nn.Module:
        nc = getattr(model, "nc", None)
        if nc is not None and nc != self.data["nc"]:
            raise DataError(
                f"the model has {nc} classes {list(getattr(model, 'names', {}).values())} but dataset "
                f"'{self.args.data}' has {self.data['nc']} {list(self.data['names'].values())}; "
                "fine-tune on the dataset the model was trained on"
            )
        for p in model.parameters():
            if p.dtype.is_floating_point:
                p.requires_grad_(True)
        LOGGER.info(
            "keeping the given model (%d parameters), not rebuilding it from its YAML",
            sum(p.numel() for p in model.parameters()),
        )
        return model

    def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> nn.Module:
        """Return ``weights`` itself when it is a module (keeps pruned widths), else build from ``cfg``."""
        if isinstance(weights, nn.Module):
            return self._keep(weights.float())
        return super().get_model(cfg=cfg, weights=weights, verbose=verbose)

    def train(self) -> Any:
        """Train, with the context exported to the environment so DDP ranks can rebuild it."""
        with self.ctx.exported():
            return super().train()

    def run_callbacks(self, event: str) -> None:
        """Run Ultralytics' callbacks for ``event``, then the matching yoloslim hook."""
        if event == "on_train_start":
            self._install_criterion()
        super().run_callbacks(event)
        hook = _EVENT_HOOKS.get(event)
        if hook is not None:
            self.ctx.get_plugins().call(hook, trainer=self, ctx=self.ctx)

    def optimizer_step(self) -> None:
        """Step the optimizer (Ultralytics), then fire ``yoloslim_after_optimizer_step``."""
        super().optimizer_step()
        self.ctx.get_plugins().call("yoloslim_after_optimizer_step", trainer=self, ctx=self.ctx)

    def _install_criterion(self) -> None:
        model = unwrap_model(self.model)
        base = getattr(model, "criterion", None) or model.init_criterion()
        if not isinstance(base, SlimCriterion):
            model.criterion = SlimCriterion(base, self)

    @property
    def extra_loss_names(self) -> tuple[str, ...]:
        """Names of the plugin loss terms seen so far."""
        crit = getattr(unwrap_model(self.model), "criterion", None) if isinstance(self.model, nn.Module) else None
        return (crit.names or ()) if isinstance(crit, SlimCriterion) else ()

    def label_loss_items(self, loss_items: Any = None, prefix: str = "train") -> Any:
        """Label loss items; plugin terms are training-only, so they are left out of ``val/``."""
        result = super().label_loss_items(loss_items, prefix)
        if prefix != "val":
            return result
        drop = {f"val/{n}" for n in self.extra_loss_names}
        if isinstance(result, dict):
            return {k: v for k, v in result.items() if k not in drop}
        return [k for k in result if k not in drop]

    def save_model(self) -> bool:
        """Save checkpoints (Ultralytics), storing what ``yoloslim_model_to_save`` returns, each written atomically.

        Ultralytics writes ``last.pt``/``best.pt`` in place; a full disk or a kill mid-write would leave a truncated
        file at the final name. Here they go to a temporary name and are renamed.
        """
        self.last, self.best = _AtomicPath(self.last), _AtomicPath(self.best)
        live = self.ema.ema
        stored = self.ctx.get_plugins().chain("yoloslim_model_to_save", live, "model", ctx=self.ctx)
        if stored is live:
            return super().save_model()
        self.ema.ema = stored
        try:
            return super().save_model()
        finally:
            self.ema.ema = live
