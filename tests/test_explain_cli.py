"""``python -m core explain``: two PNGs and one JSON line for a saved run and a photo; bad input is one clear
paragraph, exit status 2, and no file written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from core.cli import main
from core.explain.cam import CAM_METHODS
from core.runs.evaluate import load_run_model, run_classes_and_size
from core.runs.predictions import load_photo, predict_image
from core.runs.store import load_run
from core.settings import Settings
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.train import train_run


@pytest.fixture(scope="module")
def tiny_run(tiny_folder, session_cache, tmp_path_factory) -> Path:
    """One transfer run of EfficientNet-Lite0 on the tiny folder: 1 epoch at 32 px, seconds."""
    settings = Settings(cache_dir=session_cache, runs_dir=tmp_path_factory.mktemp("runs"))
    cfg = RunConfig(
        data=DataConfig(source=str(tiny_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="transfer"),
        train=TrainConfig(epochs=1, lr=1e-3, batch_size=32),
    )
    return Path(train_run(cfg, settings)["run_dir"])


@pytest.fixture
def a_photo(tiny_folder) -> Path:
    return next((tiny_folder / "roses").iterdir())


def explain(capsys, *args):
    code = main(["explain", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_writes_the_heat_map_and_the_feature_sheet(tiny_run, a_photo, settings, tmp_path, capsys):
    out_dir = tmp_path / "made" / "here"
    code, out, err = explain(capsys, "--run", tiny_run, "--image", a_photo, "--out", out_dir)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    for key in ("prediction", "top3", "imagenet_top5", "cam", "features", "target_layer", "method", "seconds"):
        assert key in result
    assert set(result["prediction"]) == {"label", "prob"} and result["prediction"] == result["top3"][0]
    assert len(result["top3"]) == 3 and all(set(t) == {"label", "prob"} for t in result["top3"])
    assert result["target_layer"] == "body.bn2" and result["method"] == "gradcam" and result["seconds"] > 0
    assert result["img_size"] == 32 and result["precision"] == "float32"
    top5 = result["imagenet_top5"]  # Lite0's ImageNet weights ship with a package: available offline
    assert len(top5) == 5 and all(isinstance(t["label"], str) and 0 <= t["prob"] <= 1 for t in top5)
    for key in ("cam", "features"):
        path = Path(result[key])
        assert path.parent == out_dir and path.suffix == ".png"
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) >= 32
    with Image.open(result["cam"]) as im:
        assert im.size == (224, 224)  # the 32 px map, scaled up by a whole factor
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(Path(result[k]).name for k in ("cam", "features"))


def test_explain_draws_the_true_class_beside_the_prediction(tiny_run, a_photo, settings, tmp_path, capsys):
    run = load_run(tiny_run)
    pred = predict_image(load_run_model(run), *run_classes_and_size(run), load_photo(a_photo), k=1)[0][0]
    other = next(c for c in ("daisy", "roses") if c != pred)
    code, out, err = explain(
        capsys, "--run", tiny_run, "--image", a_photo, "--out", tmp_path, "--true-class", other,
        "--img-size", "48", "--method", "gradcam++",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["prediction"]["label"] == pred and result["method"] == "gradcam++" and result["img_size"] == 48
    assert [(c["label"], c["role"]) for c in result["cam_classes"]] == [(pred, "predicted"), (other, "true class")]
    with Image.open(result["cam"]) as im:
        assert im.width > 2 * im.height  # two maps side by side


@pytest.mark.parametrize(
    "case",
    ["missing run", "run without checkpoint", "corrupt run", "missing image", "text file as image", "unknown class"],
)
def test_bad_input_is_one_clear_paragraph_and_writes_nothing(case, tiny_run, a_photo, settings, tmp_path, capsys):
    run, image, extra = tiny_run, a_photo, []
    if case == "missing run":
        run = tmp_path / "no-such-run"
    elif case == "run without checkpoint":
        run = shutil.copytree(tiny_run, tmp_path / "copy")
        (run / "best.pt").unlink()
    elif case == "corrupt run":
        run = shutil.copytree(tiny_run, tmp_path / "copy")
        (run / "config.json").write_text("{ not json")
    elif case == "missing image":
        image = tmp_path / "nope.jpg"
    elif case == "text file as image":
        image = tmp_path / "notes.jpg"
        image.write_text("these are not pixels")
    else:
        extra = ["--true-class", "orchids"]
    out_dir = tmp_path / "out"
    code, out, err = explain(capsys, "--run", run, "--image", image, "--out", out_dir, *extra)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert out == ""
    assert not out_dir.exists()


def test_an_unknown_method_is_refused_by_the_parser(tiny_run, a_photo, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "explain",
                "--run",
                str(tiny_run),
                "--image",
                str(a_photo),
                "--out",
                str(tmp_path / "o"),
                "--method",
                "lime",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'lime'" in err and all(m in err for m in CAM_METHODS) and "Traceback" not in err
    assert not (tmp_path / "o").exists()
