"""The Compare page and what it reads: runs made by the engine on tiny data, then a stopped run, a run
killed mid-way (no summary), one still training and a corrupt folder next to them — the page must show each
as what it is."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.app.plots import CurveSeries, confusion_figure, curves_figure, smooth
from core.data.decode import decode_image
from core.data.splits import SplitTensors
from core.errors import DataError
from core.models.inference import evaluate_model
from core.models.regimes import display_name
from core.runs.compare import (
    BEST_STYLE,
    READ_FIRST,
    TABLE_COLUMNS,
    constant_caption,
    constant_columns,
    epoch_metrics,
    headline,
    per_class_table,
    readable_runs_table,
    readable_summary,
    regime_summary,
    runs_table,
    styled_runs_table,
    url_choice,
    url_values,
)
from core.runs.evaluate import evaluate_run, load_run_model, run_test_predictions
from core.runs.predictions import load_photo, load_predictions, predict_image
from core.runs.store import STATUSES, RunStore, RunWriter
from core.settings import ENV_CACHE_DIR, ENV_RESNET18_WEIGHTS, ENV_RUNS_DIR, Settings
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.events import EpochEnd
from core.training.train import train_run
from tests.helpers import open_app_page

BACKBONE = "efficientnet_lite0"


def _cfg(folder, regime, seed, epochs=2, group="g-test"):
    return RunConfig(
        data=DataConfig(source=str(folder), img_size=32, split_seed=seed),
        model=ModelConfig(backbone=BACKBONE, regime=regime),
        train=TrainConfig(epochs=epochs, seed=seed, lr=1e-3),
        group=group,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory, session_cache, tiny_folder):
    """A run store with: transfer seeds 0 and 1, finetune seed 0 (one launch group), a run stopped after
    its first epoch, a run whose process died (no summary), one still training, and a corrupt folder."""
    settings = Settings(cache_dir=session_cache, runs_dir=tmp_path_factory.mktemp("compare") / "runs")
    summaries = {}
    for regime, seed in (("transfer", 0), ("transfer", 1), ("finetune", 0)):
        summaries[(regime, seed)] = train_run(_cfg(tiny_folder, regime, seed), settings)
    epochs_seen = []

    def note(event):
        if isinstance(event, EpochEnd):
            epochs_seen.append(event.epoch)

    stopped = train_run(
        _cfg(tiny_folder, "full", 0, epochs=5, group="g-old"),
        settings,
        on_event=note,
        should_stop=lambda: len(epochs_seen) >= 1,
    )
    killed = settings.runs_dir / "20000101-000001-transfer-efficientnet_lite0-dead"
    shutil.copytree(summaries[("transfer", 0)]["run_dir"], killed)
    (killed / "summary.json").unlink()
    (killed / "predictions.json").unlink()
    status = json.loads((killed / "status.json").read_text())
    (killed / "status.json").write_text(json.dumps({**status, "status": "running", "pid": 2**22 + 12345}))
    live = settings.runs_dir / "20000101-000002-transfer-efficientnet_lite0-live"  # still training, here
    shutil.copytree(summaries[("transfer", 1)]["run_dir"], live)
    for name in ("summary.json", "predictions.json"):
        (live / name).unlink()
    config = json.loads((live / "config.json").read_text())
    (live / "config.json").write_text(json.dumps({**config, "group": "g-live"}))
    (live / "status.json").write_text(json.dumps({**status, "status": "running", "pid": os.getpid()}))
    trainer = RunWriter(live).hold()  # its run.lock, held by "the training process": this one
    corrupt = settings.runs_dir / "20000101-000000-broken"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{")
    return {
        "settings": settings,
        "summaries": summaries,
        "stopped": stopped,
        "killed": killed.name,
        "live": live.name,
        "live_lock": trainer,  # held as long as the fixture lives
        "corrupt": corrupt.name,
        "folder": tiny_folder,
    }


@pytest.fixture
def compare_page(store, monkeypatch):
    monkeypatch.setenv(ENV_CACHE_DIR, str(store["settings"].cache_dir))
    monkeypatch.setenv(ENV_RUNS_DIR, str(store["settings"].runs_dir))
    monkeypatch.delenv(ENV_RESNET18_WEIGHTS, raising=False)

    def open_page(query: dict | None = None) -> AppTest:
        """The Compare page, opened from a link with ``query`` (URL parameters) when given."""
        return open_app_page("app_pages/compare.py", query=query)

    return open_page


def _chart(at, title_word):
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title_word in json.dumps(spec.get("layout", {})) or title_word in json.dumps(spec.get("data", [])[:1]):
            return spec
    raise AssertionError(f"no chart mentioning {title_word!r}")


# ------------------------------------------------------------------------------------------- the page


@pytest.mark.slow
def test_table_rows_match_each_runs_summary(store, compare_page):
    at = compare_page()
    df = at.dataframe[0].value
    assert len(df) == 7
    assert list(df.columns[:3]) == list(READ_FIRST)  # what a student reads first; nothing equal in all 7 rows
    # every run augmented the notebook's way: that column is hidden, and the caption above the table says it
    assert sorted(df.columns) == sorted(c for c in TABLE_COLUMNS if c != "augment")
    assert any("flip-rotate" in c.value for c in at.caption)
    for s in store["summaries"].values():
        row = df[df["run"] == s["run_id"]].iloc[0]
        assert row["status"] == "finished" and row["backbone"] == BACKBONE
        assert row["regime"] == display_name(s["regime"], with_cli=True)  # "Transfer learning (transfer)"
        assert row["test acc"] == pytest.approx(s["test_acc"])
        assert row["best val acc"] == pytest.approx(s["best_val_acc"])
        assert row["best epoch"] == s["best_epoch"]
        assert row["train s"] == pytest.approx(s["train_seconds"])
        assert row["s/epoch"] == pytest.approx(s["seconds_per_epoch"])
        assert row["trainable params"] == s["trainable_params"] and row["total params"] == s["total_params"]
        assert row["epochs"] == row["of"] == 2 and row["image px"] == 32 and row["dataset"] == store["folder"].name
    status = dict(zip(df["run"], df["status"]))
    assert status[store["stopped"]["run_id"]] == "interrupted"
    assert status[store["killed"]] == "interrupted"
    assert status[store["corrupt"]] == "corrupt"
    assert status[store["live"]] == "running"
    killed = df[df["run"] == store["killed"]].iloc[0]  # no summary: its epochs so far still count
    assert killed["epochs"] == 2 and not math.isnan(killed["best val acc"]) and math.isnan(killed["test acc"])
    captions = " ".join(c.value for c in at.caption)
    assert "corrupt" in captions and "ended before the run finished" in captions
    assert at.download_button(key="download_table").label.startswith("⬇️ Table as CSV")


@pytest.mark.slow
def test_headline_and_summary_pool_seeds(store, compare_page):
    at = compare_page()
    summary = at.dataframe[1].value
    accs = [store["summaries"][("transfer", s)]["test_acc"] for s in (0, 1)]
    transfer = summary[summary["regime"] == "Transfer learning (transfer)"].iloc[0]
    assert transfer["runs"] == 2 and transfer["seeds"] == "0, 1"
    assert transfer["mean test acc"] == pytest.approx(sum(accs) / 2)
    assert transfer["std"] == f"{pd.Series(accs).std(ddof=1):.1%}"  # shown as text, to the shown precision
    finetune = summary[summary["regime"] == display_name("finetune", with_cli=True)].iloc[0]
    assert finetune["runs"] == 1 and finetune["std"] == "—"  # one run has no spread (not "None")
    assert len(summary) == 2 and summary["runs"].sum() == 3  # the interrupted, killed and running runs are left out
    verdict = at.success[0].value
    assert " wins: " in verdict or " tie " in verdict  # tiny test splits: a tie at 0.1% is possible
    assert "Transfer learning" in verdict or "Fine-tune (first N frozen)" in verdict
    assert not re.search(r"\*\*(transfer|finetune)\*\*", verdict)  # never the internal name alone


@pytest.mark.slow
def test_filters_narrow_the_table(store, compare_page):
    at = compare_page()

    def pick(label):
        return next(m for m in at.multiselect if m.label == label)

    pick("Status").set_value(["finished"]).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert len(shown) == 3 and "status" not in shown  # equal in every row: said in the caption instead
    assert list(shown.columns[:3]) == ["regime", "test acc", "train s"]
    assert not {"backbone", "dataset", "image px", "epochs", "of"} & set(shown.columns)
    caption = next(c.value for c in at.caption if c.value.startswith("All runs: "))
    assert caption.startswith(f"All runs: {BACKBONE}, dataset {store['folder'].name}, ")
    assert "2 of 2 epochs, 32 px" in caption and "finished" in caption
    summary = at.dataframe[1].value  # the summary leaves out what the caption says too
    assert list(summary.columns[:2]) == ["regime", "runs"] and "backbone" not in summary
    pick("Dataset").set_value([]).run()
    assert not at.exception and len(at.dataframe[0].value) == 0
    assert "No finished runs" in at.info[0].value


@pytest.mark.slow
def test_a_run_on_a_new_dataset_is_not_hidden_by_the_filters(store, compare_page, tmp_path):
    at = compare_page()
    next(m for m in at.multiselect if m.label == "Status").set_value(["finished", "interrupted"]).run()
    new = store["settings"].runs_dir / "20000101-000003-transfer-efficientnet_lite0-new0"
    shutil.copytree(store["summaries"][("finetune", 0)]["run_dir"], new)
    config = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**config, "data": {**config["data"], "source": "sample"}}))
    try:
        at.run()
        shown = at.dataframe[0].value
        assert new.name in set(shown["run"]) and set(shown["status"]) == {"finished", "interrupted"}
    finally:
        shutil.rmtree(new)


@pytest.mark.slow
def test_a_shared_link_opens_the_same_selection_and_drops_what_it_does_not_know(store, compare_page):
    transfer, finetune = store["summaries"][("transfer", 0)]["run_id"], store["summaries"][("finetune", 0)]["run_id"]
    at = compare_page(
        {
            "compare_status": ["finished", "exploded"],  # one unknown status: ignored
            "compare_dataset": "nowhere",  # nothing usable: the default (all)
            "compare_runs": [finetune, transfer, "20000101-gone"],
            "compare_tab": "confusion",
            "dataset_choice": "Built-in sample",  # another page's parameter: left alone
        }
    )
    assert at.multiselect(key="filter_status-" + "|".join(STATUSES)).value == ["finished"]
    datasets = next(m for m in at.multiselect if m.label == "Dataset")
    assert datasets.value == datasets.options and len(at.dataframe[0].value) == 3
    assert set(at.multiselect(key="compare_runs").value) == {transfer, finetune}
    assert at.session_state["compare_tab"] == "🧩 Confusion matrix"
    captions = [c.value for c in at.caption]
    assert any("exploded" in c for c in captions) and any("20000101-gone" in c for c in captions)
    assert any("nowhere" in c for c in captions)
    # the link is rewritten with what was used: unknown values gone, the other page's parameter kept
    assert at.query_params["compare_status"] == "finished" and "compare_dataset" not in at.query_params
    assert sorted(at.query_params["compare_runs"]) == sorted([transfer, finetune])
    assert at.query_params["compare_tab"] == "confusion" and at.query_params["dataset_choice"] == "Built-in sample"
    at.run()  # the next run reads the widgets, not the link again: the captions are gone
    assert not any("exploded" in c.value for c in at.caption)
    assert at.multiselect(key="filter_status-" + "|".join(STATUSES)).value == ["finished"]


@pytest.mark.slow
def test_changing_the_selection_writes_the_link_and_the_default_keeps_it_short(store, compare_page):
    at = compare_page()
    assert not [k for k in at.query_params if k.startswith("compare_")]  # the default view: a short link
    status = next(m for m in at.multiselect if m.label == "Status")
    status.set_value(["finished", "running"]).run()
    assert sorted(at.query_params["compare_status"]) == ["finished", "running"]
    datasets = next(m for m in at.multiselect if m.label == "Dataset")
    datasets.set_value([]).run()
    assert at.query_params["compare_dataset"] == ""  # nothing chosen, said as such
    datasets = next(m for m in at.multiselect if m.label == "Dataset")
    datasets.set_value(list(reversed(datasets.options))).run()  # all of them, in any order: the default
    next(m for m in at.multiselect if m.label == "Status").set_value(list(STATUSES)).run()
    assert "compare_status" not in at.query_params and "compare_dataset" not in at.query_params
    one = store["summaries"][("finetune", 0)]["run_id"]
    at.multiselect(key="compare_runs").set_value([one]).run()
    assert at.query_params["compare_runs"] == one
    at.session_state["compare_tab"] = "🔮 Predict a photo"  # what a click on the tab does
    at.run()
    assert not at.exception and at.query_params["compare_tab"] == "predict"
    at.session_state["compare_tab"] = "📈 Curves"
    at.run()
    assert "compare_tab" not in at.query_params


@pytest.mark.slow
def test_curves_and_epoch_csv_of_the_chosen_runs(store, compare_page):
    at = compare_page()
    chosen = at.multiselect(key="compare_runs").value  # the newest launch group by default
    assert set(chosen) == {s["run_id"] for s in store["summaries"].values()} | {store["killed"]}
    spec = _chart(at, "Validation accuracy")
    names = {t.get("name") for t in spec["data"]}
    assert any("Transfer learning" in (n or "") for n in names) and any("(raw)" in (n or "") for n in names)
    at.slider(key="smoothing").set_value(0.0).run()
    assert not any("(raw)" in (t.get("name") or "") for t in _chart(at, "Validation accuracy")["data"])
    assert at.download_button(key="download_epochs")


@pytest.mark.slow
def test_confusion_matrix_sums_to_the_test_split_and_shows_the_cell_photos(store, compare_page):
    s = store["summaries"][("transfer", 0)]
    at = compare_page()
    at.selectbox(key="cm_run").set_value(s["run_id"]).run()
    heat = next(t for t in _chart(at, "share of")["data"] if t["type"] == "heatmap")
    counts = [[int(v) for v in row] for row in heat["text"]]
    assert sum(map(sum, counts)) == s["n_test"] == s["split_sizes"]["test"]
    assert counts == s["confusion"]
    # choosing a cell shows exactly its photos
    cell_key = f"cm_cell-{s['run_id']}"
    classes = s["classes"]
    t, p = max(((a, b) for a in range(5) for b in range(5)), key=lambda ab: counts[ab[0]][ab[1]])
    at.selectbox(key=cell_key)  # exists
    at.session_state[cell_key] = (classes[t], classes[p])  # what a click on the cell does
    at.run()
    assert not at.exception
    assert len(at.get("image")) == min(counts[t][p], 24)


@pytest.mark.slow
def test_a_run_still_training_gets_a_confusion_matrix_from_its_checkpoint_but_none_is_saved(store, compare_page):
    at = compare_page()
    at.multiselect(key="compare_runs").set_value([store["live"]]).run()
    assert not at.exception
    # every visit of a student would evaluate it in the server: it is tested only when someone asks
    assert at.selectbox(key="cm_run").value is None
    assert not [c for c in at.get("plotly_chart") if "share of" in c.proto.spec]
    assert any("still training" in i.value for i in at.info)
    at.selectbox(key="cm_run").set_value(store["live"]).run()
    heat = next(t for t in _chart(at, "share of")["data"] if t["type"] == "heatmap")
    assert sum(int(v) for row in heat["text"] for v in row) == store["summaries"][("transfer", 1)]["n_test"]
    assert not (store["settings"].runs_dir / store["live"] / "predictions.json").exists()


@pytest.mark.slow
def test_predict_a_test_photo_with_every_chosen_run(store, compare_page):
    at = compare_page()
    at.button(key="predict_random").click().run()
    assert not at.exception
    bars = at.get("progress")
    assert len(bars) == 4 * 3  # top-3 for each of the four chosen runs (the killed one has a checkpoint)
    # each run's bars are its own top 3 for that photo, as core predicts them
    sample = at.session_state["predict_sample"]
    photo = load_photo(sample["path"])
    chosen = set(at.multiselect(key="compare_runs").value)
    ready = [r for r in RunStore(store["settings"].runs_dir).list_runs() if r.run_id in chosen and r.has_checkpoint]
    assert len(ready) == 4
    for i, run in enumerate(ready):
        classes, size = run.config["resolved"]["classes"], run.config["data"]["img_size"]
        top = predict_image(load_run_model(run), classes, size, photo, k=3)
        shown = bars[3 * i : 3 * i + 3]
        assert [b.proto.text.split(" — ")[0] for b in shown] == [c for c, _ in top]
        assert [b.proto.value for b in shown] == pytest.approx([int(p * 100) for _, p in top], abs=1)
        # the top-1 is marked right or wrong: the photo's class is known
        assert shown[0].proto.text.endswith("✅" if top[0][0] == sample["true"] else "❌")


@pytest.mark.slow
def test_evaluate_on_another_folder_matches_the_cli_and_says_it_saw_these_photos(store, compare_page):
    at = compare_page()
    run_id = at.selectbox(key="eval_run").value
    at.button(key="eval_use_sidebar").click().run()  # the sidebar's dataset: the built-in sample
    assert not at.exception
    assert at.text_input(key="eval_folder").value == at.session_state["dataset"]["root"]
    at.text_input(key="eval_folder").input(str(store["folder"])).run()
    at.button(key="eval_go").click().run()
    assert not at.exception
    expected = evaluate_run(store["settings"].runs_dir / run_id, str(store["folder"]), store["settings"])
    assert next(m for m in at.metric if m.label == "Accuracy").value == f"{expected['accuracy']:.1%}"
    assert next(m for m in at.metric if m.label == "Images").value == "80"
    split = json.loads((store["settings"].runs_dir / run_id / "split.json").read_text())["splits"]
    assert any(f"{len(split['train'])} of these 80 images were in its training split" in w.value for w in at.warning)
    assert any(f"python -m core evaluate {store['settings'].runs_dir / run_id} --data" in c.value for c in at.caption)

    at.text_input(key="eval_folder").input(str(store["folder"] / "nope")).run()
    at.button(key="eval_go").click().run()
    assert not at.exception and at.error  # a clear message...
    assert len(at.dataframe[0].value) == 7  # ...and nothing else lost


# ----------------------------------------------------------------------------------------------- core


@pytest.mark.slow
def test_training_saves_test_predictions_that_agree_with_the_summary(store):
    s = store["summaries"][("finetune", 0)]
    preds = load_predictions(s["run_dir"])
    assert preds is not None and preds.n == s["n_test"]
    assert preds.confusion() == s["confusion"] and preds.accuracy == pytest.approx(s["test_acc"])
    assert all(m["true"] != m["predicted"] for m in preds.mistakes())
    assert len(preds.mistakes()) == preds.n - sum(s["confusion"][i][i] for i in range(5))


@pytest.mark.slow
def test_predictions_are_computed_from_the_checkpoint_when_missing(store, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(store["summaries"][("transfer", 1)]["run_dir"], run_dir)
    (run_dir / "predictions.json").unlink()
    preds = run_test_predictions(RunStore(tmp_path).get(str(run_dir)), store["settings"])
    assert (run_dir / "predictions.json").exists()  # saved for next time
    assert preds.n == store["summaries"][("transfer", 1)]["n_test"]
    stale = {
        **json.loads((run_dir / "predictions.json").read_text()),
        "predictions": [(p + 1) % 5 for p in preds.predictions],
    }  # every one changed
    (run_dir / "predictions.json").write_text(json.dumps(stale))
    os.utime(run_dir / "predictions.json", (1, 1))  # older than the checkpoint: recomputed, not trusted
    assert (
        run_test_predictions(RunStore(tmp_path).get(str(run_dir)), store["settings"]).predictions == preds.predictions
    )


@pytest.mark.slow
def test_predict_image_matches_the_model_on_the_same_pixels(store):
    s = store["summaries"][("transfer", 0)]
    run = RunStore(store["settings"].runs_dir).get(s["run_id"])
    model = load_run_model(run)
    path = store["folder"] / load_predictions(run.dir).files[0]
    top = predict_image(model, s["classes"], 32, load_photo(path), k=3)
    x = torch.from_numpy(decode_image(path, 32)).permute(2, 0, 1).unsqueeze(0)
    probs = evaluate_model(model, SplitTensors(x, torch.tensor([0]))).probabilities[0]
    assert [c for c, _ in top] == [s["classes"][i] for i in probs.topk(3).indices]
    assert [p for _, p in top] == pytest.approx(probs.topk(3).values.tolist(), abs=1e-5)


@pytest.mark.parametrize(
    "payload, reason",
    [(b"this is not an image", "it is not in an image format"), (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00truncated", "")],
)
def test_a_file_that_is_not_a_photo_gets_a_clear_message(payload, reason):
    with pytest.raises(DataError, match=f"'holiday.jpg' cannot be used as a photo: {reason}") as e:
        load_photo(io.BytesIO(payload), "holiday.jpg")
    assert "BytesIO" not in str(e.value) and "UploadedFile" not in str(e.value)


def test_photo_exif_rotation_is_respected(tmp_path):
    from PIL import Image

    im = Image.new("RGB", (40, 20), "red")
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    im.save(tmp_path / "phone.jpg", exif=exif)
    assert load_photo(tmp_path / "phone.jpg").size == (20, 40)


@pytest.mark.slow
def test_table_csv_round_trips(store):
    runs = RunStore(store["settings"].runs_dir).list_runs()
    table = runs_table(runs)
    back = pd.read_csv(io.StringIO(table.to_csv(index=False)))
    assert list(back.columns) == list(table.columns) and len(back) == len(table)
    for col in ("test acc", "best val acc", "train s"):
        assert back[col].tolist() == pytest.approx(table[col].astype(float).tolist(), nan_ok=True)
    metrics = epoch_metrics([r for r in runs if r.status != "corrupt"])
    back = pd.read_csv(io.StringIO(metrics.to_csv(index=False)))
    assert len(back) == sum(len(r.metrics) for r in runs) and back["val_acc"].tolist() == pytest.approx(
        metrics["val_acc"].tolist()
    )


def _highlighted(styler) -> set:
    """(row, column name) of the cells the styled table highlights, read from its HTML."""
    html = styler.set_uuid("t").to_html()
    css = html.split("<style", 1)[1].split("</style>", 1)[0]
    cells = set()
    for selectors, props in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        if all(p.strip() in props for p in BEST_STYLE.split(";")):
            for r, c in re.findall(r"#T_t_row(\d+)_col(\d+)", selectors):
                cells.add((int(r), styler.data.columns[int(c)]))
    return cells


def test_the_runs_table_highlights_the_best_of_each_metric_including_ties():
    df = pd.DataFrame(
        {
            "regime": ["transfer", "full", "scratch"],
            "best val acc": [0.5, 0.9, 0.9],  # a tie: both highlighted
            "test acc": [0.7, float("nan"), 0.6],  # a missing value is never the best
            "train s": [10.0, 3.0, 5.0],  # least time is best
            "s/epoch": [1.0, 1.0, 2.0],
        }
    )
    styled = styled_runs_table(df)
    assert _highlighted(styled) == {
        (1, "best val acc"),
        (2, "best val acc"),
        (0, "test acc"),
        (1, "train s"),
        (0, "s/epoch"),
        (1, "s/epoch"),
    }
    html = styled.to_html()
    assert ">70.0%<" in html and ">—<" in html and ">3.0<" in html  # formatted, missing shown as a dash
    # a filtered view keeps its row labels; an all-missing column highlights nothing
    view = df.iloc[[0, 2]].assign(**{"test acc": float("nan")})
    assert _highlighted(styled_runs_table(view)) == {(1, "best val acc"), (1, "train s"), (0, "s/epoch")}
    assert _highlighted(styled_runs_table(df.iloc[:0])) == set()


@pytest.mark.slow
def test_the_styled_table_of_real_runs_marks_the_fastest_and_most_accurate(store):
    table = runs_table(RunStore(store["settings"].runs_dir).list_runs())
    cells = _highlighted(styled_runs_table(table))
    for col, best in (("test acc", table["test acc"].max()), ("train s", table["train s"].min())):
        rows = {r for r, c in cells if c == col}
        assert rows and all(table[col].iloc[r] == best for r in rows)
        assert rows == {r for r in range(len(table)) if table[col].iloc[r] == best}


def _table(rows: list, **same) -> pd.DataFrame:
    """Rows of a :func:`runs_table` (every column, missing ones NaN) from ``rows``, each with ``same`` too."""
    return pd.DataFrame([{**same, **r} for r in rows]).reindex(columns=list(TABLE_COLUMNS))


def test_columns_equal_in_every_row_are_said_once_in_a_caption_instead():
    same = {"backbone": "efficientnet_lite0", "dataset": "flowers", "image px": 128, "epochs": 3, "of": 3}
    same["augment"] = "flip-rotate"
    df = _table(
        [
            {"regime": "transfer", "seed": 0, "test acc": 0.9, "train s": 35.0, "run": "a", "status": "finished"},
            {"regime": "full", "seed": 1, "test acc": 0.8, "train s": 220.0, "run": "b", "status": "finished"},
        ],
        **same,
    )
    hidden = constant_columns(df)
    assert set(hidden) == {*same, "status", "trainable params", "total params", "best val acc", "best epoch"} | {
        "s/epoch",
        "started",
    }  # missing in every row counts as equal
    assert constant_caption(df, hidden) == (
        "All runs: efficientnet_lite0, dataset flowers, 3 of 3 epochs, 128 px, augmentation flip-rotate, finished, "
        "none yet: trainable params, total params, best val acc, best epoch, s/epoch, started."
    )
    shown, caption = readable_runs_table(df)
    assert list(shown.columns) == ["regime", "test acc", "train s", "seed", "run"]
    assert shown["regime"].tolist() == ["Transfer learning (transfer)", "Fine-tune everything (full)"]
    assert caption == constant_caption(df, hidden)
    # the regime, the reading columns and the run stay even when equal; one row hides nothing
    one_regime = df.assign(regime="transfer", **{"test acc": 0.5, "train s": 1.0, "run": "x"})
    assert not {"regime", "test acc", "train s", "run"} & set(constant_columns(one_regime))
    assert constant_columns(df.iloc[:1]) == [] and readable_runs_table(df.iloc[:1])[1] == ""
    assert constant_caption(df, []) == ""
    # a column's units: parameters with thousands separators, seconds per epoch, the start time
    params = _table([{"trainable params": 11_689_512, "s/epoch": 1.5, "started": "2026-11-22 08:51"}] * 2)
    text = constant_caption(params, constant_columns(params))
    assert "11,689,512 trainable parameters" in text and "1.50 s per epoch" in text and "started 2026-11-22" in text


def test_the_readable_table_keeps_the_best_value_highlighted():
    df = _table(
        [
            {"regime": "transfer", "backbone": "b", "test acc": 0.7, "train s": 10.0, "best val acc": 0.5},
            {"regime": "full", "backbone": "b", "test acc": 0.9, "train s": 3.0, "best val acc": 0.9},
            {"regime": "scratch", "backbone": "b", "test acc": 0.6, "train s": 5.0, "best val acc": 0.9},
        ]
    ).iloc[[2, 0, 1]]  # a sorted or filtered view keeps its row labels
    shown, _ = readable_runs_table(df)
    assert "backbone" not in shown
    assert _highlighted(styled_runs_table(shown)) == {(2, "test acc"), (2, "train s"), (0, "best val acc")} | {
        (2, "best val acc")
    }


def test_the_summary_shows_display_names_without_what_the_caption_says():
    base = {"status": "finished", "backbone": "b", "dataset": "d", "image px": 32, "of": 2, "train s": 1.0}
    df = pd.DataFrame([{**base, "regime": r, "seed": 0, "test acc": a} for r, a in (("full", 0.9), ("scratch", 0.2))])
    shown = readable_summary(regime_summary(df), hidden=["backbone", "image px", "status"])
    assert shown["regime"].tolist() == ["Fine-tune everything (full)", "From scratch (scratch)"]
    assert list(shown.columns[:3]) == ["regime", "dataset", "epochs"] and "accuracies" not in shown


def _summary(*groups) -> pd.DataFrame:
    """A :func:`regime_summary` of (regime, test accuracies over seeds, training seconds per run)."""
    base = {"status": "finished", "backbone": "efficientnet_lite0", "dataset": "flowers", "image px": 128, "of": 3}
    rows = [
        {**base, "regime": regime, "seed": seed, "test acc": acc, "train s": secs}
        for regime, accs, secs in groups
        for seed, acc in enumerate(accs)
    ]
    return regime_summary(pd.DataFrame(rows))


def test_the_verdict_calls_equal_accuracies_at_the_shown_precision_a_tie_and_names_the_cheaper():
    # 91.21% and 91.19%: both shown as 91.2%. The slower one is ahead by a hair: it must not be crowned
    lines = headline(_summary(("full", [0.9121], 220.0), ("transfer", [0.9119], 35.0), ("scratch", [0.4], 100.0)))
    assert lines == [
        "On **flowers** with efficientnet_lite0, **Fine-tune everything** and **Transfer learning** tie at 91.2% "
        "test accuracy; Transfer learning is the better buy: 6.3× less training time (35 s against 3 min 40 s)."
    ]
    assert "wins" not in lines[0]


def test_the_verdict_calls_a_difference_within_the_seeds_noise_a_tie():
    # full 93% and 90% (mean 91.5%, std 2.1 points), transfer 90% and 91% (mean 90.5%): 1 point apart
    lines = headline(_summary(("full", [0.93, 0.90], 220.0), ("transfer", [0.90, 0.91], 35.0)))
    assert lines == [
        "On **flowers** with efficientnet_lite0, **Fine-tune everything** (91.5%) and **Transfer learning** (90.5%) "
        "tie within the seeds' noise (std up to 2.1 points); Transfer learning is the better buy: 6.3× less "
        "training time (35 s against 3 min 40 s)."
    ]
    # the same two means from single runs: no noise measured, so a win
    assert " wins: " in headline(_summary(("full", [0.915], 220.0), ("transfer", [0.905], 35.0)))[0]


def test_a_clear_win_is_still_a_win_and_the_quickest_is_still_mentioned():
    summary = _summary(("full", [0.95, 0.96], 220.0), ("transfer", [0.90, 0.91], 35.0), ("scratch", [0.3], 100.0))
    assert headline(summary) == [
        "On **flowers** with efficientnet_lite0, **Fine-tune everything** wins: 95.5% test accuracy (mean of 2 runs) "
        "for 3 min 40 s of training. **Transfer learning** reaches 90.5% in 35 s — 6.3× less training time."
    ]


def test_a_tie_of_three_names_the_quickest_and_compares_it_with_the_next_quickest():
    lines = headline(_summary(("full", [0.8], 200.0), ("finetune", [0.8], 100.0), ("transfer", [0.8], 20.0)))
    assert lines[0].endswith(
        "**Fine-tune everything**, **Fine-tune (first N frozen)** and **Transfer learning** tie at 80.0% test "
        "accuracy; Transfer learning is the better buy: 5.0× less training time than **Fine-tune (first N frozen)**, "
        "the next quickest (20 s against 1 min 40 s)."
    )
    same_time = headline(_summary(("full", [0.8], 20.5), ("transfer", [0.8], 20.0)))[0]
    assert same_time.endswith("tie at 80.0% test accuracy in about the same training time.")
    assert headline(regime_summary(runs_table([]))) == []  # no runs: no verdict


@pytest.mark.slow
def test_the_verdict_of_a_single_race_from_its_records(store):
    runs = RunStore(store["settings"].runs_dir).list_runs()
    race = [r for r in runs if r.config.get("group") == "g-test"]  # transfer seeds 0 and 1, finetune seed 0
    (line,) = headline(regime_summary(runs_table(race)))
    assert line.startswith(f"On **{store['folder'].name}** with {BACKBONE}, **")
    assert " wins: " in line or " tie " in line
    live = [r for r in runs if r.config.get("group") == "g-live"]  # a race still training: nothing to say yet
    assert live and headline(regime_summary(runs_table(live))) == []


def test_a_links_values_are_validated_and_the_default_leaves_no_parameter():
    options = ["finished", "running", "failed"]
    assert url_choice([], options) == (None, [])  # no parameter: the widget's default
    assert url_choice(["running", "exploded", "finished"], options) == (["finished", "running"], ["exploded"])
    assert url_choice(["exploded", "exploded"], options) == (None, ["exploded"])  # nothing usable: the default
    assert url_choice([""], options) == ([], [])  # an empty value: nothing chosen
    assert url_values(["running", "finished"], ["finished", "running"]) is None  # the default, in any order
    assert url_values(["running"], options) == ["running"]
    assert url_values([], options) == [""]


def test_per_class_table_counts_each_true_class():
    confusion = [[3, 1, 0], [0, 0, 0], [2, 0, 5]]  # rows: true a, b (no images), c
    table = per_class_table(confusion, ["a", "b", "c"])
    assert list(table.columns) == ["class", "test images", "right", "accuracy"]
    assert table["class"].tolist() == ["a", "b", "c"]
    assert table["test images"].tolist() == [4, 0, 7] and table["right"].tolist() == [3, 0, 5]
    assert table["accuracy"].tolist() == pytest.approx([0.75, math.nan, 5 / 7], nan_ok=True)


@pytest.mark.slow
def test_per_class_table_agrees_with_a_runs_predictions(store):
    preds = load_predictions(store["summaries"][("finetune", 0)]["run_dir"])
    table = per_class_table(preds.confusion(), preds.classes)
    assert table["test images"].sum() == preds.n and table["right"].sum() == round(preds.accuracy * preds.n)
    expected = [math.nan if v is None else v for v in preds.per_class_accuracy().values()]
    assert table["accuracy"].tolist() == pytest.approx(expected, nan_ok=True)


def test_summary_groups_only_identical_recipes():
    base = {
        "status": "finished",
        "regime": "transfer",
        "backbone": "b",
        "dataset": "d",
        "image px": 32,
        "of": 2,
        "seed": 0,
        "test acc": 0.5,
        "train s": 1.0,
    }
    df = pd.DataFrame(
        [
            base,
            {**base, "seed": 1, "test acc": 0.7},
            {**base, "image px": 64, "test acc": 0.9},
            {**base, "status": "interrupted", "test acc": float("nan")},
        ]
    )
    summary = regime_summary(df)
    assert summary["runs"].tolist() == [1, 2] and summary["mean test acc"].tolist() == pytest.approx([0.9, 0.6])
    assert list(summary.columns) == [
        *("regime", "backbone", "dataset", "image px", "of", "augment", "runs", "seeds", "mean test acc", "std"),
        *("min", "max", "mean train s", "accuracies"),
    ]
    assert summary["seeds"].tolist() == ["0", "0, 1"] and summary["accuracies"].tolist() == [[0.9], [0.5, 0.7]]
    assert math.isnan(summary["std"][0]) and summary["std"][1] == pytest.approx(math.sqrt(0.02))
    assert summary["min"].tolist() == [0.9, 0.5] and summary["max"].tolist() == pytest.approx([0.9, 0.7])


def test_summary_sorts_best_mean_first_keeping_the_listing_order_of_ties():
    rows = [
        {"regime": "scratch", "test acc": 0.5, "seed": 2},
        {"regime": "transfer", "test acc": 0.8, "seed": 0},
        {"regime": "full", "test acc": 0.5, "seed": 0},
        {"regime": "scratch", "test acc": 0.5, "seed": 1},
        {"regime": "finetune", "test acc": 0.9, "seed": 0},
    ]
    base = {"status": "finished", "backbone": "b", "dataset": "d", "image px": 32, "of": 2, "train s": 1.0}
    summary = regime_summary(pd.DataFrame([{**base, **r} for r in rows]))
    assert summary["regime"].tolist() == ["finetune", "transfer", "scratch", "full"]
    assert summary["seeds"].tolist() == ["0", "0", "1, 2", "0"]  # seeds listed in order
    assert summary["std"].tolist()[2] == 0.0 and summary["runs"].tolist() == [1, 1, 2, 1]


def test_smoothing_without_weight_is_the_identity_and_keeps_a_constant_constant():
    assert smooth([0.2, 0.4, None, 0.8], 0.0) == [0.2, 0.4, None, 0.8]
    for weight in (0.3, 0.9, 0.99):
        assert smooth([0.5] * 20, weight) == pytest.approx([0.5] * 20)  # no start-up bias towards 0
    assert smooth([], 0.5) == []


def test_smoothing_follows_a_step_monotonically_and_lags_it():
    raw = [0.0] * 5 + [1.0] * 20
    for weight in (0.3, 0.6, 0.9):
        out = smooth(raw, weight)
        assert out[:5] == pytest.approx([0.0] * 5)
        after = out[5:]
        assert all(0.0 < v < 1.0 for v in after)  # it lags the raw curve...
        assert all(a < b for a, b in zip(after, after[1:]))  # ...moving toward the new level every epoch
        assert after[-1] > 0.95 if weight < 0.9 else after[-1] > 0.9
    # more weight, more lag
    assert smooth(raw, 0.9)[8] < smooth(raw, 0.6)[8] < smooth(raw, 0.3)[8]


def test_missing_values_stay_missing_and_do_not_shift_the_rest():
    values = [0.1, 0.7, 0.3, 0.9, 0.2]
    gappy = [0.1, None, 0.7, float("nan"), 0.3, None, 0.9, 0.2]
    out = smooth(gappy, 0.6)
    assert [i for i, v in enumerate(out) if v is None] == [1, 3, 5]
    assert [v for v in out if v is not None] == pytest.approx(smooth(values, 0.6))
    assert smooth([None, None], 0.5) == [None, None]


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5])
def test_smoothing_weight_outside_0_1_is_refused(weight):
    with pytest.raises(ValueError, match="smoothing weight"):
        smooth([1.0, 2.0], weight)


def test_figures_mark_the_best_epoch_and_make_every_cell_clickable():
    rows = ((1, 0.5, 1.0), (2, 0.7, 0.6), (3, 0.65, 0.8))
    metrics = [{"epoch": e, "val_acc": acc, "val_loss": loss} for e, acc, loss in rows]
    fig = curves_figure([CurveSeries("run", "transfer", metrics)], smoothing=0.5)
    stars = [t for t in fig.data if t.marker.symbol == "star"]
    assert [list(t.x) for t in stars] == [[2], [2]]  # lowest validation loss, on both panels
    fig = confusion_figure([[3, 1], [0, 4]], ["a", "b"])
    cells = next(t for t in fig.data if t.type == "scatter")
    assert list(zip(cells.y, cells.x)) == [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]


def test_a_large_camera_photo_is_read_at_a_reduced_scale_not_refused(tmp_path):
    from PIL import Image

    from core.data.decode import MAX_DECODE_BYTES, decode_bytes
    from core.runs.predictions import PHOTO_PX

    Image.new("RGB", (8000, 8000), (200, 30, 30)).save(tmp_path / "big.jpg", quality=80)  # 64 megapixels
    with Image.open(tmp_path / "big.jpg") as im:
        assert decode_bytes(im) > MAX_DECODE_BYTES  # at full scale it would be refused
    photo = load_photo(tmp_path / "big.jpg", "big.jpg")
    assert PHOTO_PX <= min(photo.size) < 8000 and photo.getpixel((10, 10))[0] > 150


def test_hardest_puts_confident_mistakes_first_then_unsure_right_answers():
    from core.runs.predictions import SplitPredictions

    preds = SplitPredictions(
        root="/data",
        classes=["daisy", "roses", "tulips"],
        files=["daisy/sure.jpg", "daisy/wrong.jpg", "roses/unsure.jpg", "tulips/hopeless.jpg"],
        labels=[0, 0, 1, 2],
        probabilities=[[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.3, 0.4, 0.3], [0.5, 0.5, 0.0]],
        predictions=[0, 1, 1, 0],
    )
    hardest = preds.hardest(3)
    assert [h["file"] for h in hardest] == ["tulips/hopeless.jpg", "daisy/wrong.jpg", "roses/unsure.jpg"]
    losses = [h["loss"] for h in hardest]
    assert losses == sorted(losses, reverse=True) and all(math.isfinite(x) for x in losses)  # 0.0 saved: finite
    wrong = hardest[1]
    assert (wrong["true"], wrong["predicted"], wrong["confidence"]) == ("daisy", "roses", 0.9)
    assert wrong["path"].endswith("daisy/wrong.jpg") and wrong["loss"] > hardest[2]["loss"] > 0
    assert SplitPredictions("/d", ["a"], ["a/x.jpg"], [0], [0]).hardest() == []  # an old file: no probabilities
