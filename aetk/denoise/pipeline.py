"""Denoise many files: decoding and encoding in worker threads while the model runs.

    summary = denoise_paths([Path("photos")], out=None, model=None)

Reading (decode, EXIF transpose) and writing (encode, atomic rename) happen in worker
threads (aetk.pipeline), a bounded number of images ahead, so ONNX Runtime (which releases
the GIL) is never waiting on the disk; memory holds at most about 4 x workers images at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from aetk.atomic import remove_stray_temporaries
from aetk.denoise.denoiser import Denoiser
from aetk.denoise.files import Job, plan
from aetk.denoise.files import DenoiseInputError
from aetk.data.imageio import EXTENSIONS, SIXTEEN_BIT_FORMATS
from aetk.denoise.imagefiles import ImageReadError, read_image, write_image
from aetk.denoise.options import DenoiseOptions
from aetk.denoise.report import Report, find_reference, quantize, score_image
from aetk.options import check, flag
from aetk.pipeline import Pipeline
from aetk.progress import Progress, or_null


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0
    planned: list[tuple[str, str]] = field(default_factory=list)  # dry run: (input, output)
    notes: list[str] = field(default_factory=list)
    report: Report | None = None  # with a reference folder: PSNR/SSIM per image

    @property
    def ok(self) -> bool:
        return not self.failed


def _format_of(job: Job) -> str:
    """The output's format, from its suffix (planning already applied --format to it)."""
    return EXTENSIONS[job.dst.suffix.lower()]


def _remove_stale_temporaries(jobs: list[Job]) -> None:
    """Temporary files a killed run left behind (writes are atomic, so they are never outputs)."""
    names: dict[Path, set[str]] = {}
    for job in jobs:
        names.setdefault(job.dst.parent, set()).add(job.dst.name)
    for folder, ours in names.items():
        remove_stray_temporaries(folder, of=ours.__contains__)


def _written(summary: Summary, progress: Progress, job: Job, megapixels: float) -> Callable[[Future], None]:
    """What a finished write of ``job`` adds to the summary (a failed write is counted, not raised)."""
    def done(fut: Future) -> None:
        try:
            fut.result()
            summary.done.append(job.label)
            summary.megapixels += megapixels
        except OSError as exc:
            summary.failed.append((job.label, f"cannot write {job.dst}: {exc.strerror or exc}"))
        except (ValueError, TypeError, KeyError) as exc:  # Pillow cannot encode it so
            summary.failed.append((job.label, f"cannot encode {job.dst}: {exc}"))
        progress.advance(1)
    return done


def denoise_jobs(jobs: list[Job], denoiser: Denoiser, options: DenoiseOptions = DenoiseOptions(),
                 progress: Progress | None = None, summary: Summary | None = None) -> Summary:
    """Run the jobs; ``progress`` advances once per job. With ``options.reference`` (a folder
    of clean images), ``summary.report`` scores each output."""
    summary = summary or Summary()
    reference = Path(options.reference) if options.reference is not None else None
    if reference is not None and summary.report is None:
        summary.report = Report()
    progress = or_null(progress)
    max_pixels, workers = options.max_pixels, max(1, int(options.workers))
    todo = []
    _remove_stale_temporaries(jobs)
    for job in jobs:
        if options.skip_existing and job.dst.is_file():
            summary.skipped.append((job.label, f"output exists ({flag(options, 'skip_existing')})"))
            progress.advance(1)
        else:
            todo.append(job)
    start = time.perf_counter()
    with Pipeline(readers=workers, writers=workers, ahead=2 * workers, behind=2 * workers,
                  name="aetk-denoise") as pipe:
        for job, read in pipe.read(todo, lambda job: read_image(job.src, max_pixels)):
            try:
                img = read.result()
                clean = denoiser.denoise(img.planes)
            except (ImageReadError, ValueError) as exc:  # unreadable; or a channel count the model cannot take
                summary.failed.append((job.label, str(exc)))
                progress.advance(1)
                continue
            if summary.report is not None:
                _score(summary.report, job, img, clean, reference, max_pixels)
            if img.bits == 16 and _format_of(job) not in SIXTEEN_BIT_FORMATS:
                note = f"16-bit images written as {_format_of(job)} are rounded to 8 bits (PNG and TIFF keep 16)"
                if note not in summary.notes:
                    summary.notes.append(note)
            pipe.write(write_image, job.dst, img, clean, _format_of(job), options.quality,
                       done=_written(summary, progress, job, img.megapixels))
    summary.seconds += time.perf_counter() - start
    return summary


def _score(report: Report, job: Job, img, clean, reference: Path, max_pixels: int | None) -> None:
    """Add the job's PSNR/SSIM against its clean reference (or why there is none)."""
    ref_path = find_reference(job.src, job.source_root, reference)
    if ref_path is None:
        report.missing.append((job.label, f"no reference image for it in {reference}"))
        return
    try:
        ref = read_image(ref_path, max_pixels)
        report.scores.append(score_image(img.planes, quantize(clean, img.bits), ref.planes, job.label))
    except ValueError as exc:  # unreadable, or another size or channel count
        report.missing.append((job.label, str(exc)))


def denoise_paths(inputs: list[Path], out: Path | None = None, model: str | Path | None = None,
                  options: DenoiseOptions = DenoiseOptions(), progress: Progress | None = None) -> Summary:
    """Load and check the model, plan the jobs, denoise; see ``aetk denoise --help``.

    The model comes first: a --model that cannot denoise photographs (not a denoiser, not
    fully convolutional, a channel count it cannot take) is refused before any input is
    looked at. Tile size and overlap default to what the model takes (Denoiser)."""
    from aetk.denoise.denoiser import DEFAULT_BATCH, load_denoiser

    check(options, DenoiseInputError)
    reference = options.reference
    if reference is not None and not Path(reference).is_dir():
        raise DenoiseInputError(f"{flag(options, 'reference')} {reference} is not a folder (expected a folder of "
                                f"clean images laid out like the inputs)")
    den = load_denoiser(model, device=options.device, sigma=options.sigma,
                        batch_size=options.batch_size or DEFAULT_BATCH, threads=options.threads, tile=options.tile,
                        overlap=options.overlap, ensemble=options.ensemble)
    jobs, skipped = plan(inputs, out, options.format)
    summary = Summary(skipped=list(skipped))
    if options.dry_run:
        summary.planned = [(j.label, str(j.dst)) for j in jobs]
        return summary
    if not jobs:
        raise DenoiseInputError(f"no images found in {', '.join(str(p) for p in inputs)} "
                                f"(looked for {', '.join(sorted(EXTENSIONS))})")
    if options.sigma is not None and den.blind:
        summary.notes.append(f"{den.path.name} is a blind model: {flag(options, 'sigma')} is not used")
    progress = or_null(progress)
    progress.start("denoise", total=len(jobs), unit="img")
    try:
        return denoise_jobs(jobs, den, options, progress, summary)
    finally:
        progress.finish()


__all__ = ["Summary", "denoise_jobs", "denoise_paths"]
