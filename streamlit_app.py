"""Transfer Lab — the Streamlit entry point: a router (``st.navigation``) plus the shared sidebar.

Run with ``streamlit run streamlit_app.py``. Pages live in ``pages/``; all logic lives in ``core/``.
"""

import streamlit as st

from core.settings import Settings

st.set_page_config(page_title="Transfer Lab", page_icon="🌼", layout="wide")

settings = Settings.from_env()
with st.sidebar:
    st.markdown("### 🌼 Transfer Lab")
    st.caption("Transfer learning and image retrieval, live, on a laptop CPU.")
    with st.expander("Settings (environment variables)"):
        for name, value in settings.describe().items():
            st.markdown(f"`{name}`  \n{value}")

page = st.navigation([st.Page("pages/runs.py", title="Runs", icon="📋", default=True)])
page.run()
