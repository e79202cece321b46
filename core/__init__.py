"""Transfer Lab core: data, backbones, training regimes, engine, run store and CLI.

Nothing in this package imports streamlit; the app's pages call into it.
"""
