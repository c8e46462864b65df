"""GPU readiness in one script (under 8 minutes on one modern GPU), written to JSON.

1. ``agreement``: one outer iteration of DREAM (IDC, paper width, CIFAR-10 shape, random
   data, IPC 10, factor 2, a short inner loop) on CPU and on CUDA from the same seed: the
   largest difference between the two synthetic sets (kernels differ, so not bit for bit;
   with the random sampler no discrete choice amplifies rounding).
2. ``resume``: on CUDA, two iterations straight against one + ``--resume``, with cuDNN in
   deterministic mode: bit for bit, or the largest difference.
3. ``throughput``: seconds per inner iteration at the paper preset on CIFAR-10 and
   CIFAR-100 shapes (``benchmarks/throughput.py``'s measurement, refresh amortised): the
   per-class loop against the fastest formulations (``compiled``, ``batched``), bf16
   autocast (``bf16``) and the fast path (``fast``: pool, compile, bf16).
4. ``ensemble``: the 5 repeats of one evaluation (ConvNet-3, 400 images of CIFAR-10 shape)
   trained one by one and as one vmapped ensemble: seconds per epoch of all 5.
5. ``scaling``: when more than one GPU is visible, ``benchmarks/scaling.py`` on K = 1, 2, ...
   GPUs.

    python benchmarks/gpu_check.py                 # on a GPU machine
    python benchmarks/gpu_check.py --quick --device cpu   # smoke test of the script itself

Results: ``results/gpu-check-<device>.json`` (and ``$OUT`` when set, for a lent machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, device_name, write_result  # noqa: E402

HERE = Path(__file__).resolve().parent


def random_split(classes: int, per_class: int, size: int = 32, seed: int = 0):
    from dream_cl.data.base import DatasetInfo, DatasetSplit

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (classes * per_class, 3, size, size), generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    names = tuple(str(i) for i in range(classes))
    info = DatasetInfo("cifar10", 3, size, names, (0.5,) * 3, (0.25,) * 3)
    return DatasetSplit(images.to(torch.uint8), labels, info)


def small_config(device: str, quick: bool, **overrides):
    from dream_cl.distill.config import resolve_config

    values = {"iterations": 1, "inner_loop": 5, "interval": 5, "device": device}
    if quick:
        values.update(width=8, n_clusters=8, batch_real=8, n_data=16, batch_syn_max=8, ipc=1)
    values.update(overrides)
    ipc = values.pop("ipc", 10)
    return resolve_config("cifar10", ipc, preset="paper", image_size=32, overrides=values)


def agreement(device: str, quick: bool) -> dict:
    from dream_cl.distill.engine import distill

    train = random_split(10, 40 if quick else 500)
    out = {}
    for dev in ("cpu", device):
        t0 = time.perf_counter()
        cfg = small_config(dev, quick, sampler="random")
        out[dev] = (distill(cfg, train).image_set.images, time.perf_counter() - t0)
    a, b = out["cpu"][0], out[device][0]
    diff = (a - b).abs()
    return {
        "max_abs_difference": float(diff.max()),
        "mean_abs_difference": float(diff.mean()),
        "identical": bool(torch.equal(a, b)),
        "seconds": {"cpu": out["cpu"][1], device: out[device][1]},
        "pass": float(diff.max()) < 1e-2,
    }


def resume_check(device: str, quick: bool) -> dict:
    from dream_cl.distill.engine import distill

    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    train = random_split(10, 40 if quick else 500)
    cfg = small_config(device, quick, iterations=2, checkpoint_every=1)
    with tempfile.TemporaryDirectory() as tmp:
        whole = distill(cfg, train, out=Path(tmp) / "whole").image_set.images
        distill(cfg, train, out=Path(tmp) / "parts", stop_after=1)
        resumed = distill(cfg, train, out=Path(tmp) / "parts", resume=True).image_set.images
    diff = (whole - resumed).abs()
    return {
        "identical": bool(torch.equal(whole, resumed)),
        "max_abs_difference": float(diff.max()),
        "pass": bool(torch.equal(whole, resumed)),
    }


def throughput(device: str, quick: bool, shapes: list[str], variants: list[str]) -> list:
    rows = []
    for shape in shapes:
        for variant in variants:
            setting = {
                "shape": "mnist:2" if quick else shape,
                "ipc": 1 if quick else 10,
                "variant": variant,
                "width": 8 if quick else 128,
                "interval": 2 if quick else 10,
                "steps": 2 if quick else 3,
                "factor": 2,
                "device": device,
            }
            proc = subprocess.run(
                [sys.executable, str(HERE / "throughput.py"), "--child", json.dumps(setting)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                rows.append({**setting, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"  {shape} {variant}: {row['seconds_per_inner_iteration']:.3f} s/inner",
                flush=True,
            )
    return rows


def ensemble_check(device: str, quick: bool) -> dict:
    from dream_cl.artifact import ImageSet
    from dream_cl.evaluate import eval_recipe, evaluate_image_set

    train = random_split(10, 4 if quick else 40)
    test = random_split(10, 10 if quick else 100, seed=1)
    s = ImageSet(train.images.float() / 255, train.labels, train.info, method="random")
    epochs, width = (2, 8) if quick else (10, 128)
    cfg = eval_recipe("idc", "cifar10", epochs=epochs)
    out = {}
    for way in ("one-by-one", "ensemble"):
        t0 = time.perf_counter()
        r = evaluate_image_set(
            s, test, repeats=5, cfg=cfg, device=device, model_options={"width": width},
            ensemble=way == "ensemble",
        )  # fmt: skip
        out[way] = {"seconds_per_epoch": (time.perf_counter() - t0) / epochs}
        out[way]["accuracies"] = r.accuracies
    out["speedup"] = out["one-by-one"]["seconds_per_epoch"] / out["ensemble"]["seconds_per_epoch"]
    return out


def scaling(quick: bool, out_dir: Path) -> dict | None:
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return None
    procs = ",".join(str(k) for k in (1, 2, 4, 8) if k <= gpus)
    cmd = [sys.executable, str(HERE / "scaling.py"), "--procs", procs, "--out-dir", str(out_dir)]
    cmd += ["--shapes", "cifar100", "--name", "scaling-gpu"] + (["--quick"] if quick else [])
    subprocess.run(cmd, check=True)
    return json.loads((out_dir / "scaling-gpu.json").read_text())["results"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shapes", default="cifar10,cifar100")
    ap.add_argument("--variants", default="per-class,compiled,batched,bf16,fast")
    ap.add_argument("--checks", default="agreement,resume,throughput,ensemble,scaling")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; run this on a GPU machine (or --device cpu)")
    device = torch.device(args.device)
    out_dir = args.out_dir or RESULTS_DIR
    checks = args.checks.split(",")
    results: dict = {"started": time.time()}
    steps = {
        "agreement": lambda: agreement(args.device, args.quick),
        "resume": lambda: resume_check(args.device, args.quick),
        "throughput": lambda: throughput(
            args.device, args.quick, args.shapes.split(","), args.variants.split(",")
        ),
        "ensemble": lambda: ensemble_check(args.device, args.quick),
        "scaling": lambda: scaling(args.quick, out_dir),
    }
    for name in checks:
        t0 = time.perf_counter()
        print(f"{name} ...", flush=True)
        try:
            results[name] = steps[name]()
        except Exception as err:  # noqa: BLE001 - record and go on to the next check
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        results[f"{name}_seconds"] = time.perf_counter() - t0
        print(f"{name}: {json.dumps(results[name])[:300]}", flush=True)
    tag = re.sub(r"[^A-Za-z0-9]+", "-", device_name(device)).strip("-").lower()
    name = f"gpu-check-{tag}" if not args.quick else "gpu-check-quick"
    path = write_result(name, device, vars(args) | {"out_dir": str(out_dir)}, results, out_dir)
    print(f"wrote {path}")
    if os.environ.get("OUT"):
        extra = Path(os.environ["OUT"]) / path.name
        extra.write_text(path.read_text())


if __name__ == "__main__":
    main()
