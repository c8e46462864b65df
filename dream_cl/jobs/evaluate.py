"""Evaluate an image-set folder: the recipe chosen from its meta, the record written beside
it. What ``dream-cl evaluate`` does, and what the benchmarks call."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dream_cl.errors import UserError


@dataclass(frozen=True)
class EvaluateRequest:
    """Train ``repeats`` fresh ``model``s on the set in ``artifact``; ``None`` settings
    keep the chosen recipe's own value."""

    artifact: Path
    model: str = "convnet"
    model_options: dict[str, Any] | None = None
    recipe: str = "auto"
    repeats: int = 5
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    augment: str | None = None
    cutmix_p: float | None = None
    overrides: dict[str, Any] | None = None
    """Any other ``EvalConfig`` field, set last."""
    split: str = "test"
    out: Path | None = None
    checkpoint_seconds: float = 60.0
    data_root: Path = Path("data")
    download: bool = False
    seed: int = 0
    baselines: bool = False
    """Also evaluate a random real subset of the same storage and the set without
    augmentation, and report the gaps (:func:`baseline_scores`)."""
    ensemble: bool = False
    """Train the repeats together in lock step (:mod:`dream_cl.ensemble`)."""
    workers: int = 1
    """Train the repeats this many at a time, one per process."""

    def validate(self) -> None:
        from dream_cl.data.validation import SPLITS
        from dream_cl.evaluate import RECIPES
        from dream_cl.models import model_names

        if self.model not in model_names():
            raise UserError(f"unknown model '{self.model}'; use one of {', '.join(model_names())}")
        if self.recipe != "auto" and self.recipe not in RECIPES:
            raise UserError(f"unknown --recipe '{self.recipe}'; use auto, {', '.join(RECIPES)}")
        if self.split not in SPLITS:
            raise UserError(f"unknown --split '{self.split}'; use {' or '.join(SPLITS)}")
        sizes = (self.epochs, self.batch_size, self.workers)
        if self.repeats < 1 or any(v is not None and v < 1 for v in sizes):
            raise UserError("--repeats, --epochs, --batch-size and --workers must be at least 1")
        if self.ensemble and self.workers > 1:
            raise UserError("--ensemble and --workers are two ways to the same end; use one")
        bad_lr = self.lr is not None and not self.lr > 0
        if bad_lr or (self.cutmix_p is not None and not 0.0 <= self.cutmix_p <= 1.0):
            raise UserError("--lr must be positive and --cutmix-p between 0 and 1")
        if not self.checkpoint_seconds >= 0:  # also refuses nan
            raise UserError("--checkpoint-seconds must be 0 (every epoch) or more")

    def target(self) -> Path:
        """The JSON record's path: ``--out``, or ``eval_MODEL[_val].json`` beside the set."""
        if self.out is not None:
            return self.out
        folder = self.artifact if self.artifact.is_dir() else self.artifact.parent
        return folder / (
            f"eval_{self.model}.json" if self.split == "test" else f"eval_{self.model}_val.json"
        )


@dataclass(frozen=True)
class ArtifactEvaluation:
    """An evaluation's outcome: the library's result, its record, where it was written."""

    result: Any  # dream_cl.evaluate.EvalResult
    record: dict[str, Any]
    recipe: str
    target: Path
    image_set: Any  # dream_cl.artifact.ImageSet

    def summary_lines(self) -> list[str]:
        from dream_cl.cost import cost_line

        s, r = self.image_set, self.result
        return [
            f"{r.model} on {s.method} ({s.info.name}, {s.num_stored} stored), "
            f"{self.recipe} recipe, {self.record['split']} split: {100 * r.mean:.2f} +- "
            f"{100 * r.std:.2f} % over {len(r.accuracies)} run(s) -> {self.target}",
            *_baseline_lines(self.record.get("baselines")),
            cost_line(self.record["cost"]),
        ]


