"""Reliability under abuse: concurrent writers, occupied folders, kills, full disks, corrupt
files, interrupts and degenerate values. Real subprocesses and real signals, bounded in
time; tiny settings on the embedded digits."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dream_cl.cli import app

TIMEOUT = 120
DISTILL = ("distill", "digits", "--preset", "cpu", "--ipc", "1", "--device", "cpu")
RUN = (
    "run", "digits", "--steps", "2", "--ipc", "1", "--epochs", "1", "--model", "convnet",
    "--distill-iterations", "2", "--device", "cpu", "--quiet",
)  # fmt: skip


def cli(*args: object, env: dict | None = None, limit_bytes: int | None = None, **kw):
    """``dream-cl ARGS`` in a fresh process (optionally with a file-size limit: a full disk)."""

    def limit() -> None:
        if limit_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a kill
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "dream_cl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
        **kw,
    )


def start(*args: object, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dream_cl.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def one_line(proc, *needles: str, code: int = 1) -> str:
    """The process failed with ``code`` and said exactly one line, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def wait_for(predicate, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs every test compares with (in this process: no start-up cost)."""
    root = tmp_path_factory.mktemp("reference")
    out = {"distill": root / "distill", "distill2": root / "distill2", "run": root / "run"}
    for key in ("distill", "distill2"):
        args = (*DISTILL, "--iterations", "3", "--checkpoint-every", "1", "--quiet")
        result = invoke(*args, "--out", out[key])
        assert result.exit_code == 0, result.output
    assert invoke(*RUN, "--out", out["run"]).exit_code == 0
    return out


runner = CliRunner()


def invoke(*args: object):
    """``dream-cl ARGS`` in this process (what a lock or a folder check sees is the same)."""
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *needles: str) -> str:
    """An in-process command that failed with exactly one ``error:`` line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1. one writer per folder ------------------------------------------------------------------
HOLDER = """
import sys, time
from dream_cl.runfolder import FolderLock
FolderLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_writer_is_refused_at_once_naming_the_holder_and_a_killed_holder_never_blocks(
    tmp_path: Path, reference
) -> None:
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (
            (*DISTILL, "--iterations", "1", "--out", out),
            (*RUN, "--out", out),
            ("coreset", "digits", "--ipc", "1", "--out", out),
            ("compare", "--memories", "random", "--ipc", "1", "--epochs", "1", "--out", out),
        ):
            t0 = time.monotonic()
            refused(invoke(*args), f"in use by dream-cl process {holder.pid}")
            assert time.monotonic() - t0 < 5  # at once, not after the other run
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's lock: a rerun is not blocked
    result = invoke("coreset", "digits", "--method", "random", "--ipc", "1", "--out", out)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_two_real_runs_on_one_folder_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "race"
    first = start(*RUN, "--epochs", "3", "--out", out)
    try:
        wait_for(
            lambda: (out / ".dream-cl.lock").is_file() and (out / ".dream-cl.lock").read_text()
        )
        refused(invoke(*RUN, "--epochs", "5", "--out", out), f"process {first.pid}")
    finally:
        first.wait(timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (
        saved["epochs"] == json.loads((out / "results.json").read_text())["config"]["epochs"] == 3
    )


@pytest.mark.slow
def test_evaluate_out_is_locked_per_file(tmp_path: Path, reference) -> None:
    target = tmp_path / "eval.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER.replace("FolderLock(sys.argv[1])", "FolderLock(sys.argv[1], '.eval.json.lock')"),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ("evaluate", reference["distill"], "--epochs", "1", "--device", "cpu", "--quiet")
        line = refused(invoke(*args, "--out", target), f"process {holder.pid}")
        assert line.startswith(f"error: {target} is in use"), line  # the file, not its folder
        other = invoke(*args, "--out", tmp_path / "other.json")  # another file: not blocked
        assert other.exit_code == 0, other.output
    finally:
        holder.kill()
        holder.wait()


# -- 2. occupied folders -----------------------------------------------------------------------
@pytest.mark.slow
def test_an_occupied_folder_is_refused_unless_it_is_the_same_command(tmp_path: Path, reference):
    distilled, coreset, other = tmp_path / "distilled", tmp_path / "coreset", tmp_path / "other"
    assert invoke(*DISTILL, "--iterations", "1", "--quiet", "--out", distilled).exit_code == 0
    coreset_args = ("coreset", "digits", "--method", "random", "--ipc", "1", "--device", "cpu")
    assert invoke(*coreset_args, "--out", coreset).exit_code == 0
    other.mkdir()
    (other / "results.json").write_text("{}")
    before = {p: listing(p) for p in (distilled, coreset, other)}
    line = refused(invoke(*coreset_args, "--out", distilled), "output of `dream-cl distill`")
    assert "coreset" in line and " run run" not in line
    refused(invoke(*DISTILL, "--iterations", "1", "--out", coreset), "output of `dream-cl coreset`")
    refused(invoke(*RUN, "--out", other), "other files (results.json)")
    refused(invoke(*RUN, "--out", other, "--resume"), "other files")
    refused(invoke(*coreset_args[:-2], "--ipc", "2", "--out", coreset), "other settings")
    assert {p: listing(p) for p in before} == before  # nothing was touched
    # exactly the same command again: allowed, and (byte-identical) the same set
    again = invoke(*coreset_args, "--out", coreset)
    assert again.exit_code == 0, again.output
    assert listing(coreset)["images.pt"] == before[coreset]["images.pt"]


# -- 3. reproducible hashes ---------------------------------------------------------------------
@pytest.mark.slow
def test_identical_runs_write_byte_identical_artifacts(tmp_path: Path, reference) -> None:
    a, b = reference["distill"], reference["distill2"]
    for name in ("images.pt", "checkpoint.pt"):
        assert sha(a / name) == sha(b / name), name
    meta_a, meta_b = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    assert meta_a["images_sha256"] == meta_b["images_sha256"] == sha(a / "images.pt")
    run2 = tmp_path / "run2"
    assert invoke(*RUN, "--out", run2).exit_code == 0
    for step in ("step0", "step1"):
        for name in ("model.pt", "images.pt"):
            rel = Path("order0") / step / name
            assert sha(reference["run"] / rel) == sha(run2 / rel), rel
    # what a kill during a write leaves is removed by the next start in the folder
    stale = run2 / "order0" / "step1" / ".model.pt.k1ll3d00.tmp"
    stale.write_bytes(b"x" * 4096)
    assert invoke(*RUN, "--out", run2).exit_code == 0  # the same command: continued
    assert not stale.exists()


# -- 4. resume from anywhere ---------------------------------------------------------------------
def _kill_before_first_checkpoint(args: tuple, out: Path, checkpoint: Path) -> None:
    proc = start(*args, "--out", out)
    wait_for(lambda: (out / ".dream-cl.lock").is_file() and (out / ".dream-cl.lock").read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    assert not checkpoint.exists()


@pytest.mark.slow
def test_killed_before_the_first_checkpoint_resume_starts_over(tmp_path: Path, reference) -> None:
    out = tmp_path / "distill"
    args = (*DISTILL, "--iterations", "3", "--checkpoint-every", "1", "--quiet")
    _kill_before_first_checkpoint(args, out, out / "checkpoint.pt")
    (out / ".checkpoint.pt.k1ll3d00.tmp").write_bytes(b"x" * 4096)  # what a kill leaves
    resumed = invoke(*args, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "no checkpoint" in resumed.output and "starting from the beginning" in resumed.output
    assert not list(out.glob(".*.tmp"))
    assert sha(out / "images.pt") == sha(reference["distill"] / "images.pt")
    assert sha(out / "checkpoint.pt") == sha(reference["distill"] / "checkpoint.pt")

    run_out = tmp_path / "run"
    _kill_before_first_checkpoint(RUN, run_out, run_out / "order0" / "step0" / "model.pt")
    resumed = invoke(*RUN, "--out", run_out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    rel = Path("order0") / "step1" / "model.pt"
    assert sha(run_out / rel) == sha(reference["run"] / rel)


# -- 5. one line, never a traceback ---------------------------------------------------------------
def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create: a read-only one, or (as root, who may write
    anywhere on a normal file system) one inside sysfs."""
    if os.geteuid() != 0:
        ro = tmp_path / "readonly"
        ro.mkdir()
        ro.chmod(0o500)
        return ro / "out"
    return Path("/sys/dream-cl-test-out")


@pytest.mark.slow
def test_an_unwritable_out_is_one_line(tmp_path: Path, reference) -> None:
    bad = _unwritable(tmp_path)
    refused(invoke("coreset", "digits", "--ipc", "1", "--out", bad), "cannot write")
    refused(invoke(*RUN, "--out", bad), "cannot write")
    refused(
        invoke("evaluate", reference["distill"], "--epochs", "1", "--out", bad / "e.json"),
        "cannot write",
    )
    file = tmp_path / "a-file"
    file.write_text("x")
    refused(invoke(*RUN, "--out", file / "sub"), "cannot write")


@pytest.mark.slow
def test_a_full_disk_is_one_line_keeps_nothing_half_written_and_resume_finishes(
    tmp_path: Path, reference
) -> None:
    out = tmp_path / "full"
    args = (*DISTILL, "--iterations", "3", "--checkpoint-every", "1", "--quiet", "--out", out)
    line = one_line(cli(*args, limit_bytes=20_000), "checkpoint.pt", "--resume")
    assert "free some space" in line
    assert not (out / "checkpoint.pt").exists() and not list(out.glob(".*.tmp"))
    resumed = invoke(*args, "--resume")  # space is back
    assert resumed.exit_code == 0, resumed.output
    assert sha(out / "images.pt") == sha(reference["distill"] / "images.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", ["truncated", "garbage", "malicious", "wrong-shape", "another-step"]
)
def test_a_bad_model_checkpoint_met_by_run_resume_is_one_line(
    tmp_path: Path, reference, damage: str
) -> None:
    out = tmp_path / "run"
    assert invoke(*RUN, "--out", out).exit_code == 0
    (out / "order0" / "step1" / "result.json").unlink()  # step 1 to redo from step 0's model
    model = out / "order0" / "step0" / "model.pt"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[:500])
    elif damage == "garbage":
        model.write_bytes(os.urandom(2000))
    elif damage == "malicious":

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))

        model.write_bytes(pickle.dumps({"model": Evil(), "num_classes": 5}))
    elif damage == "wrong-shape":
        torch.save({"model": {"features.0.weight": torch.zeros(1)}, "num_classes": 5}, model)
    else:  # #32 item 2: the right keys, another width (it used to fail inside kd_loss)
        model.write_bytes((out / "order0" / "step1" / "model.pt").read_bytes())
    before = {k: v for k, v in listing(out).items() if not k.startswith(".")}
    refused(invoke(*RUN, "--out", out, "--resume"), str(model), "redo step 0")
    assert {k: v for k, v in listing(out).items() if not k.startswith(".")} == before
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_a_contradictory_or_mistyped_meta_json_is_one_line(tmp_path: Path, reference) -> None:
    for field, value, needle in (
        ("num_stored", "abc", "'num_stored'"),
        ("factor", "2", "factor"),
        ("factor", 3, "contradict"),
        ("factor", 99, "larger than"),
        ("images_bytes", [1], "images_bytes"),
    ):
        folder = tmp_path / f"{field}-{value}"
        folder.mkdir()
        for name in ("images.pt", "meta.json"):
            (folder / name).write_bytes((reference["distill"] / name).read_bytes())
        meta = json.loads((folder / "meta.json").read_text())
        meta[field] = value
        (folder / "meta.json").write_text(json.dumps(meta))
        refused(invoke("evaluate", folder, "--epochs", "1"), needle)
        refused(invoke("show", folder), needle)
    refused(invoke("show", reference["distill"], "--max-classes", "0"), "--max-classes")


