"""The Look inside page through streamlit's AppTest: four tiny runs (one a regime, trained by the engine) and a
corrupt run folder beside them, which the page must pass over.

The map's click is driven in real Chromium (``test_browser.py``); here the photo is seeded as a click, an upload or
a hand-over from Compare leaves it (:class:`core.app.photos.KeptPhoto` in the session).
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.app.inside import PHOTO_KEY, default_runs, explainable, in_regime_order, map_run
from core.app.photos import KeptPhoto
from core.models.regimes import REGIMES, display_name
from core.runs.predictions import load_predictions
from core.runs.store import RunStore
from core.settings import ENV_CACHE_DIR, ENV_RUNS_DIR, Settings
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.train import train_run
from tests.helpers import open_app_page

BACKBONE = "efficientnet_lite0"


@pytest.fixture(scope="module")
def race(tmp_path_factory, session_cache, tiny_folder):
    """One launch of the four regimes on tiny data, and a corrupt run folder."""
    runs_dir = tmp_path_factory.mktemp("inside") / "runs"
    settings = Settings(cache_dir=session_cache, runs_dir=runs_dir)
    ids = {}
    for regime in REGIMES:
        cfg = RunConfig(
            data=DataConfig(source=str(tiny_folder), img_size=32, split_seed=0),
            model=ModelConfig(backbone=BACKBONE, regime=regime),
            train=TrainConfig(epochs=1, seed=0, lr=1e-3),
            group="g-inside",
        )
        ids[regime] = train_run(cfg, settings)["run_id"]
    corrupt = runs_dir / "20260101-000000-full-efficientnet_lite0-broken"
    corrupt.mkdir(parents=True)
    (corrupt / "config.json").write_text("{not json")
    (corrupt / "best.pt").write_bytes(b"garbage")
    return {"settings": settings, "ids": ids, "runs_dir": runs_dir, "root": tiny_folder}


@pytest.fixture
def page(race, monkeypatch):
    monkeypatch.setenv(ENV_CACHE_DIR, str(race["settings"].cache_dir))
    monkeypatch.setenv(ENV_RUNS_DIR, str(race["runs_dir"]))

    def open_page(**state) -> AppTest:
        return open_app_page("app_pages/look_inside.py", state, timeout=300)

    return open_page


def _test_photo(race, regime="full") -> KeptPhoto:
    """A photo of the run's test split, as "A random test photo" or a click in Hardest mistakes keeps it."""
    run = RunStore(race["runs_dir"]).get(race["ids"][regime])
    preds = load_predictions(run.dir)
    return KeptPhoto.dataset_photo(preds.root, preds.files[0], preds.classes[preds.labels[0]], "a test split")


def test_the_default_runs_are_the_latest_launch_in_regime_order_and_skip_the_corrupt_one(race):
    runs = RunStore(race["runs_dir"]).list_runs()
    assert any(r.status == "corrupt" for r in runs)
    usable = explainable(runs)
    assert all(r.status != "corrupt" and r.has_checkpoint for r in usable) and len(usable) == 4
    assert default_runs(runs, owner="") == [race["ids"][r] for r in REGIMES]
    assert [r.run_id for r in in_regime_order(reversed(usable))] == [race["ids"][r] for r in REGIMES]
    assert map_run(usable).run_id == race["ids"]["full"]  # the most fine-tuned one sits beside ImageNet


