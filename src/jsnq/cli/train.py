"""``jsnq train ...``: train jsnq's networks on your own data (seeded, resumable, with a progress bar)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .common import output_file, reports_input_errors, stderr, stdout

# Options shared by the training commands; None = the trainer's own default.
DATA = typer.Option(..., "--data", metavar="DIR",
                    help="Data folder: manifest.csv (image, upper_mask, lower_mask[, joint_id]) for segment and "
                         "register; landmarks.csv (image, <name>_x, <name>_y) and its radiographs for locate.")
CKPT = typer.Option(..., "--out", metavar="CKPT", help="Checkpoint written after every epoch.")
EPOCHS = typer.Option(None, "--epochs", min=1, help="Epochs (default: segment 30, register 20, locate 120; "
                                                    "with --resume: the run's total).")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1, help="Crops, pairs or hands per step (default: segment 16, "
                                                            "register 32, locate 8).")
LR = typer.Option(None, "--lr", help="Peak learning rate, AdamW with warm-up then cosine (default: segment 3e-3, "
                                     "register and locate 2e-3).")
SEED = typer.Option(0, "--seed", help="Seed of initialisation, order and every random draw.")
VAL_FRACTION = typer.Option(0.15, "--val-fraction", help="Fraction of joints (locate: hands) held out.")
DEVICE = typer.Option("cpu", "--device", metavar="cpu|cuda")
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for torch.")
RESUME = typer.Option(None, "--resume", metavar="CKPT", help="Continue an interrupted run from its checkpoint.")
INIT = typer.Option(None, "--init", metavar="CKPT", help="Start from this checkpoint's weights (fine-tune; new "
                                                         "optimizer; locate: the same held-out hands).")
SIZE = typer.Option(128, "--size", metavar="S", help="Network input side in px (segment: a multiple of 8, "
                                                     "register: of 32).")


def _shared(data: Path, epochs: int | None, batch_size: int | None, lr: float | None, seed: int,
            val_fraction: float, device: str) -> dict[str, Any]:
    """The shared options as config fields, those not given left to the trainer's defaults."""
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    return {"data": str(data), "seed": seed, "val_fraction": val_fraction, "device": device,
            **{k: v for k, v in given.items() if v is not None}}


def _start(out: Path, init: Optional[Path], threads: Optional[int]) -> None:
    """Check the checkpoint path (--resume may name the same file, --init may not) and set torch's threads."""
    output_file(out, inputs=[init] if init is not None else [])
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _run(train: Callable[..., Any], config: Any, out: Path, resume: Optional[Path], init: Optional[Path],
         describe: Callable[[Any], str]) -> tuple[Any, float]:
    """Run ``train`` with a progress bar that prints ``describe(record)`` after each epoch:
    ``(its result, seconds)``."""
    import time

    progress, hooks = training_progress(describe)
    t0 = time.perf_counter()
    with progress:
        result = train(config, out, resume=resume, init=init, **hooks)
    return result, time.perf_counter() - t0


