"""The quiz: concept questions written once (``questions.yaml``, a teacher edits it) and questions whose correct
answer is computed from the class's own runs and search indexes at the moment of asking."""
