"""The plan worker: plan activation, event submission, task state changes, cross-plan duplicates."""
