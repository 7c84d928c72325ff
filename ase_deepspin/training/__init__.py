"""Training models on labelled frames, evaluating them against labels, and active learning with committees."""
