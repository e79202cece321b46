"""What the app's pages share, without streamlit: the training queue, background tasks, the live view of a
launch, plotly figures, the machine's state and the Search page's helpers."""
