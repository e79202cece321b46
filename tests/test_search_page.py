"""The Search page through streamlit's AppTest, on the built-in sample (the app's offline default).

Uploads cannot be driven by AppTest; they are covered in real Chromium in ``test_browser.py``. Here an upload is
seeded as the page keeps it (:class:`core.app.photos.KeptPhoto` in the session), as the uploader's callback does.
"""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from core.app.photos import KeptPhoto
from core.app.search import QUERY_KEY, THUMB_SIZES, class_key, default_thumb_size, file_key, root_tag
from core.models.regimes import display_name
from core.retrieval.index import clear_memory_cache, open_index
from core.retrieval.methods import METHODS
from core.retrieval.metrics import evaluate_index
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tests.helpers import ROOT, open_app_page

APP = str(ROOT / "streamlit_app.py")
PRETRAINED = [m for m in METHODS if m != "triplet"]  # the methods searched before anything is trained


def search_page() -> AppTest:
    return open_app_page("app_pages/search.py", timeout=300)


def _root(at) -> str:
    return at.session_state["dataset"]["root"]


def _query(at):
    """(class, relative file) of the dataset photo the page is searching with (its pickers' keys are per
    dataset, so switching datasets resets them)."""
    cls = at.session_state[class_key(_root(at))]
    return cls, at.session_state[file_key(_root(at), cls)]


def _captions(at):
    """Captions of the page's images, top to bottom (the query first)."""
    out = []
    for el in at.get("image"):
        out.extend(i.caption for i in el.proto.imgs)
    return out


@pytest.mark.slow
def test_search_page_shows_k_neighbours_three_ways_matching_core(sample_folder, settings):
    at = search_page()
    assert at.title[0].value == "🔎 Search"
    headers = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert headers == [f"#### {spec.display}" for spec in METHODS.values()]
    cls, rel = _query(at)
    captions = _captions(at)
    assert len(captions) == 1 + 3 * 8  # the query and 8 neighbours per method
    assert captions[0] == f"Query: {rel.split('/')[-1]} — {cls}"

    # every neighbour shown is the one core finds, in order, with its class and score
    shown = captions[1:]
    for m, method in enumerate(PRETRAINED):
        index, _ = open_index(sample_folder, method, settings=settings)
        result = index.search(sample_folder / rel, 8, exclude_file=rel)
        for n, caption in zip(result.neighbours, shown[8 * m : 8 * (m + 1)]):
            assert caption.startswith(f"{n.rank}. {'✅ ' if n.label == cls else ''}**{n.label}**")
            assert index.method.format_score(n.score, index.embedder.dim) in caption
        same = sum(n.label == cls for n in result.neighbours)
        metric = [x for x in at.metric if x.label == f"{METHODS[method].display}: same class"][0]
        assert metric.value == f"{same} / 8"
    assert any("Query time" in c.value and " ms" in c.value for c in at.caption)

    # the quality panel (300 images: measured without asking) shows core's leave-one-out figures
    table = at.dataframe[0].value  # (AppTest does not see keys of read-only dataframes)
    assert list(table["method"]) == [METHODS[m].display for m in PRETRAINED]
    for method, row in zip(PRETRAINED, table.itertuples(index=False)):
        q = evaluate_index(open_index(sample_folder, method, settings=settings)[0], 8)
        assert row[1] == pytest.approx(q.precision_at_k) and row[2] == pytest.approx(q.map_at_k)
    deep = table.iloc[2, 1]
    assert deep > table.iloc[0, 1] and deep > table.iloc[1, 1]  # deep features win on the sample too
    # the triplet column, before a head is trained, says so and offers to train one
    assert any("Not trained yet" in i.value for i in at.info)
    assert at.button(key="search_train_triplet").label.endswith("Train deep + triplet")
    assert not at.exception


@pytest.mark.slow
def test_k_random_pick_and_choosing_a_photo(sample_folder, settings):
    at = search_page()
    at.slider(key="search_k").set_value(3).run()
    assert len(_captions(at)) == 1 + 3 * 3
    before = _query(at)
    for _ in range(5):  # a random pick: a new query (five tries: it may pick the same photo again)
        at.button(key="search_random").click().run()
        if _query(at) != before:
            break
    assert _query(at) != before
    cls, rel = _query(at)
    assert (sample_folder / rel).is_file() and rel.startswith(f"{cls}/")
    # choosing a photo by hand searches with it, and it is left out of its own results
    key = file_key(_root(at), cls)
    other = [o for o in at.selectbox(key=key).options if o != rel.split("/")[-1]][0]
    at.selectbox(key=key).set_value(f"{cls}/{other}").run()
    captions = _captions(at)
    assert captions[0].startswith(f"Query: {other}")
    index, _ = open_index(sample_folder, "l1", settings=settings)
    assert f"{cls}/{other}" not in [
        n.file for n in index.search(sample_folder / cls / other, 3, exclude_file=f"{cls}/{other}").neighbours
    ]
    assert not at.exception


