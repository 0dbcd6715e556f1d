"""Bridges to the tools v1 users reach for: TensorBoard and the RunDetails widget (issue 15)."""