# -- 6. interrupts -------------------------------------------------------------------------------
@pytest.mark.slow
def test_ctrl_c_says_where_and_how_to_resume(tmp_path: Path, reference) -> None:
    """SIGINT here; SIGTERM in the long-run test below."""
    out = tmp_path / "interrupted"
    # an iteration long enough to land inside
    args = (*DISTILL, "--iterations", "2", "--checkpoint-every", "1", "--inner-loop", "20")
    proc = start(*args, "--quiet", "--out", out)
    wait_for(lambda: (out / "checkpoint.pt").is_file())
    os.kill(proc.pid, signal.SIGINT)
    proc.stdout, proc.stderr = proc.communicate(timeout=TIMEOUT)
    # the checkpoint is written just before the progress advances: the signal may land between
    line = one_line(proc, "interrupted by SIGINT during distill ", code=130)
    assert line.split("during distill ", 1)[1].startswith(("0/2;", "1/2;")), line
    command = shlex.split(line.split("Resume with: ", 1)[1])
    assert command[0] == "dream-cl" and command[-1] == "--resume"
    torch.load(out / "checkpoint.pt", weights_only=True)  # consistent
    resumed = invoke(*command[1:])
    assert resumed.exit_code == 0, resumed.output
    assert invoke(*args, "--quiet", "--out", tmp_path / "whole").exit_code == 0
    assert sha(out / "images.pt") == sha(tmp_path / "whole" / "images.pt")