def _baseline_lines(scores: dict[str, Any] | None) -> list[str]:
    if not scores:
        return []
    rand, plain = scores["random_real"], scores["no_augmentation"]
    return [
        f"  random real images, same storage ({rand['stored_images']} stored): "
        f"{100 * rand['mean']:.2f} +- {100 * rand['std']:.2f} %; the set gains "
        f"{100 * scores['gain_over_random_real']:+.2f} points over them",
        f"  the set without augmentation: {100 * plain['mean']:.2f} +- "
        f"{100 * plain['std']:.2f} %; the augmentation adds "
        f"{100 * scores['gain_from_augmentation']:+.2f} points",
    ]


def _is_eval_record(target: Path) -> bool:
    try:
        saved = json.loads(target.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(saved, dict) and "accuracies" in saved and "artifact" in saved


def check_eval_target(target: Path) -> None:
    """``evaluate --out`` replaces an earlier evaluation record, never any other file."""
    from dream_cl.runfolder import check_output_file

    check_output_file(target, "evaluate", _is_eval_record)


def _recorded_validation(image_set: Any) -> Any:
    """The validation split the set's distillation held out (disabled for a coreset)."""
    from dream_cl.data import ValidationSpec

    run_cfg = _run_config(image_set)
    return ValidationSpec(float(run_cfg.get("val_fraction", 0.0)), int(run_cfg.get("val_seed", 0)))


def _run_config(image_set: Any) -> dict[str, Any]:
    """The distillation settings a set's meta records (empty for a coreset)."""
    run_cfg = image_set.meta.get("config") if isinstance(image_set.meta, dict) else None
    return run_cfg if isinstance(run_cfg, dict) else {}


def eval_config_for(request: EvaluateRequest, image_set: Any) -> tuple[str, Any]:
    """(recipe name, EvalConfig): the recipe from the set's meta (``auto``) or the request,
    with the set's own dataset rules first, so that one flag changes one setting."""
    from dream_cl.evaluate import eval_recipe, recipe_for_framework, resolve_eval_config

    run_cfg = _run_config(image_set)
    overrides = dict(request.overrides or {})
    # E and the recipe's name shape the whole schedule: --set takes them as the flags do
    recipe = overrides.pop("recipe", request.recipe)
    epochs = overrides.pop("epochs", request.epochs)
    chosen = recipe_for_framework(run_cfg.get("framework")) if recipe == "auto" else recipe
    name = image_set.info.name
    cfg = resolve_eval_config(
        eval_recipe(chosen, name, epochs=epochs), name, image_set.factor, image_set.ipc
    )
    changes = {
        "lr": request.lr,
        "batch_size": request.batch_size,
        "dsa_strategy": request.augment,
        "cutmix_p": request.cutmix_p,
    }
    changes = {k: v for k, v in changes.items() if v is not None} | overrides
    return chosen, dataclasses.replace(cfg, **changes)


def validation_of(request: EvaluateRequest, image_set: Any) -> Any:
    """The validation split the set was distilled without (``--split val``), else None."""

    if request.split != "val":
        return None
    spec = _recorded_validation(image_set)
    if not spec.enabled:
        raise UserError(
            "--split val: this set records no validation split (it may have been made "
            "from every training image); distill it with --val-fraction to evaluate on one"
        )
    return spec


def evaluate_artifact(
    request: EvaluateRequest, *, device: str = "auto", quiet: bool = True
) -> ArtifactEvaluation:
    """Train fresh models on the set, test them, write the JSON record; an interrupted call
    continues from its checkpoint when it is called again. With ``request.baselines`` the
    same recipe and seeds also train a random real subset of the same storage and the set
    without augmentation (:func:`baseline_scores`)."""
    import shutil

    from dream_cl.artifact import load_image_set
    from dream_cl.cost import CostMeter
    from dream_cl.data import load_dataset, load_splits
    from dream_cl.evaluate import EvalCheckpoint, evaluate_image_set
    from dream_cl.jobs.process import progress_for
    from dream_cl.runfolder import claimed
    from dream_cl.utils import atomic_write_json, resolve_device, seed_everything

    request.validate()
    dev = resolve_device(device)
    meter = CostMeter.start(dev)
    image_set = load_image_set(request.artifact)
    chosen, cfg = eval_config_for(request, image_set)
    target = request.target()
    check_eval_target(target)
    spec = validation_of(request, image_set)
    # the models in training, one file each, under the JSON file's lock; gone once it is written
    partial = target.parent / f".{target.name}.partial"
    name = image_set.info.name
    with claimed(target.parent, lock_name=f".{target.name}.lock", clean=False):
        if spec is None:
            data = load_dataset(name, request.data_root, train=False, download=request.download)
        else:
            _, data, _ = load_splits(name, request.data_root, spec, download=request.download)
        with progress_for(quiet) as progress:

            def evaluate(s: Any, config: Any) -> Any:
                seed_everything(request.seed)
                return evaluate_image_set(
                    s,
                    data,
                    model=request.model,
                    repeats=request.repeats,
                    cfg=config,
                    seed=request.seed,
                    device=dev,
                    model_options=request.model_options,
                    progress=progress,
                    checkpoint=EvalCheckpoint(partial, every_seconds=request.checkpoint_seconds),
                    ensemble=request.ensemble,
                    workers=request.workers,
                )

            random_set = random_real_like(request, image_set) if request.baselines else None
            result = evaluate(image_set, cfg)
            scores = (
                None
                if random_set is None
                else baseline_scores(image_set, random_set, cfg, result, evaluate)
            )
        record = result.to_dict() | {
            "artifact": str(request.artifact),
            "device": str(dev),
            "seed": request.seed,
            "split": request.split,
            "validation": None if spec is None else spec.to_dict(),
            **({"baselines": scores} if scores is not None else {}),
            "cost": meter.finish(),
        }
        atomic_write_json(record, target)
        shutil.rmtree(partial, ignore_errors=True)
    return ArtifactEvaluation(result, record, chosen, target, image_set)


def random_real_like(request: EvaluateRequest, image_set: Any) -> Any:
    """Real training images drawn at random (seeded), as many per class as the set stores,
    at full size: the same storage in pixels. They come from the training images the set
    was distilled from (without its validation split, if it had one)."""
    import torch

    from dream_cl.artifact import ImageSet
    from dream_cl.coreset import select_coreset
    from dream_cl.data import load_splits

    counts = torch.bincount(image_set.labels, minlength=image_set.info.num_classes).tolist()
    if len(set(counts)) != 1:
        raise UserError(
            "--baselines needs the same number of stored images in every class; this set "
            f"stores {min(counts)} to {max(counts)}"
        )
    spec = _recorded_validation(image_set)
    train, _, _ = load_splits(
        image_set.info.name, request.data_root, spec, download=request.download
    )
    chosen = select_coreset(train, "random", counts[0], seed=request.seed)
    # the set's own normalisation: the pixels are raw, the recipe is the set's
    return ImageSet(chosen.images, chosen.labels, image_set.info, factor=1, method="random-real")


def baseline_scores(
    image_set: Any, random_set: Any, cfg: Any, result: Any, evaluate: Any
) -> dict[str, Any]:
    """What the distillation adds over real images of the same storage
    (:func:`random_real_like`), and what the recipe's augmentation carries: both trained
    with the set's recipe and seeds."""
    random_real = evaluate(random_set, cfg)
    plain = dataclasses.replace(cfg, dsa_strategy="none", cutmix_p=0.0, dc_augment="none")
    no_aug = evaluate(image_set, plain)
    return {
        "random_real": random_real.to_dict() | {"stored_images": image_set.num_stored},
        "no_augmentation": no_aug.to_dict(),
        "gain_over_random_real": result.mean - random_real.mean,
        "gain_from_augmentation": result.mean - no_aug.mean,
    }