def training_progress(describe: Callable[[Any], str]) -> tuple[Any, dict[str, Any]]:
    """A rich progress bar on stderr and the on_start/on_batch/on_epoch hooks that drive it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    err = stderr()
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err)
    state: dict[str, Any] = {}

    def on_start(first: int, total: int, per_epoch: int) -> None:
        state["task"] = progress.add_task("training", total=(total - first) * per_epoch, loss=float("nan"))
        err.print(f"epochs {first + 1}-{total}, {per_epoch} batches each", markup=False)

    def on_batch(epoch: int, batch: int, loss: float) -> None:
        progress.update(state["task"], advance=1, loss=loss, description=f"epoch {epoch + 1}")

    def on_epoch(rec: Any) -> None:
        progress.console.print(describe(rec), markup=False)

    return progress, {"on_start": on_start, "on_batch": on_batch, "on_epoch": on_epoch}


@reports_input_errors
def train_segment_cmd(
    data: Path = DATA, out: Path = CKPT, epochs: Optional[int] = EPOCHS, batch_size: Optional[int] = BATCH_SIZE,
    lr: Optional[float] = LR, seed: int = SEED, val_fraction: float = VAL_FRACTION, device: str = DEVICE,
    threads: Optional[int] = THREADS, resume: Optional[Path] = RESUME, init: Optional[Path] = INIT, size: int = SIZE,
    target_size: int = typer.Option(256, "--target-size", metavar="T",
                                    help="Side the masks are compared at (the crop size for 256-px crops)."),
    hand_crops: bool = typer.Option(
        False, "--hand-crops",
        help="Also augment towards crops cut from whole hands: flatter or rounder heads, narrowed joint spaces, "
             "crops upsampled from coarser 8-bit images (training.augment.HAND_CROPS)."),
) -> None:
    """Train the bone segmenter (UNet++) on a manifest folder; split by joint, seeded, resumable."""
    _start(out, init, threads)
    from ..segment.network import NetworkConfig
    from ..training import TrainConfig, train_segmenter
    from ..training.augment import HAND_CROPS, AugmentRanges

    config = TrainConfig(**_shared(data, epochs, batch_size, lr, seed, val_fraction, device), target_size=target_size,
                         augment=HAND_CROPS if hand_crops else AugmentRanges(), network=NetworkConfig(input_size=size))
    result, seconds = _run(train_segmenter, config, out, resume, init, lambda rec: (
        f"epoch {rec.epoch}: loss {rec.loss:.4f}, validation DSC upper {rec.val_dsc_upper:.4f} "
        f"lower {rec.val_dsc_lower:.4f} ({rec.seconds:.0f} s)"))
    _print_segment_result(result, seconds, out)


def _print_segment_result(result: Any, seconds: float, out: Path) -> None:
    console = stdout()
    console.print(f"trained on {result.n_train} crops, validated on {result.n_val} "
                  f"({len(result.excluded)} excluded) in {seconds:.0f} s", markup=False)
    for path, reason in result.excluded:
        console.print(f"  excluded {path}: {reason}", markup=False, soft_wrap=True)
    if result.history:
        last = result.history[-1]
        console.print(f"final validation DSC: upper {last.val_dsc_upper:.4f}, lower {last.val_dsc_lower:.4f}",
                      markup=False)
    console.print(f"checkpoint: {out}", markup=False)


@reports_input_errors
def train_register_cmd(
    data: Path = DATA, out: Path = CKPT, epochs: Optional[int] = EPOCHS, batch_size: Optional[int] = BATCH_SIZE,
    lr: Optional[float] = LR, seed: int = SEED, val_fraction: float = VAL_FRACTION, device: str = DEVICE,
    threads: Optional[int] = THREADS, resume: Optional[Path] = RESUME, init: Optional[Path] = INIT, size: int = SIZE,
    steps: int = typer.Option(200, "--steps", min=1, help="Optimisation steps per epoch."),
    real_fraction: float = typer.Option(0.5, "--real-fraction",
                                        help="Share of each batch that are real visit pairs (unsupervised)."),
    supervised_weight: float = typer.Option(1.0, "--supervised-weight",
                                            help="Weight of the supervised term on synthetic pairs (0: unsupervised only)."),
    crop_px: int = typer.Option(256, "--crop-px", help="Side of the crops in the data, px."),
    warmup: float = typer.Option(0.03, "--warmup", help="Share of the steps spent warming the learning rate up."),
    relative_rotation: float = typer.Option(
        12.0, "--relative-rotation", metavar="DEG", help="Synthetic rotation of one bone relative to the other, +-deg."),
    narrowing: float = typer.Option(4.0, "--narrowing", metavar="PX", help="Synthetic narrowing, +-px."),
) -> None:
    """Train the registration network on real visit pairs and synthetic per-bone motions; split by joint."""
    _start(out, init, threads)
    from ..register.network import RegNetConfig
    from ..training.register import MotionRanges, RegTrainConfig, train_registration

    config = RegTrainConfig(**_shared(data, epochs, batch_size, lr, seed, val_fraction, device), steps_per_epoch=steps,
                            real_fraction=real_fraction, supervised_weight=supervised_weight, crop_px=crop_px,
                            warmup_fraction=warmup, network=RegNetConfig(input_size=size),
                            motion=MotionRanges(relative_rotation_deg=relative_rotation, narrowing_px=narrowing))
    result, seconds = _run(train_registration, config, out, resume, init, lambda rec: (
        f"epoch {rec.epoch}: loss {rec.loss:.4f}, validation narrowing RMS {rec.val_rms_pass1_px:.3f} px "
        f"(pass 1) {rec.val_rms_px:.3f} px (final), real-pair NCC {rec.val_real_ncc:.4f} ({rec.seconds:.0f} s)"))
    stdout().print(f"trained on {result.n_train_crops} crops ({result.n_train_pairs} visit pairs), validated on "
                   f"{result.n_val_crops} in {seconds:.0f} s\ncheckpoint: {out}", markup=False)


@reports_input_errors
def train_export_cmd(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="Training checkpoint."),
    out: Path = typer.Argument(..., metavar="WEIGHTS.pt", help="Slim weights file (no optimizer state)."),
    note: Optional[str] = typer.Option(None, "--note", help="Provenance note stored in the file (e.g. the command)."),
    inference_passes: Optional[int] = typer.Option(
        None, "--inference-passes", min=0,
        help="Registration network: cascade passes at inference (later ones reuse the fine network; 0 = as trained)."),
) -> None:
    """Write a slim copy of a checkpoint for shipping (e.g. into src/jsnq/weights/)."""
    output_file(out, inputs=[checkpoint])
    from ..training import export_weights

    export_weights(checkpoint, out, extra={"note": note} if note else None, inference_passes=inference_passes)
    stdout().print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", markup=False)


@reports_input_errors
def train_locate_cmd(
    data: Path = DATA, out: Path = CKPT, epochs: Optional[int] = EPOCHS, batch_size: Optional[int] = BATCH_SIZE,
    lr: Optional[float] = LR, seed: int = SEED, val_fraction: float = VAL_FRACTION, device: str = DEVICE,
    threads: Optional[int] = THREADS, resume: Optional[Path] = RESUME, init: Optional[Path] = INIT,
    patches_per_hand: int = typer.Option(4, "--patches-per-hand", min=1, help="Fine patches per hand and step."),
    val_every: int = typer.Option(10, "--val-every", min=0,
                                  help="Validate every N epochs and after the last (0: only after the last)."),
) -> None:
    """Train the finger-joint locator on whole-hand radiographs with landmarks; split by hand, seeded, resumable."""
    _start(out, init, threads)
    from ..training.locate import LocateTrainConfig, train_locator

    config = LocateTrainConfig(**_shared(data, epochs, batch_size, lr, seed, val_fraction, device),
                               patches_per_hand=patches_per_hand, val_every=val_every)
    result, seconds = _run(train_locator, config, out, resume, init, lambda rec: (
        f"epoch {rec.epoch}: loss {rec.loss:.4f} (coarse {rec.coarse_loss:.4f}, fine {rec.fine_loss:.4f})"
        + ("" if rec.val_mean_mm != rec.val_mean_mm else
           f", validation {rec.val_mean_mm:.2f} mm mean, {rec.val_within4_pct:.1f} % within 4 mm, "
           f"{rec.val_missing_pct:.1f} % missing") + f" ({rec.seconds:.0f} s)"))
    stdout().print(f"trained on {result.n_train} hands, validated on {result.n_val} in "
                   f"{seconds:.0f} s; checkpoint: {out}", markup=False)
