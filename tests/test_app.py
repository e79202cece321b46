"""The minimal app: it renders with no exception on a fresh machine and lists runs from the store."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.train import train_run
from tests.helpers import ROOT

APP = str(ROOT / "streamlit_app.py")


def test_app_renders_with_no_runs(settings):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value


def test_app_lists_finished_and_corrupt_runs(settings, tiny_folder):
    s = train_run(RunConfig(data=DataConfig(source=str(tiny_folder), img_size=32),
                            model=ModelConfig(backbone="efficientnet_lite0", regime="transfer"),
                            train=TrainConfig(epochs=1)), settings)
    bad = settings.runs_dir / "20000101-000000-broken"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    df = at.dataframe[0].value
    assert set(df["run"]) == {s["run_id"], bad.name}
    row = df[df["run"] == s["run_id"]].iloc[0]
    assert row["status"] == "finished" and row["test acc"] == s["test_acc"]
    assert any("corrupt" in c.value for c in at.caption)
