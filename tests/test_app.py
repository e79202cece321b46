"""The app through streamlit's AppTest: home, train (launch, live curves, stop, queueing), the compare page's
empty state (the rest of Compare is in test_compare.py)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.app.jobs import shared_training
from core.runs.store import RunStore
from tests.helpers import ROOT, wait_until

APP = str(ROOT / "streamlit_app.py")
K = "notebook"  # widget-key suffix on the Train page for this preset (its first word)


def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def train_page(regimes=("transfer",), epochs=2, img=32) -> AppTest:
    at = app()
    at.selectbox(key="backbone_choice").set_value("efficientnet_lite0").run()
    # straight to the notebook's knobs: the default preset, a time budget, would first measure this machine
    at.session_state["preset"] = "notebook recipe"
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="preset").value == "notebook recipe"
    at.number_input(key=f"epochs-{K}").set_value(epochs)
    at.number_input(key=f"px-{K}").set_value(img)
    for name in ("scratch", "transfer", "finetune", "full"):
        box = at.checkbox(key=f"regime-{name}")
        box.check() if name in regimes else box.uncheck()
    return at.run()


@pytest.fixture(autouse=True)
def training(settings):
    """The server's training for this test's run store (each test has its own); stopped at the end, so what a
    test launched does not train on into the next."""
    t = shared_training(settings)
    yield t
    for run in t.store.list_runs():
        if run.active:
            t.stop(run.run_id, owner="", teacher=True)
    assert t.wait_idle(300)
    t.shutdown()


def test_home_renders_on_a_fresh_offline_machine(settings):
    at = app()
    assert "Transfer Lab" in at.title[0].value
    assert any("works offline" in i.value for i in at.sidebar.info)  # says so, in one visible line
    assert at.sidebar.selectbox(key="backbone_choice").value == "efficientnet_lite0"  # offline fallback
    assert any("daisy" in m.value for m in at.markdown)  # the thumbnail grid, per class
    assert len(at.get("image")) == 30  # 6 thumbnails for each of the 5 classes
    assert any(m.label == "Device" for m in at.metric)


@pytest.mark.slow  # trains in the worker process
def test_train_page_shows_counts_and_launches_a_run_with_live_curves(settings, training):
    at = train_page()
    text = " ".join(m.value for m in at.markdown)
    assert "trains **6,405**" in text  # transfer: only the new head (1280 x 5 + 5)
    assert "Nothing launched yet" in at.info[0].value
    at.button(key="run_selected").click().run()
    assert not at.exception
    assert training.wait_idle(120)
    at.run()
    assert not at.exception
    assert at.get("plotly_chart"), "the race chart is shown"
    assert any("test accuracy" in m.value for m in at.markdown)
    runs = RunStore(settings.runs_dir).list_runs()
    assert len(runs) == 1 and runs[0].status == "finished" and runs[0].config["data"]["img_size"] == 32
    assert runs[0].config["model"]["regime"] == "transfer" and runs[0].config["group"]
    assert any("Compare" in link.label for link in at.get("page_link"))


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_time_budget_shows_the_plan_then_races_to_it(settings, training):
    from core.models.device import pick_device, resolve_precision
    from core.training.throughput import save
    from tests.test_planner import fake_throughput

    # a slow (fake) machine, so that a 1-minute plan of the sample stays small
    save(fake_throughput(seconds_per_image=1e-2, precision=resolve_precision("auto", pick_device())), settings)
    at = app()
    at.selectbox(key="backbone_choice").set_value("efficientnet_lite0").run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="preset").value == "5 minutes"  # the default: a time budget
    at.slider(key="budget-5").set_value(1).run()
    plan = at.dataframe[0].value
    assert list(plan["regime"]) == [
        "Fine-tune (first N frozen)",
        "Transfer learning",
        "Fine-tune everything",
        "From scratch",
    ]
    assert plan["predicted s"].sum() <= 60 and (plan["epochs"] >= 1).all()
    assert any("predicted" in c.value and "budget" in c.value for c in at.caption)
    at.button(key="run_all").click().run()
    assert not at.exception
    launched = sorted(RunStore(settings.runs_dir).list_runs(), key=lambda r: r.queued_at)
    assert [r.config["model"]["regime"] for r in launched] == ["finetune", "transfer", "full", "scratch"]
    assert all(r.config["plan"]["budget_seconds"] == 60 and r.config["preset"] == "5 minutes" for r in launched)
    assert training.wait_idle(300)
    at.run()
    assert not at.exception
    took = [m.value for m in at.markdown if "planned" in m.value and "took" in m.value]
    assert len(took) == 4, [m.value for m in at.markdown]
    assert any("Planned to finish within" in c.value and "4 of 4 done" in c.value for c in at.caption)
    assert [r.status for r in RunStore(settings.runs_dir).list_runs()] == ["finished"] * 4


def running(settings):
    """The run in the store that is training now, or None."""
    return next((r for r in RunStore(settings.runs_dir).list_runs() if r.progress.get("phase") == "train"), None)


@pytest.mark.slow  # trains in the worker process
def test_stop_ends_a_running_run_and_keeps_it_interrupted(settings, training):
    at = train_page(regimes=("full",), epochs=20, img=64)
    at.button(key="run_selected").click().run()
    assert wait_until(lambda: running(settings) is not None)
    run_id = running(settings).run_id
    at.run()
    at.button(key=f"stop-{run_id}").click().run()
    assert not at.exception
    assert training.wait_idle(60)
    run = RunStore(settings.runs_dir).get(run_id)
    assert run.status == "interrupted" and len(run.metrics) < 20
    at.run()
    assert any("⏹️" in m.value for m in at.markdown)


@pytest.mark.slow  # trains in the worker process
def test_stop_is_shown_only_to_the_session_that_launched_the_run(settings, training, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_TEACHER_PASSWORD", "tulips")  # a classroom server: nobody is teacher by default
    alice, bob = train_page(regimes=("full",), epochs=20, img=64), train_page()
    alice.button(key="run_selected").click().run()
    assert wait_until(lambda: running(settings) is not None)
    run_id = running(settings).run_id
    alice.run()
    bob.run()
    assert not alice.exception and not bob.exception
    assert alice.button(key=f"stop-{run_id}")  # hers
    assert f"stop-{run_id}" not in [b.key for b in bob.button]  # not his
    assert any("another browser's run" in bar.proto.text for bar in bob.get("progress"))
    bob.sidebar.text_input(key="teacher_password").input("roses").run()
    assert "not the teacher password" in bob.sidebar.error[0].value and f"stop-{run_id}" not in [
        b.key for b in bob.button
    ]
    bob.sidebar.text_input(key="teacher_password").input("tulips").run()
    assert any("Teacher mode" in c.value for c in bob.sidebar.caption)
    bob.button(key=f"stop-{run_id}").click().run()  # the teacher stops anyone's run
    assert not bob.exception and training.wait_idle(60)
    assert RunStore(settings.runs_dir).get(run_id).status == "interrupted"


@pytest.mark.slow  # trains in the worker process
def test_two_sessions_launching_at_once_queue_instead_of_running_in_parallel(settings, training):
    a, b = train_page(), train_page()
    a.button(key="run_selected").click()
    b.button(key="run_selected").click()
    a.run()
    b.run()
    launched = sorted(RunStore(settings.runs_dir).list_runs(), key=lambda r: r.queued_at)
    assert len(launched) == 2 and {r.status for r in launched} <= {"queued", "running"}
    assert training.wait_idle(120)
    first, second = (RunStore(settings.runs_dir).get(r.run_id) for r in launched)
    assert first.status == second.status == "finished"
    # never both at once: the second started (wrote its split) after the first ended (wrote its summary)
    assert (second.dir / "split.json").stat().st_mtime_ns >= (first.dir / "summary.json").stat().st_mtime_ns
    b.run()  # the other session sees the same race
    assert b.get("plotly_chart")


def test_sidebar_local_folder_and_bad_folder(settings, tiny_folder, tmp_path):
    at = app()
    at.sidebar.radio(key="dataset_choice").set_value("Local folder").run()
    at.sidebar.text_input(key="folder_path").input(str(tiny_folder)).run()
    assert not at.exception
    assert any("5 classes, 80 images" in c.value for c in at.sidebar.caption)
    (tmp_path / "one" / "daisy").mkdir(parents=True)
    at.sidebar.text_input(key="folder_path").input(str(tmp_path / "one")).run()
    assert not at.exception
    assert any("holds 1 sub-folder (daisy) but no images" in e.value for e in at.sidebar.error)
    at.switch_page("app_pages/train.py").run()
    assert "Choose a dataset" in at.warning[0].value  # nothing usable: the page says so, nothing breaks


def test_sidebar_downloads_flowers_with_progress_or_says_why_not(settings, tiny_folder, monkeypatch):
    import core.data.sources
    from core.errors import DownloadError

    calls = []

    def fake_download(cache_dir, on_progress):  # never the network in tests
        calls.append(cache_dir)
        on_progress(50_000_000, 100_000_000, "downloading flower_photos.tgz")
        return tiny_folder

    def no_network(cache_dir, on_progress):
        raise DownloadError("Could not download the flowers dataset: no network.")

    monkeypatch.setattr(core.data.sources, "download_flowers", no_network)
    at = app()
    at.sidebar.radio(key="dataset_choice").set_value("Flowers (real photos)").run()
    at.sidebar.button(key="download_flowers").click().run()
    assert not at.exception
    assert "no network" in at.sidebar.error[0].value

    monkeypatch.setattr(core.data.sources, "download_flowers", fake_download)
    at.sidebar.button(key="download_flowers").click().run()
    assert not at.exception and len(calls) == 1
    assert any("5 classes, 80 images" in c.value for c in at.sidebar.caption)


def test_compare_page_empty_state_points_to_the_train_page(settings):
    at = app().switch_page("app_pages/compare.py").run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value
    assert any("Train page" in link.label for link in at.get("page_link"))


def test_a_shared_link_opens_the_train_page_with_its_settings(settings):
    """The Train page's settings live in its URL (bind="query-params"): a link a teacher shares restores them."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"preset": "notebook recipe", f"epochs-{K}": "7", "regime-scratch": "false", "seed": "3"})
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="preset").value == "notebook recipe"
    assert at.number_input(key=f"epochs-{K}").value == 7 and at.number_input(key="seed").value == 3
    assert not at.checkbox(key="regime-scratch").value and at.checkbox(key="regime-full").value


