"""A hook implementation whose name is no yoloslim hook."""

from yoloslim import hookimpl


@hookimpl
def yoloslim_nonexistent(ctx):
    return None