@pytest.mark.slow
def test_an_interrupted_evaluate_continues_with_the_same_command(tmp_path: Path, reference):
    """SIGTERM in the second of five models: the same command then finishes the first from its
    record, the second from its last epoch, and reports what an uninterrupted run reports."""
    args = ("evaluate", reference["distill"], "--epochs", "300", "--device", "cpu", "--quiet")
    out = tmp_path / "e.json"
    partial = tmp_path / ".e.json.partial"
    # one thread, as this process runs the comparison (thread counts change float sums)
    proc = start(*args, "--checkpoint-seconds", "0", "--out", out, env={"OMP_NUM_THREADS": "1"})
    wait_for(lambda: len(list(partial.glob("eval-*.pt"))) == 2, seconds=TIMEOUT)
    proc.send_signal(signal.SIGTERM)
    proc.stdout, proc.stderr = proc.communicate(timeout=TIMEOUT)
    line = one_line(proc, "interrupted by SIGTERM during eval", code=143)
    assert not out.exists()
    saved = {p: torch.load(p, weights_only=True) for p in partial.glob("eval-*.pt")}
    (record,) = [p for p, s in saved.items() if "accuracy" in s]  # the finished first model
    assert any("model" in s and 1 <= s["epoch"] < 300 for s in saved.values()), "the second's"
    # mark the first model's record: the continued command must take it, not retrain
    torch.save(saved[record] | {"accuracy": 0.125}, record)
    command = shlex.split(line.split("Continue with the same command: ", 1)[1])
    assert command[0] == "dream-cl" and command[1:] == [str(a) for a in (*args,
        "--checkpoint-seconds", "0", "--out", out)]  # fmt: skip
    assert invoke(*command[1:]).exit_code == 0
    assert not partial.exists()
    assert invoke(*args, "--out", tmp_path / "whole.json").exit_code == 0
    resumed = json.loads(out.read_text())["accuracies"]
    whole = json.loads((tmp_path / "whole.json").read_text())["accuracies"]
    assert resumed[0] == 0.125 and resumed[1:] == whole[1:]


