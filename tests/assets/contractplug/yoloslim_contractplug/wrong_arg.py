"""A hook implementation that asks for an argument the hook does not pass."""

from yoloslim import hookimpl


@hookimpl
def yoloslim_report_columns(measurement, ctx, colour):
    return {"colour": colour}
