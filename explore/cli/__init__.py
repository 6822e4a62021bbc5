"""The ``explore`` command line: thin typer commands over the pipeline stages.

    explore study --space cga                 # run or resume a study (Fashion-MNIST, CPU)
    explore report runs/cga                   # Pareto plot, trials CSV, markdown summary
    explore describe efficientvit_m0 --json   # params and MACs of a preset or config file
    explore bench attention                   # and bench models | proxy | repeatability

Bad input prints one ``error:`` line naming the option and value, exits with code 1, and writes
nothing. ``python -m explore.cli`` runs the same app.
"""

from explore.cli import study, models, bench, analysis, acceptance, latency, schedules, supernet, rerender  # noqa: F401, I001 - each registers its commands, in this order
from explore.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
