"""``bgone models``: list, describe, download, verify and register BiRefNet checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bgone.cli.console import console, err_console
from bgone.errors import BgoneError
from bgone.weights.hub import fetch_weights, find_local, verify_checksum
from bgone.weights.registry import REGISTRY, public_names, register
from bgone.weights.variants import Variant

if TYPE_CHECKING:
    import torch

app = typer.Typer(help="List, download, verify and describe BiRefNet checkpoints.", no_args_is_help=True)


@app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model.")] = False) -> None:
    """Every registered model with its backbone, resolution, patch order and whether it is on disk."""
    if as_json:
        for variant in REGISTRY:
            local = find_local(variant)
            print(
                json.dumps(
                    {**variant.to_dict(), "local_path": str(local) if local else None, "fal_names": public_names(variant)}
                )
            )
        return
    table = Table(title="bgone model zoo")
    for column in ("name", "backbone", "design", "resolution", "patch order", "fal names", "on disk"):
        table.add_column(column)
    for variant in REGISTRY:
        table.add_row(
            variant.name,
            variant.backbone,
            variant.design,
            variant.resolution_label,
            variant.patch_order,
            ", ".join(public_names(variant)),
            "yes" if find_local(variant) else "no",
        )
    console.print(table)


def _parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    counts = {"total": sum(p.numel() for p in model.parameters())}
    for name in ("bb", "squeeze_module", "decoder"):
        counts[name] = sum(p.numel() for p in getattr(model, name).parameters())
    return counts


@app.command("info")
def info(
    model: Annotated[str, typer.Argument(help="Registry name, fal model name or checkpoint path.")],
    load: Annotated[
        bool, typer.Option("--load", help="Load the weights (downloading them if needed) and run them once.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Describe a model: where it comes from, its architecture, and (with --load) the loaded network."""
    import torch

    from bgone.nn.birefnet import ArchConfig, BiRefNet
    from bgone.weights.checkpoints import build_model, read_state_dict
    from bgone.weights.loader import load_model, resolve_source

    report: dict[str, object] = {}
    variant = REGISTRY.find(model)
    if variant is None and not Path(model).expanduser().exists():
        variant = REGISTRY.get(model)  # raises a helpful UnknownModelError for a bad name
    if variant is not None:
        local = find_local(variant)
        report.update(variant.to_dict())
        report["fal_names"] = public_names(variant)
        report["local_path"] = str(local) if local else None
    if load:
        started = time.perf_counter()
        net = load_model(model, device=device, dtype=dtype)
        load_s = time.perf_counter() - started
        x = torch.zeros(1, 3, 64, 64, device=next(net.parameters()).device, dtype=next(net.parameters()).dtype)
        started = time.perf_counter()
        with torch.inference_mode():
            out = net(x)
        report.update(
            checkpoint=str(net.checkpoint_path),
            checkpoint_bytes=Path(str(net.checkpoint_path)).stat().st_size,
            load_seconds=round(load_s, 2),
            smoke_test=f"64x64 forward -> {tuple(out.shape)} logits in {time.perf_counter() - started:.2f}s",
            device=str(x.device),
            dtype=str(x.dtype).removeprefix("torch."),
        )
        arch = net.arch
    elif variant is not None and variant.backbone != "auto":
        arch = ArchConfig(variant.backbone, variant.design, variant.patch_order)
        with torch.device("meta"):
            net = BiRefNet(arch)
    else:
        path, found = resolve_source(model)
        state = read_state_dict(path)
        net = build_model(state, patch_order=found.patch_order if found else "einops", source=str(path))
        arch = net.arch
        report.setdefault("local_path", str(path))
    report["architecture"] = {
        "backbone": arch.backbone,
        "design": arch.design,
        "patch_order": arch.patch_order,
        "batch_norm": arch.batch_norm,
        "decoder_channels": list(arch.channels),
        "parameters": _parameter_counts(net),
        "state_dict_entries": len(net.state_dict()),
    }
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    table = Table(show_header=False, title=f"model {variant.name if variant else model}")
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.items():
        if key == "architecture":
            for sub, subvalue in value.items():  # type: ignore[union-attr]
                text = (
                    ", ".join(f"{k} {v:,}" for k, v in subvalue.items())
                    if isinstance(subvalue, dict)
                    else str(subvalue)
                )
                table.add_row(sub, text)
        elif value not in (None, "", (), []):
            table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value))
    console.print(table)
    if not load and variant is not None and not report.get("local_path"):
        console.print(
            f"Weights not on disk yet: `bgone models pull {variant.name}` or `bgone models info {variant.name} --load`."
        )


@app.command("pull")
def pull(
    names: Annotated[list[str] | None, typer.Argument(help="Models to download.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model in the registry.")] = False,
) -> None:
    """Download checkpoints into the Hugging Face cache (or BGONE_MODEL_DIR) and verify them."""
    variants = list(REGISTRY) if all_models else [REGISTRY.get(n) for n in names or []]
    if not variants:
        raise typer.BadParameter("name at least one model, or --all")
    for variant in variants:
        path = fetch_weights(variant, progress=True, verify=True)
        console.print(f"[green]ok[/] {variant.name}: {path}")


@app.command("verify")
def verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models or checkpoint paths (default: every model on disk).")
    ] = None,
) -> None:
    """Check published SHA-256 sums and that each file loads strictly into its architecture."""
    from bgone.weights.checkpoints import build_model, read_state_dict
    from bgone.weights.loader import resolve_source

    targets: list[tuple[str, Path, Variant | None]] = []
    if names:
        for name in names:
            path, variant = resolve_source(name, verify=False)
            targets.append((name, path, variant))
    else:
        targets = [(v.name, p, v) for v in REGISTRY if (p := find_local(v)) is not None]
        if not targets:
            console.print("No checkpoints on disk yet (`bgone models pull NAME`).")
            return
    failed = 0
    for label, path, variant in targets:
        try:
            checksum = verify_checksum(variant, path, force=True) if variant else None
            model = build_model(read_state_dict(path), source=str(path))
            how = "sha256 ok" if checksum else "no published sha256"
            console.print(
                f"[green]ok[/] {label}: {path} ({how}; loads strictly as {model.arch.backbone} {model.arch.design})"
            )
        except BgoneError as exc:
            failed += 1
            err_console.print(f"[red]FAILED[/] {escape(label)}: {escape(str(exc))}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Name to register the checkpoint under.")],
    path: Annotated[Path, typer.Argument(help="A .pth or .safetensors file.")],
    patch_order: Annotated[str, typer.Option(help="einops (trained after 2024-11-05) or legacy.")] = "einops",
    resolution: Annotated[str, typer.Option(help="Native resolution WxH, or 'dynamic'.")] = "1024x1024",
) -> None:
    """Register a custom checkpoint (fine-tune) by name, persistently."""
    from bgone.weights.checkpoints import build_model, read_state_dict

    if patch_order not in ("einops", "legacy"):
        raise typer.BadParameter("patch order must be einops or legacy")
    size = None if resolution == "dynamic" else tuple(int(v) for v in resolution.lower().split("x"))
    model = build_model(read_state_dict(path), source=str(path))  # refuse files that do not load
    register(name, path, patch_order=patch_order, resolution=size, persist=True)
    console.print(f"[green]registered[/] {name}: {path} ({model.arch.backbone}, design {model.arch.design})")
