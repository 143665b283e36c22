"""A plugin whose stage-type declaration raises (it would declare 'shrinkwrap')."""

from yoloslim import hookimpl


@hookimpl
def yoloslim_stage_types():
    raise RuntimeError("shrinkwrap options are not ready")