@pytest.mark.slow
def test_look_inside_takes_the_query_to_the_next_page(sample_folder, settings):
    from core.app.inside import PHOTO_KEY

    at = search_page()
    cls, rel = _query(at)
    at.button(key="search_look").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "🔬 Look inside"
    kept = at.session_state[PHOTO_KEY]
    assert (kept.rel, kept.truth) == (rel, cls)
    assert at.query_params["look"] == rel  # the view's link names the photo


@pytest.mark.slow
def test_deep_features_from_a_finished_run(sample_folder, tiny_folder, settings):
    from core.training.train import train_run

    summary = train_run(
        RunConfig(
            data=DataConfig(source=str(tiny_folder), img_size=32),
            model=ModelConfig(backbone="efficientnet_lite0", regime="full"),
            train=TrainConfig(epochs=1, lr=1e-3),
        ),
        settings,
    )
    at = search_page()
    box = at.selectbox(key="search_deep")
    assert box.options[0] == "ImageNet EfficientNet-Lite0 (pretrained)"
    assert any(
        o.startswith(f"Fine-tuned run: {display_name('full')} · efficientnet_lite0 · seed 0") for o in box.options
    )
    box.set_value(f"run:{summary['run_id']}").run()
    assert not at.exception
    assert any(f"features of run {summary['run_id']}" in c.value for c in at.caption)
    assert len(_captions(at)) == 1 + 3 * 8


@pytest.mark.slow
def test_indexes_are_reused_after_a_restart(sample_folder, settings):
    search_page()
    clear_memory_cache()  # a new server process: only the disk cache is left
    at = search_page()
    about = [m.value for m in at.main.expander[-1].markdown]
    assert [line.split(":")[0] for line in about] == [f"- {m}" for m in METHODS]
    assert all("reused the cached index" in line for line in about[:-1]), about
    assert about[-1] == "- triplet: not trained yet for this dataset and backbone (the button in its column)"


@pytest.mark.slow  # alone: the first AppTest of a session imports the app (~3 s)
def test_without_a_dataset_the_page_says_what_to_do(settings):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.radio(key="dataset_choice").set_value("Local folder").run()
    at.switch_page("app_pages/search.py").run()
    assert not at.exception
    assert any("Choose a dataset in the sidebar" in w.value for w in at.warning)


def _choose_folder(at, folder) -> None:
    """In the sidebar: "Local folder" (no dataset until a path is typed: the page stops before its widgets),
    then ``folder``."""
    at.radio(key="dataset_choice").set_value("Local folder").run()
    assert any("Choose a dataset in the sidebar" in w.value for w in at.warning)
    at.text_input(key="folder_path").set_value(str(folder)).run()
    assert not at.exception, at.exception
    assert _root(at) == str(folder.resolve())


def _two_classes(tiny_folder, tmp_path):
    """A dataset of two of the tiny folder's classes (no tulips)."""
    other = tmp_path / "two_classes"
    for cls in ("daisy", "roses"):
        shutil.copytree(tiny_folder / cls, other / cls)
    return other


def _l1_first(at) -> str:
    """The caption of L1's nearest neighbour (the image after the query)."""
    return _captions(at)[1]


@pytest.mark.slow
def test_an_upload_is_kept_and_searched_again_when_the_dataset_changes(sample_folder, tiny_folder, tmp_path, settings):
    photo = sorted((sample_folder / "tulips").iterdir())[0]
    at = search_page()
    # what the uploader's callback keeps: the photo's bytes, where it was uploaded, and (chosen) its class
    at.session_state[QUERY_KEY] = KeptPhoto.upload(photo.name, photo.read_bytes(), _root(at), "Built-in sample")
    at.run()
    truth = f"search_truth-{root_tag(_root(at))}-{at.session_state[QUERY_KEY].tag}"
    at.selectbox(key=truth).set_value("tulips").run()
    assert _captions(at)[0] == f"Query: {photo.name} — tulips"
    assert "mean |Δ| 0.0" in _l1_first(at) and "**tulips**" in _l1_first(at)  # a copy of a sample photo
    assert at.button(key="search_clear").label == "✖ Clear the photo"

    # the sidebar goes through "no dataset" (the page stops before the uploader) to a dataset without tulips
    other = _two_classes(tiny_folder, tmp_path)
    _choose_folder(at, other)
    captions = _captions(at)
    assert captions[0] == f"Query: {photo.name}" and len(captions) == 1 + 3 * 8  # searched there, no class
    index, _ = open_index(other, "l1", settings=settings)
    first = index.search(photo, 8).neighbours[0]
    assert _l1_first(at).startswith(f"1. **{first.label}**")  # what core finds in the new dataset
    note = " ".join(i.value for i in at.main.info)
    assert "uploaded while the dataset **Built-in sample** was chosen" in note
    assert "*tulips*, is not one of this dataset's classes" in note
    box = at.selectbox(key=f"search_truth-{root_tag(_root(at))}-{at.session_state[QUERY_KEY].tag}")
    assert box.options == ["— don't know —", "daisy", "roses"] and box.value == ""
    assert not at.metric  # no class known here: no "same class" counts

    # back on the sample: the class it was given there comes back
    at.radio(key="dataset_choice").set_value("Built-in sample").run()
    assert _captions(at)[0] == f"Query: {photo.name} — tulips" and "mean |Δ| 0.0" in _l1_first(at)
    assert _notes(at) == [f"Searching with your photo **{photo.name}**."]  # no note here

    # ✖ drops it: the dataset's own photo pickers search again
    at.button(key="search_clear").click().run()
    assert at.session_state[QUERY_KEY].rel is not None
    cls, rel = _query(at)
    assert _captions(at)[0] == f"Query: {rel.split('/')[-1]} — {cls}"
    assert not at.exception