# -- 7. validation the docs imply ------------------------------------------------------------------
def _image_folder(root: Path, classes: int) -> Path:
    from PIL import Image

    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (40 * c, 10 * i, 99)).save(root / f"class{c}" / f"{i}.png")
    return root


def test_degenerate_values_and_misleading_cases_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for args, needle in (
        ((*DISTILL, "--candidates", "0"), "--candidates"),
        ((*DISTILL, "--eval-epochs", "0", "--eval-every", "1"), "--eval-epochs"),
        ((*DISTILL, "--eval-repeats", "0"), "--eval-repeats"),
        ((*DISTILL, "--width", "0"), "--width"),
        (("run", "--class-order", "0,1,2"), "--steps 3"),
        (("run", _image_folder(tmp_path / "one", 1), "--steps", "1"), "at least 2"),
    ):
        refused(invoke(*args, "--out", out), needle)
        assert not out.exists()
    refused(invoke("evaluate", tmp_path, "--lr", "0"), "--lr")
    bad = _image_folder(tmp_path / "bad", 2)
    (bad / "class1" / "broken.png").write_text("not an image")
    result = invoke("run", bad, "--steps", "2", "--preset", "cpu", "--out", out)
    refused(result, "broken.png")
    assert "--download" not in result.output
    file = tmp_path / "a-file"
    file.write_text("x")
    listed = invoke("datasets", "--data-root", file).output
    assert "found" not in next(line for line in listed.splitlines() if "imagefolder" in line)


