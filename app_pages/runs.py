"""Runs: every training run in the run store (from the Train page or the CLI), with its status and accuracy."""

import pandas as pd
import streamlit as st

from core.runstore import RunStore
from core.settings import Settings

settings = Settings.from_env()
st.title("Runs")
runs = RunStore(settings.runs_dir).list_runs()

if not runs:
    st.info(
        "No runs yet. Start a race on the Train page, or train one from a terminal — it works offline on the "
        "built-in sample:\n\n"
        "```\npython -m core train --data sample --regime transfer --backbone efficientnet_lite0 --preset \"quick demo\"\n```"
    )
    st.page_link("app_pages/train.py", label="Go to the Train page →", icon="🏋️")
else:
    rows = []
    for r in runs:
        s, c = r.summary, r.config
        rows.append({
            "run": r.run_id,
            "status": r.status,
            "regime": c.get("model", {}).get("regime"),
            "backbone": c.get("model", {}).get("backbone"),
            "dataset": c.get("data", {}).get("source"),
            "epochs": f"{len(r.metrics)}/{c.get('train', {}).get('epochs', '?')}",
            "best val acc": s.get("best_val_acc") if s else (max((m.get("val_acc", 0) for m in r.metrics), default=None)),
            "test acc": s.get("test_acc"),
            "train s": s.get("train_seconds"),
            "trainable params": c.get("resolved", {}).get("trainable_params"),
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"best val acc": st.column_config.NumberColumn(format="%.3f"),
                                "test acc": st.column_config.NumberColumn(format="%.3f"),
                                "train s": st.column_config.NumberColumn(format="%.0f")})
    bad = [r for r in runs if r.status in ("corrupt", "interrupted", "failed")]
    for r in bad:
        st.caption(f"⚠️ {r.run_id}: {r.status} — {r.error or 'see its folder'}")
st.caption(f"Run store: `{settings.runs_dir}`")