@pytest.mark.slow
def test_the_page_explains_the_latest_race_side_by_side(race, page):
    photo = _test_photo(race)
    at = page(**{PHOTO_KEY: photo})
    assert at.title[0].value == "🔬 Look inside"
    assert at.multiselect(key="look_runs").value == [race["ids"][r] for r in REGIMES]
    headers = [h.value for h in at.header]
    assert headers[:3] == ["1 · What ImageNet sees", "2 · Where each run looks", "3 · Filters and feature maps"]
    shown = [m.value for m in at.markdown]
    for regime in REGIMES:
        assert f"**{display_name(regime)}**" in shown
    # a heat map for each run's prediction (and the true class where it differs), each with its probability
    cam_captions = [i.caption for el in at.get("image") for i in el.proto.imgs if "predicted:" in i.caption]
    assert len(cam_captions) == len(REGIMES)
    assert any("target layer body.bn2" in c.value for c in at.caption)
    # ImageNet's top 5 (Lite0's weights ship offline), then top-3 of each run
    assert len(at.get("progress")) >= 5 + 3 * len(REGIMES)
    assert not at.error
    # finer maps: the runs (32 px) explained at 224 px, and the page says at which size
    at.toggle(key="look_cam_fine").set_value(True).run()
    assert not at.exception and not at.error
    assert any("body.bn2 at 224 px, as asked (the run was trained at 32 px)" in c.value for c in at.caption)
    cams = [el for el in at.get("image") for i in el.proto.imgs if "predicted:" in i.caption]
    assert len(cams) == len(REGIMES)


@pytest.mark.slow
@pytest.mark.parametrize("regime", list(REGIMES))
def test_each_regime_alone_renders_every_section(race, page, regime):
    at = page(**{PHOTO_KEY: _test_photo(race, regime), "look_runs": [race["ids"][regime]]})
    assert at.multiselect(key="look_runs").value == [race["ids"][regime]]
    assert [h.value for h in at.header] == [
        "1 · What ImageNet sees",
        "2 · Where each run looks",
        "3 · Filters and feature maps",
        "4 · The embedding map",
        "5 · Hardest mistakes",
        "6 · Backbone zoo",
    ]
    assert not at.error and not at.exception
    hardest = [i.caption for el in at.get("image") for i in el.proto.imgs if "→" in i.caption]
    preds = load_predictions(RunStore(race["runs_dir"]).get(race["ids"][regime]).dir)
    assert len(hardest) == min(12, preds.n)
    first = preds.hardest(1)[0]
    assert f"true **{first['true']}** → {first['predicted']}" in hardest[0]


@pytest.mark.slow
def test_look_inside_from_hardest_mistakes_makes_it_the_photo(race, page):
    regime = "scratch"
    at = page(**{PHOTO_KEY: None, "look_runs": [race["ids"][regime]]})
    preds = load_predictions(RunStore(race["runs_dir"]).get(race["ids"][regime]).dir)
    first = preds.hardest(1)[0]
    at.button(key=f"look_hard-{race['ids'][regime]}-{first['file']}").click().run()
    assert not at.exception, at.exception
    kept = at.session_state[PHOTO_KEY]
    assert (kept.rel, kept.truth) == (first["file"], first["true"])


@pytest.mark.slow
def test_compare_hands_a_mistake_over_to_look_inside(race, page):
    at = page()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    buttons = [b for b in at.button if str(b.key).startswith("cm_look-")]
    assert buttons, "Compare shows its mistakes with a Look inside button"
    file = buttons[0].key.removeprefix("cm_look-")
    buttons[0].click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "🔬 Look inside"
    kept = at.session_state[PHOTO_KEY]
    assert kept.rel == file and kept.truth == file.split("/")[0]
    assert any(file.split("/")[-1] in i.caption for el in at.get("image") for i in el.proto.imgs)


def test_a_run_whose_config_does_not_say_what_it_is_is_not_offered(tmp_path):
    writer = RunStore(tmp_path / "runs").create("full", BACKBONE)
    model = {"regime": "full", "backbone": BACKBONE}
    writer.write_config({"data": {"source": "sample", "img_size": 32}, "model": model, "train": {"seed": 0}})
    writer.save_checkpoint({})  # a checkpoint, but no resolved classes: nothing to name its outputs with
    writer.write_summary({"status": "finished"})
    run = RunStore(tmp_path / "runs").get(writer.run_id)
    assert run.has_checkpoint and run.status == "finished"
    assert explainable([run]) == [] and default_runs([run], owner="") == []
