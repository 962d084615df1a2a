"""The shared store of a multi-node installation: PostgreSQL (`[store] url`), docs/cluster.md.

- `schema`: the tables and their versioned migrations;
- `writer`: every change of a node, in order, group-committed, never awaited in the loop's
  callbacks (REGISTERs await theirs through the registrar's async seam);
- `location`: the registrar's bindings and device claims (`PgLocationStore`);
- `replica`: the node's SQLite copy of the other stored tables (settings, accounts, voicemail
  index, announcements, call records...), kept in step with PostgreSQL;
- `journal`: the answered calls of each node, ended by a survivor when a node dies;
- `node`: what wires them into a running server (notices, liveness, takeover).

Without `[store] url` nothing here is imported: the store is SQLite in `data_dir`.
"""