def test_an_uneven_split_is_printed(tmp_path: Path) -> None:
    result = invoke(
        "run", "digits", "--steps", "3", "--memory", "random", "--ipc", "1", "--epochs", "1",
        "--model", "convnet", "--device", "cpu", "--quiet", "--out", tmp_path / "uneven",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "10 classes in 3 steps do not divide evenly; steps of 4, 3, 3 classes" in result.output


# -- 8. long work is visible --------------------------------------------------------------
def test_plain_progress_lines_when_output_is_not_a_terminal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DREAM_CL_PROGRESS_SECONDS", "0")
    result = invoke(*DISTILL, "--iterations", "2", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("distill: ")]
    assert lines[0].startswith("distill: 1/2 (50%)  loss ") and "eta" in lines[0], result.output
    assert lines[-1].startswith("distill: done 2/2")


@pytest.mark.slow
def test_a_long_cpu_run_is_estimated_early_with_a_hint_and_sigterm_ends_it(tmp_path: Path):
    out = tmp_path / "paper"
    proc = start("distill", "digits", "--ipc", "1", "--device", "cpu", "--quiet", "--out", out)
    try:
        note = proc.stderr.readline()  # the paper preset: 1,200 x 100 inner iterations
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=TIMEOUT)
    assert note.startswith("note: 1200 iterations of idc on digits will take about"), note
    assert "h on this CPU" in note and "--preset cpu" in note
    assert proc.returncode == 143
    lines = [line for line in rest.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in rest, rest
    assert lines[0].startswith("error: interrupted by SIGTERM during distill 0/1200")
    assert lines[0].endswith(f"--out {out} --resume")


def test_a_long_training_task_is_estimated_from_its_first_epochs() -> None:
    import io

    from dream_cl.progress import LongRunHint, PlainProgress

    stream = io.StringIO()
    hint = LongRunHint(after_seconds=0.0, hint="; `--preset cpu` runs in minutes")
    progress = PlainProgress(interval=1e9, stream=stream, lines=True, long_run=hint)
    progress.start("train step 0", 1000)
    time.sleep(0.01)
    progress.advance("train step 0", 1, loss=2.3)
    progress.advance("train step 0", 1, loss=2.2)
    notes = stream.getvalue().splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: train step 0 will take about ")
    assert notes[0].endswith("(from its first 1 of 1000 steps); `--preset cpu` runs in minutes")
    assert progress.where() == "train step 0 2/1000"
    progress.start("step 0 distill", 10)  # the engine estimates distillation itself
    progress.advance("step 0 distill", 1)
    assert len(stream.getvalue().splitlines()) == 1


# -- 9. a command writes only what is its own (#32 item 1) ------------------------------------
def test_show_and_evaluate_never_overwrite_a_file_they_did_not_write(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    assert (
        invoke("coreset", "digits", "--ipc", "1", "--method", "random", "--out", folder).exit_code
        == 0
    )
    for name in ("images.pt", "meta.json", "config.json"):
        before = (folder / name).read_bytes()
        refused(invoke("show", folder, "--out", folder / name), "not the output of an earlier")
        assert (folder / name).read_bytes() == before, name
    refused(invoke("evaluate", folder, "--out", folder / "config.json"), "dream-cl evaluate")
    refused(invoke("show", folder, "--out", tmp_path), "is a folder")
    # a picture is redrawn: show's own earlier output, or any PNG the user points it at
    assert invoke("show", folder).exit_code == 0
    assert invoke("show", folder, "--out", folder / "grid.png").exit_code == 0


# -- 10. a number that is not finite is refused before any work (#32 item 4, input side) --------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["distill", "digits", "--preset", "cpu", "--lr-img", "nan"], "--lr-img must be a finite"),
        (["distill", "digits", "--preset", "cpu", "--lr-img", "inf"], "--lr-img must be a finite"),
        (["run", "--lr", "nan"], "--lr must be a finite"),
        (["run", "--set", "kd_beta=inf"], "kd_beta takes a finite number"),
        (["coreset", "digits", "--ipc", "1"], None),  # the set evaluated below
    ],
)
def test_a_number_that_is_not_finite_is_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], needle: str | None
) -> None:
    out = tmp_path / "out"
    if needle is None:
        assert invoke(*args, "--out", out).exit_code == 0
        refused(invoke("evaluate", out, "--lr", "inf", "--epochs", "1"), "finite")
        return
    refused(invoke(*args, "--out", out, "--quiet"), needle)
    assert not out.exists()


