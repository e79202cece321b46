"""What the app's pages share, without streamlit: the training queue, background tasks, the live view of a
launch, plotly figures, the machine's state, the Search page's helpers, and what an ImageNet backbone already
sees (the start of the "Look inside" page, issue 15)."""
