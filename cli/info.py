"""``aetk info``: what this installation was built with and can run on."""

from __future__ import annotations

import typer


def collect_info() -> dict[str, object]:
    """Facts about the installation, as a plain dict (also used by bug reports)."""
    import torch

    import aetk
    from aetk import native

    facts: dict[str, object] = {
        "aetk": aetk.__version__,
        "native extension": native.is_built(),
        "CPU kernels": native.simd_path() or "not built",
        "CUDA kernels": native.cuda_built(),
        "torch": torch.__version__,
        "torch CUDA available": torch.cuda.is_available(),
    }
    try:
        import onnxruntime as ort

        facts["onnxruntime"] = ort.__version__
        facts["execution providers"] = ", ".join(ort.get_available_providers())
    except ImportError:
        facts["onnxruntime"] = "not installed"
        facts["execution providers"] = ""
    return facts


def info_cli(
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    facts = collect_info()
    if as_json:
        import json

        typer.echo(json.dumps(facts, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in facts.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        table.add_row(f"[bold]{key}[/bold]", str(value))
    Console().print(table)