def test_a_resumed_distillation_says_where_it_continues_from(tmp_path: Path) -> None:
    import io

    from fakedata import tiny_digits, tiny_distill_config

    from dream_cl.distill.engine import distill
    from dream_cl.progress import PlainProgress

    cfg, train, out = tiny_distill_config("idc"), tiny_digits(3, 30), tmp_path / "run"
    cfg.iterations = 3
    distill(cfg, train, out=out, stop_after=1)
    stream = io.StringIO()
    distill(cfg, train, out=out, resume=True, progress=PlainProgress(stream=stream, lines=False))
    assert f"continuing from iteration 1 of 3 (the checkpoint in {out})" in stream.getvalue()


# -- 11. a checkpoint continues only on the data it was distilled from (#32 item 3) ------------
@pytest.mark.slow
def test_distill_resume_into_a_run_step_of_other_classes_is_one_line(
    tmp_path: Path, reference
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference["run"], out)
    step = out / "order0" / "step0" / "distill"
    saved = json.loads((step / "config.json").read_text())
    assert saved["data"]["classes"] and len(saved["data"]["class_counts"]) == 5
    before = listing(step)
    seed = saved["config"]["seed"]
    args = ("distill", "digits", "--preset", "cpu", "--ipc", "1", "--iterations", "2")
    line = refused(
        invoke(*args, "--seed", seed, "--out", step, "--resume", "--quiet"), "other data"
    )
    assert "class_counts" in line and "classes" in line
    assert {k: v for k, v in listing(step).items() if not k.startswith(".")} == {
        k: v for k, v in before.items() if not k.startswith(".")
    }


# -- 12. divergence stops a command with one line; JSON stays standard (#32 item 4) ------------
def test_a_diverged_distillation_stops_naming_the_iteration_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    from fakedata import tiny_digits, tiny_distill_config

    from dream_cl.distill import engine
    from dream_cl.errors import UserError

    real = engine.OuterStep

    class Poisoned:  # the images blow up in the third outer iteration
        def __init__(self, outer) -> None:
            self.step = real(outer)

        def __call__(self, ctx, it: int) -> float:
            loss = self.step(ctx, it)
            if it == 2:
                with torch.no_grad():
                    ctx.syn.images[0].fill_(float("inf"))
            return loss

    monkeypatch.setattr(engine, "OuterStep", Poisoned)
    cfg, out = tiny_distill_config("idc"), tmp_path / "run"
    cfg.iterations, cfg.checkpoint_every = 5, 1
    expected = "diverged at iteration 3: its synthetic images became NaN or infinite"
    with pytest.raises(UserError, match=expected) as err:
        engine.distill(cfg, tiny_digits(3, 30), out=out)
    assert f"the checkpoint of iteration 2 in {out} is kept" in str(err.value)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["iteration"] == 2 and torch.isfinite(saved["images"]).all()
    assert not (out / "images.pt").exists()