@pytest.mark.slow
def test_a_dataset_photo_is_searched_in_the_next_dataset_and_comes_back_to_its_pickers(tiny_folder, settings):
    at = search_page()
    cls, rel = _query(at)
    sample_root = _root(at)
    _choose_folder(at, tiny_folder)
    assert _captions(at)[0] == f"Query: {rel.split('/')[-1]} — {cls}"  # tiny has the same classes
    assert any("comes from the dataset **Built-in sample**" in i.value for i in at.main.info)
    assert class_key(_root(at)) not in at.session_state  # not the tiny dataset's own pickers
    at.radio(key="dataset_choice").set_value("Built-in sample").run()
    assert _root(at) == sample_root and _query(at) == (cls, rel)  # the same photo, in its pickers
    assert not _notes(at) and not at.exception


def _notes(at) -> list:
    """The page's info boxes about the query (the triplet column's "not trained yet" left out)."""
    return [i.value for i in at.main.info if not i.value.startswith("Not trained yet")]


def _thumbs_per_row(at) -> set:
    """How many neighbour thumbnails each row shows, from the widths of the columns that hold one each (with its
    "More like this" button)."""
    out = set()
    for col in at.columns:
        kids = list(col.children.values())
        if len(kids) == 2 and kids[0].type == "image" and kids[0].proto.imgs[0].caption[:1].isdigit():
            out.add(round(1 / col.proto.weight))
    return out


def _size(at):
    """The page's thumbnail-size slider (its key changes with the size it starts at)."""
    [slider] = [s for s in at.select_slider if s.label == "Thumbnails"]
    return slider


@pytest.mark.slow
def test_thumbnail_size_follows_k_until_chosen(settings):
    at = search_page()
    assert _size(at).options == list(THUMB_SIZES)
    assert _size(at).value == default_thumb_size(8) and _thumbs_per_row(at) == {THUMB_SIZES[default_thumb_size(8)][0]}
    at.slider(key="search_k").set_value(12).run()
    assert _size(at).value == default_thumb_size(12)
    assert _thumbs_per_row(at) == {THUMB_SIZES[default_thumb_size(12)][0]}
    assert THUMB_SIZES[default_thumb_size(8)][0] < THUMB_SIZES[default_thumb_size(12)][0]  # few: larger
    _size(at).set_value("Large").run()
    assert _size(at).value == "Large" and _thumbs_per_row(at) == {THUMB_SIZES["Large"][0]}
    at.slider(key="search_k").set_value(5).run()  # chosen: k no longer changes it
    assert _size(at).value == "Large" and _thumbs_per_row(at) == {THUMB_SIZES["Large"][0]}
    assert len(_captions(at)) == 1 + 3 * 5
    at.slider(key="search_k").set_value(20).run()
    assert _size(at).value == "Large"
    assert not at.exception


