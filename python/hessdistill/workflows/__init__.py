"""Workflows that chain the stages: ``example`` (the built-in example, end to end) and ``refine`` (active
learning with a committee)."""