@pytest.mark.slow
def test_a_diverging_command_is_one_line_and_its_json_is_standard(tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = (*DISTILL, "--iterations", "6", "--checkpoint-every", "2", "--quiet", "--out", out)
    line = refused(invoke(*args, "--lr-img", "1e30"), "diverged at iteration 1", "lr_img")
    assert "nothing of it was saved" in line and not (out / "checkpoint.pt").exists()
    run = tmp_path / "run"
    line = refused(invoke(*RUN, "--out", run, "--distill-set", "lr_img=1e30"), "diverged")
    args = (*RUN, "--epochs", "3", "--lr", "1e8", "--out", tmp_path / "run-lr")
    refused(invoke(*args), "training diverged in step 0, epoch", "Lower --lr")
    assert not (tmp_path / "run-lr" / "order0" / "step0" / "model.pt").exists()
    coreset = tmp_path / "c"
    assert invoke("coreset", "digits", "--ipc", "2", "--out", coreset).exit_code == 0
    args = ("evaluate", coreset, "--lr", "1e6", "--epochs", "8", "--checkpoint-seconds", "0")
    line = refused(invoke(*args, "--quiet"), "evaluation diverged: model convnet", "--lr")
    assert not (coreset / "eval_convnet.json").exists()

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON literal {constant}")

    for path in tmp_path.rglob("*.json"):  # standard JSON: no NaN or Infinity literals
        json.loads(path.read_text(), parse_constant=refuse)


def test_a_set_with_nan_pixels_or_a_mangled_meta_field_is_one_line_naming_it(
    tmp_path: Path,
) -> None:
    from dream_cl.artifact import load_image_set, save_image_set
    from dream_cl.utils import atomic_write_json

    folder = tmp_path / "set"
    assert invoke("coreset", "digits", "--ipc", "1", "--out", folder).exit_code == 0
    good = load_image_set(folder)
    for name, value in (("info", None), ("info", {"name": 1}), ("meta", []), ("factor", None),
                        ("images_bytes", "x"), ("images_sha256", 5)):  # fmt: skip
        bad = tmp_path / f"{name}-{value}"
        save_image_set(good, bad)
        meta = json.loads((bad / "meta.json").read_text())
        atomic_write_json(meta | {name: value}, bad / "meta.json")
        line = refused(invoke("show", bad), f"field '{name}'")
        assert "object" not in line and "NoneType" not in line, line
    good.images[0, 0, 0, 0] = float("nan")
    save_image_set(good, tmp_path / "nan")
    refused(invoke("evaluate", tmp_path / "nan", "--epochs", "1"), "NaN or infinite pixels")
    refused(invoke("show", tmp_path / "nan"), "NaN or infinite pixels")


# -- 13. Ctrl-C while the libraries load (#32 item 7) --------------------------------------------
INTERRUPTED_IMPORT = """
import builtins, importlib.metadata, os, signal, sys
# a terminal's Ctrl-C: a background launch inherits SIGINT ignored, which Python keeps
signal.signal(signal.SIGINT, signal.default_int_handler)
(script,) = [e for e in importlib.metadata.entry_points(group="console_scripts")
             if e.name == "dream-cl"]
real = builtins.__import__
def interrupting(name, *args, **kw):
    if name == "torch":  # what a Ctrl-C in the first second meets
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kw)
builtins.__import__ = interrupting
sys.argv = ["dream-cl", "datasets"]
script.load()()
"""


def test_ctrl_c_while_starting_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=TIMEOUT
    )
    one_line(proc, "interrupted by SIGINT while dream-cl was starting", code=130)


# -- 14. no --out inside the data (#32 item 5) ---------------------------------------------------
def test_an_out_inside_the_data_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from fakedata import write_image_folder

    from dream_cl.data.cifar import CIFAR10_CLASSES

    photos = write_image_folder(tmp_path / "photos", per_class=6)
    before = listing(photos)
    for args in (
        ("run", photos, "--steps", "2", "--quiet", "--out", photos / "run"),
        ("distill", "imagefolder", "--data-root", photos, "--quiet", "--out", photos / "set"),
        ("coreset", "imagefolder", "--data-root", photos, "--ipc", "1", "--out", photos),
    ):
        refused(invoke(*args), "inside the imagefolder data")
    assert listing(photos) == before
    root = tmp_path / "root"
    write_image_folder(root / "cifar10-jpeg", CIFAR10_CLASSES, per_class=2, split_dirs=True)
    zebra = root / "cifar10-jpeg" / "train" / "zebra"
    args = ("coreset", "cifar10", "--data-root", root, "--ipc", "1", "--out", zebra)
    refused(invoke(*args), "inside the cifar10 data")
    assert not zebra.exists()
    assert invoke(*args[:-1], root / "runs" / "zebra").exit_code == 0  # beside it is fine
    # SVHN's official files lie in the data root itself: other folders there stay free
    from fakedata import write_svhn

    write_svhn(root)
    svhn = ("coreset", "svhn", "--data-root", root, "--ipc", "1", "--out", root / "runs" / "s")
    assert invoke(*svhn).exit_code == 0


# -- 15. the decode cache keeps its promise (#32 item 6) -------------------------------------------
def test_the_decode_cache_is_keyed_by_content_checked_listed_and_cleared(
    tmp_path: Path, monkeypatch
) -> None:
    from fakedata import write_image_folder

    from dream_cl.data import load_train_test
    from dream_cl.data.imagecache import CACHE_ENV

    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    photos = write_image_folder(tmp_path / "photos", per_class=3, split_dirs=True)
    first = load_train_test("imagefolder", photos)[0]
    entries = sorted(cache.glob("decoded-*.pt"))
    assert len(entries) == 2  # train and test
    # altered pixels in an entry: checked on reading, rebuilt from the files
    for path in entries:
        record = torch.load(path, weights_only=True)
        record["images"][0, 0, 0, 0] ^= 0xFF
        torch.save(record, path)
    assert torch.equal(load_train_test("imagefolder", photos)[0].images, first.images)
    # a file changed with its size and mtime kept is decoded again (here: a broken PNG)
    victim = photos / "train" / "cat" / "000.png"
    stat, original = victim.stat(), victim.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    victim.write_bytes(bytes(damaged))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    args = ("distill", "imagefolder", "--data-root", photos, "--quiet", "--out", tmp_path / "x")
    refused(invoke(*args), "000.png")
    # a new version of a file gives a new entry, which replaces the listing's old one
    victim.write_bytes((photos / "train" / "dog" / "000.png").read_bytes())
    assert not torch.equal(load_train_test("imagefolder", photos)[0].images, first.images)
    assert len(list(cache.glob("decoded-*.pt"))) == 2  # one entry per listing, never more
    listed = invoke("cache")
    assert listed.exit_code == 0 and f"{cache}: 2 entries" in listed.output
    assert "files in" in listed.output and str(photos) in listed.output
    cleared = invoke("cache", "--clear")
    assert cleared.exit_code == 0 and "removed 2 entries" in cleared.output
    assert not list(cache.glob("decoded-*"))