@pytest.mark.slow  # trains in the worker process
@pytest.mark.timeout(300)
def test_two_browsers_launches_both_show_each_stoppable_by_its_owner(settings, training):
    alice = train_page(regimes=("full", "scratch"), epochs=20, img=64)
    alice.button(key="run_selected").click().run()
    assert not alice.exception, alice.exception
    assert alice.session_state["train_settings"] is False  # the settings fold away: the race comes first
    # while her launch trains she cannot start another one, and is told why
    assert alice.button(key="run_all").disabled and alice.button(key="run_selected").disabled
    assert any("Your race is still running" in c.value for c in alice.caption)

    bob = train_page(regimes=("transfer",), epochs=20, img=64)
    assert not bob.button(key="run_selected").disabled  # another browser's race does not block his
    bob.button(key="run_selected").click().run()
    by_owner = {}
    for run in RunStore(settings.runs_dir).list_runs():
        by_owner.setdefault(run.owner, set()).add(run.config["group"])
    [[alices], [bobs]] = [by_owner[alice.session_state["owner"]], by_owner[bob.session_state["owner"]]]
    alice.run()
    for page, own, other in ((alice, alices, bobs), (bob, bobs, alices)):
        # both launches on each screen, the browser's own first, each with its progress; Stop all on its own only
        headings = [h.value for h in page.subheader]
        assert headings[:2] == ["Your race", "A race from another browser"], headings
        assert len(page.get("progress")) == 3
        keys = {b.key for b in page.button}
        assert f"stop-all-{own}" in keys and f"stop-all-{other}" not in keys

    bob.button(key=f"stop-all-{bobs}").click().run()  # his launch only: queued behind hers, cancelled at once
    runs = RunStore(settings.runs_dir).list_runs()
    assert {r.status for r in runs if r.config["group"] == bobs} == {"cancelled"}
    assert all(r.active for r in runs if r.config["group"] == alices)
    assert not bob.button(key="run_selected").disabled

    assert wait_until(lambda: running(settings) is not None)  # hers trains: Stop all ends it and its queue
    alice.run()
    alice.button(key=f"stop-all-{alices}").click().run()
    assert training.wait_idle(120)
    statuses = sorted(r.status for r in RunStore(settings.runs_dir).list_runs() if r.config["group"] == alices)
    assert statuses == ["cancelled", "interrupted"]
    alice.run()
    assert not alice.exception and not alice.button(key="run_all").disabled
