"""The race planner fits a (fake) machine's throughput into the budget, and `python -m core race` runs the plan."""

from __future__ import annotations

import json

import pytest

from core.cli import main
from core.errors import ConfigError
from core.training import race
from core.training.planner import LADDERS, LOAD_SECONDS_PER_IMAGE, SAFETY, plan_race, race_configs, split_counts
from core.training.throughput import KINDS, PROBE_SIZES, Throughput

FLOWERS = [503, 715, 532, 527, 642]  # images per class of the development photos


def fake_throughput(seconds_per_image: float = 1e-3, precision: str = "fp32") -> Throughput:
    """Every kind of work costs ``seconds_per_image`` at the small probe size and scales with the pixel count,
    except that a whole-network training step costs 20 times more and the few frozen stages after finetune's
    cut a tenth."""
    small, large = PROBE_SIZES
    per_image = {}
    for kind in KINDS:
        base = seconds_per_image * {"train": 20.0, "rest": 0.1}.get(kind, 1.0)
        per_image[kind] = {str(small): base, str(large): base * (large / small) ** 2}
    return Throughput(
        backbone="efficientnet_lite0",
        precision=precision,
        freeze=120,
        machine="fake",
        per_image=per_image,
        build_seconds=0.5,
    )


def test_the_plan_fits_the_budget_and_uses_it():
    for budget in (120, 300, 900):
        plan = plan_race(budget, fake_throughput(), FLOWERS, decoded=[(224, None)])
        assert [r.regime for r in plan.runs] == ["finetune", "transfer", "full", "scratch"]
        assert plan.predicted_seconds <= budget * SAFETY
        exhausted = all(
            LADDERS[r.regime].index(r.recipe) == len(LADDERS[r.regime]) - 1 for r in plan.runs if r.regime != "transfer"
        )
        assert exhausted or plan.predicted_seconds >= 0.6 * budget  # the time is spent on accuracy, not left idle


def test_interpolation_follows_the_pixel_count():
    tp = fake_throughput()
    assert tp.seconds("eval", 128, 10) == pytest.approx(10e-3)
    assert tp.seconds("eval", 256, 10) == pytest.approx(40e-3)  # twice the side, four times the pixels


def test_a_size_measured_below_the_others_is_interpolated_from_its_own_neighbours():
    # small images cost more than the law through the large sizes says: each size follows its nearest two points
    tp = fake_throughput()
    tp.per_image["train"] = {"64": 8e-3, "128": 20e-3, "224": 20e-3 * (224 / 128) ** 2}
    assert tp.seconds("train", 64) == pytest.approx(8e-3)
    assert 8e-3 < tp.seconds("train", 96) < 20e-3
    assert tp.seconds("train", 256) == pytest.approx(80e-3)  # above, the large sizes' law (pixel count)
    assert tp.seconds("train", 32) < 8e-3  # below, extrapolated from 64 and 128


def test_a_bigger_budget_or_a_faster_machine_never_buys_less():
    def steps(plan):
        return {
            r.regime: LADDERS[r.regime].index(r.recipe) if r.regime != "transfer" else r.recipe.img_size
            for r in plan.runs
        }

    small, big = (plan_race(b, fake_throughput(), FLOWERS) for b in (180, 600))
    slow, fast = (plan_race(300, fake_throughput(s), FLOWERS) for s in (4e-3, 1e-3))
    for lesser, greater in ((small, big), (slow, fast)):
        a, b = steps(lesser), steps(greater)
        assert all(b[r] >= a[r] for r in a), (a, b)
        assert sum(b.values()) > sum(a.values())


def test_transfer_continues_from_finetunes_cache():
    plan = plan_race(300, fake_throughput(), FLOWERS)
    f, t = plan.get("finetune"), plan.get("transfer")
    assert t.shares_cache_with == "finetune"
    assert (t.recipe.img_size, t.recipe.views, t.recipe.limit_per_class) == (
        f.recipe.img_size,
        f.recipe.views,
        f.recipe.limit_per_class,
    )
    assert t.breakdown["frozen"] < f.breakdown["frozen"] / 5  # only the stages after finetune's cut
    alone = plan_race(300, fake_throughput(), FLOWERS, regimes=["transfer"])
    assert alone.get("transfer").shares_cache_with is None


def test_undecoded_images_cost_their_decoding():
    everything = [(r.img_size, r.limit_per_class) for ladder in LADDERS.values() for r in ladder]
    for decoded, per_image in (([], 0.01), (everything, LOAD_SECONDS_PER_IMAGE)):
        plan = plan_race(
            300, fake_throughput(), FLOWERS, regimes=["finetune"], decode_seconds_per_image=0.01, decoded=decoded
        )
        run = plan.runs[0]
        n = sum(split_counts(FLOWERS, run.recipe.limit_per_class).values())
        assert run.breakdown["data"] == pytest.approx(n * per_image, abs=0.01)


def test_a_budget_too_small_for_one_epoch_is_refused_clearly():
    with pytest.raises(ConfigError, match=r"too small for even one epoch.*at least \d+ min"):
        plan_race(60, fake_throughput(seconds_per_image=0.05), FLOWERS)


def test_the_plan_becomes_run_configs_that_say_what_they_predict(tmp_path):
    plan = plan_race(300, fake_throughput(), FLOWERS)
    configs = race_configs(plan, str(tmp_path), seed=2, group="g-1", preset="5 minutes")
    assert [c.model.regime for c in configs] == [r.regime for r in plan.runs]
    for cfg, run in zip(configs, plan.runs):
        assert cfg.group == "g-1" and cfg.preset == "5 minutes" and cfg.train.seed == cfg.data.split_seed == 2
        assert cfg.data.img_size == run.recipe.img_size and cfg.train.epochs == run.recipe.epochs
        assert cfg.plan["predicted_seconds"] == pytest.approx(run.predicted_seconds, abs=0.1)
        assert cfg.plan["budget_seconds"] == 300


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_race_command_prints_a_line_per_run_and_a_summary(tiny_folder, settings, monkeypatch, capsys):
    monkeypatch.setattr(race, "probe", lambda *a, **k: fake_throughput(4e-2))  # slow: the cheapest recipes
    code = main(["race", "--data", str(tiny_folder), "--budget-minutes", "1", "--quiet"])
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 0
    *runs, last = out
    assert [r["regime"] for r in runs] == ["finetune", "transfer", "full", "scratch"]
    assert set(last) >= {"budget_seconds", "wall_seconds", "runs"} and last["budget_seconds"] == 60
    assert last["runs"] == runs
    for r in runs:
        assert set(r) >= {"regime", "run_dir", "test_acc", "planned_seconds", "seconds"}
        assert r["status"] == "finished" and 0 <= r["test_acc"] <= 1 and r["seconds"] > 0


@pytest.mark.parametrize("minutes", ["0.5", "31", "soon"])
def test_a_budget_out_of_range_is_a_clear_error(minutes, capsys):
    with pytest.raises(SystemExit) as e:
        main(["race", "--budget-minutes", minutes])
    assert e.value.code == 2 and "budget-minutes" in capsys.readouterr().err