@pytest.mark.slow
def test_more_like_this_searches_with_a_neighbour_and_the_trail_steps_back(sample_folder, settings):
    """A neighbour's "More like this" makes it the query (in the pickers too, left out of its own results); the
    earlier query goes on the breadcrumb, and its button brings it back."""
    at = search_page()
    at.slider(key="search_k").set_value(3).run()
    first = _query(at)
    index, _ = open_index(sample_folder, "deep", settings=settings)
    top = index.search(sample_folder / first[1], 3, exclude_file=first[1]).neighbours[0]
    at.button(key="search_more-deep-1").click().run()
    assert not at.exception, at.exception
    assert _query(at) == (top.label, top.file)
    assert _captions(at)[0] == f"Query: {top.file.split('/')[-1]} — {top.label}"
    # its own neighbours now, without itself
    shown = _captions(at)[1 + 2 * 3 :]  # the deep column
    expected = index.search(sample_folder / top.file, 3, exclude_file=top.file).neighbours
    assert [c.split("**")[1] for c in shown] == [n.label for n in expected]
    back = [b for b in at.button if b.key and b.key.startswith("search_back-")]
    assert [b.label for b in back] == [f"↩ {first[1].split('/')[-1]}"]
    back[0].click().run()
    assert _query(at) == first
    assert _captions(at)[0].startswith(f"Query: {first[1].split('/')[-1]}")
    # stepping back dropped the way forward: the trail now holds nothing before the first query
    assert not [b for b in at.button if b.key and b.key.startswith("search_back-")]
    assert not at.exception


@pytest.mark.slow
def test_the_teacher_searches_in_milvus_and_an_unreachable_server_is_said_once(
    sample_folder, settings, milvus_lite, monkeypatch
):
    """The page's store setting: in Milvus Lite the deep column finds what FAISS finds, the raw-pixel columns say
    why Milvus cannot hold them; an unreachable server is one error box with a way back to FAISS, never a
    silent switch."""
    monkeypatch.setenv("TRANSFERLAB_TEACHER_PASSWORD", "tulips")  # a class's server: the session knows it
    at = open_app_page(
        "app_pages/search.py",
        state={"teacher": True, "search_store": "milvus", "search_milvus_uri": milvus_lite.uri},
        timeout=300,
    )
    at.slider(key="search_k").set_value(3).run()
    assert not at.exception, at.exception
    infos = [i.value for i in at.info]
    assert any("Milvus has no L1 metric" in v for v in infos)
    assert any("at most 32,768 numbers" in v for v in infos)
    cls, rel = _query(at)
    faiss_index, _ = open_index(sample_folder, "deep", settings=settings)
    expected = faiss_index.search(sample_folder / rel, 3, exclude_file=rel).neighbours
    assert [c.split("**")[1] for c in _captions(at)[1:]] == [n.label for n in expected]  # only the deep column
    about = " ".join(m.value for m in at.markdown)
    assert "in Milvus" in about and "collection transferlab_deep_" in about

    at.session_state["search_milvus_uri"] = "http://127.0.0.1:9"
    at.run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Cannot reach the Milvus server at http://127.0.0.1:9" in errors[0]
    assert "--store faiss" in errors[0] and not _captions(at)  # no results from another store
    at.button(key="search_use_faiss").click().run()
    assert not at.error and len(_captions(at)) == 1 + 3 * 3
    assert not at.exception


@pytest.mark.slow  # the page builds the sample's indexes
def test_students_see_the_store_but_only_the_teacher_changes_it(settings):
    at = open_app_page("app_pages/search.py", state={"teacher": False})
    radio = at.radio(key="search_store")
    assert radio.value == "faiss" and radio.disabled
    assert any("The teacher chooses the store" in c.value for c in at.caption)


@pytest.mark.slow
def test_the_triplet_button_trains_a_head_then_its_column_searches_and_is_measured_held_out(sample_folder, settings):
    from core.retrieval.embedders import EmbedderConfig
    from core.retrieval.projection import latest_embedder
    from core.retrieval.triplet import compare_held_out

    at = search_page()
    at.slider(key="search_k").set_value(3).run()
    at.button(key="search_train_triplet").click().run()
    assert not at.exception, at.exception
    record = latest_embedder(sample_folder, "efficientnet_lite0", settings)
    assert record is not None  # stored like a run
    cls, rel = _query(at)
    captions = _captions(at)
    assert len(captions) == 1 + 4 * 3  # the fourth column now has neighbours
    cfg = EmbedderConfig(backbone="efficientnet_lite0")
    triplet, _ = open_index(sample_folder, "triplet", cfg, settings=settings)
    expected = triplet.search(sample_folder / rel, 3, exclude_file=rel).neighbours
    assert [c.split("**")[1] for c in captions[1 + 3 * 3 :]] == [n.label for n in expected]
    # measured on the held-out photos against the deep features it starts from, with the protocol said
    deep, _ = open_index(sample_folder, "deep", cfg, settings=settings)
    q = compare_held_out({"deep": deep, "triplet": triplet}, record, 3)
    metric = {m.label: m.value for m in at.metric}
    assert metric["Deep + triplet: precision@3"] == f"{q['triplet'].precision_at_k:.1%}"
    assert metric["Deep features: precision@3"] == f"{q['deep'].precision_at_k:.1%}"
    assert any(c.value.startswith(f"Protocol: {q['triplet'].protocol}") for c in at.caption)
    assert "held-out" in q["triplet"].protocol and not at.error