# -- 16. smaller ones (#32 item 8) ----------------------------------------------------------------
def test_an_empty_class_folder_is_one_line_naming_it(tmp_path: Path) -> None:
    from fakedata import write_image_folder

    photos = write_image_folder(tmp_path / "photos", per_class=4)
    (photos / "zebra").mkdir()
    (photos / ".thumbnails").mkdir()  # hidden folders are not classes
    line = refused(invoke("coreset", "imagefolder", "--data-root", photos, "--ipc", "1",
                          "--out", tmp_path / "set"), "zebra holds no images")  # fmt: skip
    assert str(photos / "zebra") in line


def test_the_installed_tool_has_no_fault_injection_hook(tmp_path: Path) -> None:
    """DREAM_CL_TEST_KILL is honoured only with tests/faults on PYTHONPATH."""
    args = (*DISTILL, "--iterations", "2", "--checkpoint-every", "1", "--quiet")
    done = cli(*args, "--out", tmp_path / "run", env={"DREAM_CL_TEST_KILL": "0:1"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "images.pt").is_file()


@pytest.mark.slow
def test_a_dm_memory_distilled_on_two_processes_is_one_process_memory_bit_for_bit(
    tmp_path: Path,
) -> None:
    """Under ``run`` (3 classes on one rank, 2 on the other) DM's joint forward pass used to
    round differently from one process's (1.2e-7); one forward per class does not."""
    args = ("run", "digits", "--steps", "2", "--ipc", "3", "--epochs", "1", "--model",
            "convnet", "--distill-iterations", "20", "--memory", "dm", "--device", "cpu",
            "--quiet")  # fmt: skip
    assert cli(*args, "--out", tmp_path / "one").returncode == 0
    two = cli(*args, "--out", tmp_path / "two", "--nproc", "2")
    assert two.returncode == 0, two.stderr
    for k in (0, 1):
        step = Path("order0") / f"step{k}" / "distill" / "images.pt"
        assert sha(tmp_path / "one" / step) == sha(tmp_path / "two" / step), k


def test_a_hostile_tar_writes_nothing_and_reads_only_its_image_members(tmp_path: Path) -> None:
    import io
    import tarfile

    from fakedata import write_image_folder

    from dream_cl.data import load_train_test
    from dream_cl.data.cifar import CIFAR10_CLASSES

    base = write_image_folder(tmp_path / "src", CIFAR10_CLASSES, per_class=1, split_dirs=True)
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    with tarfile.open(root / "cifar10-jpeg.tar", "w") as tar:
        tar.add(base, arcname="cifar10-jpeg")
        png = (base / "train" / "cat" / "000.png").read_bytes()
        for name in ("cifar10-jpeg/train/../../../outside/x.png", f"{outside}/train/cat/y.png"):
            info = tarfile.TarInfo(name)
            info.size = len(png)
            tar.addfile(info, io.BytesIO(png))
        link = tarfile.TarInfo("cifar10-jpeg/train/cat/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    before = listing(tmp_path)
    train, test = load_train_test("cifar10", root)
    # read in memory, never extracted: the absolute member is one more cat image, the
    # '..' member is skipped and the link is not followed (/etc/passwd is no image)
    counts = [1] * 10
    counts[CIFAR10_CLASSES.index("cat")] = 2
    assert train.class_counts() == counts and test.class_counts() == [2] * 10
    assert listing(tmp_path) == before and not outside.exists()
