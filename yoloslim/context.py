"""The run context every hook receives, and its round trip through the environment for DDP ranks."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yoloslim.errors import ExportError
from yoloslim.recipe import Stage

if TYPE_CHECKING:
    from yoloslim.plugins import PluginManager

ENV_VAR = "YOLOSLIM_CONTEXT"


@dataclass
class SlimContext:
    """What a plugin may know about the run.

    Attributes:
        run_dir: Directory of the whole run (``runs/slim/<name>``).
        data: Dataset YAML path.
        imgsz: Image size for training, export and measurement.
        device: Ultralytics device string (``"cpu"``, ``"0"``, ``"0,1"``).
        stage: The current recipe stage, or None outside a recipe.
        stage_dir: Directory of the current stage's outputs.
        recipe_path: Recipe file, if any.
        model: The run's input checkpoint, the original (a stage may use it, e.g. as the teacher).
        state: Free-form per-run state shared by plugins (not carried to DDP ranks).
        trainer: The SlimTrainer while a training stage runs, else None.
        plugins: The plugin manager (rebuilt, not serialized).
    """

    run_dir: Path = Path("runs/slim/run")
    data: str | None = None
    imgsz: int = 320
    device: str = "cpu"
    stage: Stage | None = None
    stage_dir: Path | None = None
    recipe_path: str | None = None
    model: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    trainer: Any = None
    plugins: PluginManager | None = field(default=None, repr=False)

    @property
    def logger(self) -> logging.Logger:
        """Logger for plugins (``yoloslim.plugin.<stage type>``)."""
        return logging.getLogger(f"yoloslim.plugin.{self.stage.type if self.stage else 'run'}")

    def get_plugins(self) -> PluginManager:
        """Return this run's plugin manager, loading the process-wide one if none was given."""
        if self.plugins is None:
            from yoloslim.plugins import get_plugin_manager

            self.plugins = get_plugin_manager()
        return self.plugins

    def export(self, checkpoint: str | Path, fmt: str, out: str | Path, **options: Any) -> Path:
        """Export ``checkpoint`` to ``fmt`` through the ``yoloslim_export`` hook.

        Raises:
            ExportError: If no loaded plugin exports ``fmt``.
        """
        options.setdefault("imgsz", self.imgsz)
        path = self.get_plugins().call(
            "yoloslim_export", checkpoint=Path(checkpoint), fmt=fmt, out=Path(out), options=options, ctx=self
        )
        if path is None:
            raise ExportError(
                f"no loaded plugin exports format '{fmt}'; install one that does "
                "(see 'yoloslim plugins') or choose another format"
            )
        return Path(path)

    def finetune(
        self,
        model: Any,
        checkpoint: str | Path,
        *,
        epochs: int | None = None,
        train: dict[str, Any] | None = None,
        train_args: dict[str, Any] | None = None,
        name: str = "train",
    ) -> Path:
        """Fine-tune ``model`` with the core's trainer (every plugin's training hooks fire); return its best checkpoint.

        This is what the core does after a ``"model"`` stage's transform; a stage that trains on its own terms (an
        artifact stage's quantization-aware training, iterative prune-then-train rounds) calls it.

        Args:
            model: The model to train as it is (e.g. a pruned ``DetectionModel``; it is not rebuilt from a YAML).
            checkpoint: The checkpoint ``model`` came from (recorded as Ultralytics' ``model`` argument).
            epochs: Epochs (default: the current stage's ``epochs``).
            train: Ultralytics training arguments on top of the stage's ``train`` (which already holds the stage
                type's ``train_defaults``, the recipe's and the command line's).
            train_args: The checkpoint's own ``train_args``: batch, optimizer and augmentation are inherited from them
                (``yoloslim.pipeline.INHERITED_TRAIN_ARGS``); the stage's arguments win.
            name: Folder of the Ultralytics run inside the stage directory (``<stage_dir>/<name>/weights/...``).

        Returns:
            The run's ``best.pt`` (``last.pt`` when no best was saved). ``last.pt`` beside it is the resumable state.
        """
        from yoloslim.pipeline import finetune

        if self.stage is None:
            raise RuntimeError("SlimContext.finetune needs a current stage (ctx.stage)")
        stage = self.stage
        if epochs is not None or train:
            stage = dataclasses.replace(
                stage, epochs=stage.epochs if epochs is None else epochs, train={**stage.train, **(train or {})}
            )
        return finetune(model, stage, self, Path(checkpoint), train_args, name=name)

    # --- DDP round trip -------------------------------------------------------------------------

    def to_json(self) -> str:
        """Serialize what a DDP rank needs to rebuild this context (not ``state``/``trainer``)."""
        return json.dumps(
            {
                "run_dir": str(self.run_dir),
                "data": self.data,
                "imgsz": self.imgsz,
                "device": self.device,
                "stage": self.stage.to_dict() if self.stage else None,
                "stage_dir": str(self.stage_dir) if self.stage_dir else None,
                "recipe_path": self.recipe_path,
                "model": self.model,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SlimContext:
        """Inverse of :meth:`to_json`; the plugin set is reloaded from entry points."""
        d = json.loads(text)
        return cls(
            run_dir=Path(d["run_dir"]),
            data=d["data"],
            imgsz=d["imgsz"],
            device=d["device"],
            stage=Stage.from_dict(d["stage"]) if d["stage"] else None,  # options rebuilt from the plugins
            stage_dir=Path(d["stage_dir"]) if d["stage_dir"] else None,
            recipe_path=d["recipe_path"],
            model=d.get("model"),
        )

    @classmethod
    def from_env(cls) -> SlimContext | None:
        """Rebuild the context a parent process exported with :meth:`exported`, if any."""
        text = os.environ.get(ENV_VAR)
        return cls.from_json(text) if text else None

    @contextmanager
    def exported(self) -> Iterator[None]:
        """Put this context into the environment, where Ultralytics' DDP subprocesses inherit it."""
        old = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = self.to_json()
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = old
