"""The plan evaluator: pure functions of OpenSRP documents (no I/O but the packaged templates)."""
