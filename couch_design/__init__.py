"""Design documents as files: ``couch_design/<database kind>/<ddoc>/views/<view>/map.js`` (+ ``reduce.js``,
whose whole content is a JS function or a builtin reduce such as ``_count``), ``validate_doc_update.js``, and
``ddoc.json`` for top-level fields (``{"autoupdate": false}``: indexed when queried, not after every write).

Database kinds are logical: ``main``, ``audit``, ``users-meta``, ``user-meta`` (every per-user meta database),
``area`` (every operational-area database), and ``any`` (deployed to every database fieldsync manages).
"""

from couch_design.loader import design_docs_for, load_tree, retired_design_docs

__all__ = ["design_docs_for", "load_tree", "retired_design_docs"]
