"""``python -m core explain``: where a saved run looks in one photo (a CAM heat map), and its feature maps.

Writes two PNGs into ``--out`` (``RUN-PHOTO-METHOD-cam.png``: the photo as the run saw it with the heat map over
it, the true class's beside the prediction's when ``--true-class`` differs; ``RUN-PHOTO-features.png``: the
first layer's filters and the photo's feature maps at three depths), both written atomically once everything
is computed, so an error leaves no file. The JSON line adds the backbone's own ImageNet top-5 for the photo
(null, with a note on stderr, when its ImageNet weights are not on this machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from core.cli import args as a
from core.errors import DataError
from core.explain.cam import CAM_METHODS
from core.files import atomic_path

MIN_PNG_PX = 224  # heat maps of small runs are scaled up (nearest: the pixels the run saw) to at least this


def add_parsers(sub) -> None:
    e = sub.add_parser("explain", help="Grad-CAM heat map and feature maps of a saved run on one photo")
    e.add_argument("--run", required=True, help="a run folder, or a run id of the run store")
    e.add_argument("--image", required=True, help="the photo (JPEG, PNG, WebP…)")
    e.add_argument("--method", choices=list(CAM_METHODS), default="gradcam", help="default: gradcam")
    e.add_argument("--out", default=".", help="folder for the two PNGs (made when missing; default: here)")
    e.add_argument("--true-class", help="the photo's class: its heat map is drawn too when the run predicts another")
    e.add_argument("--img-size", type=a.positive_int, help="explain at this size (default: the run's own)")
    a.add_runs_dir(e)
    e.set_defaults(handler=cmd_explain)


def _scaled(image: Image.Image) -> Image.Image:
    factor = -(-MIN_PNG_PX // max(image.size))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def _side_by_side(images) -> Image.Image:
    out = Image.new("RGB", (sum(i.width for i in images) + 8 * (len(images) - 1), images[0].height), "white")
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + 8
    return out


def cmd_explain(args: argparse.Namespace) -> int:
    # lazy: they load torch models and the grad-cam package; keeps `python -m core` quick to start
    from core.errors import WeightsUnavailable  # noqa: PLC0415
    from core.explain.cam import explain_photo  # noqa: PLC0415
    from core.explain.features import feature_sheet  # noqa: PLC0415
    from core.explain.imagenet import imagenet_model, imagenet_top  # noqa: PLC0415
    from core.runs.evaluate import load_run_model, run_classes_and_size  # noqa: PLC0415
    from core.runs.predictions import load_photo  # noqa: PLC0415
    from core.runs.store import RunStore  # noqa: PLC0415

    settings = a.settings_from(args)
    run = RunStore(settings.runs_dir).get(args.run)
    if run.status == "corrupt":
        raise DataError(f"Run folder {run.dir} cannot be read: {run.error}")
    image = Path(args.image)
    if not image.is_file():
        raise DataError(f"No photo at {image}: give the path of an image file (JPEG, PNG, WebP…).")
    photo = load_photo(image, image.name)
    classes, img_size = run_classes_and_size(run)
    backbone = str(run.config.get("model", {}).get("backbone", ""))
    model = load_run_model(run)

    ex = explain_photo(
        model, backbone, classes, img_size, photo, method=args.method, true_class=args.true_class,
        at_size=args.img_size,
    )  # fmt: skip
    sheet = feature_sheet(model, backbone, photo, ex.img_size)
    try:  # only with weights already on this machine: no download for a side note
        imagenet = imagenet_model(backbone, settings, allow_download=False)[0]
        top5 = [{"label": n, "prob": round(p, 5)} for n, p in imagenet_top(backbone, photo, settings, 5, imagenet)]
    except WeightsUnavailable as e:
        top5 = None
        print(f"note: no ImageNet top-5: {str(e).splitlines()[0]}", file=sys.stderr)

    out = Path(args.out)
    stem = f"{run.run_id}-{image.stem}"
    cam_path, features_path = out / f"{stem}-{args.method}-cam.png", out / f"{stem}-features.png"
    with atomic_path(cam_path) as cam_tmp, atomic_path(features_path) as features_tmp:
        _scaled(_side_by_side([c.overlay for c in ex.cams])).save(cam_tmp, format="PNG")
        sheet.save(features_tmp, format="PNG")

    label, prob = ex.prediction
    print(
        f"{run.run_id}: {label} ({prob:.0%}); {CAM_METHODS[args.method].display} of {ex.target_layer} at "
        f"{ex.size_note}, {ex.seconds:.2f} s",
        file=sys.stderr,
    )
    result = {
        "prediction": {"label": label, "prob": round(prob, 5)},
        "top3": [{"label": n, "prob": round(p, 5)} for n, p in ex.top3],
        "imagenet_top5": top5,
        "cam": str(cam_path),
        "features": str(features_path),
        "cam_classes": [{"label": c.label, "prob": round(c.prob, 5), "role": c.role} for c in ex.cams],
        "target_layer": ex.target_layer,
        "method": args.method,
        "img_size": ex.img_size,
        "precision": ex.precision,
        "seconds": round(ex.seconds, 3),
        "run_id": run.run_id,
    }
    print(json.dumps(result))
    return 0
