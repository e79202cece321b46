"""Streamlit pieces more than one page draws (``app_pages/`` holds the pages, ``core/`` the logic without streamlit)."""
