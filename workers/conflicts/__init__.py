"""Conflict resolution: latest wins by each type's modification time, with an audit trail and revert."""
