"""``fieldsync demo``: the product end to end on the embedded server."""
