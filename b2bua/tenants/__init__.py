"""Tenants: the companies one provider serves, each with its own SIP domain (digest realm),
users, trunks and DIDs, system extensions, music, announcements, administrators and limits
(docs/tenants.md).

The modules, by concept:

- `names`: scoped names (`1001@acme.example`) where every tenant's data meets;
- `model`: `Tenant`, one company as calls see it, and its limits;
- `registry`: `Tenants`, which tenant a domain, a DID, a trunk or a name belongs to.

(The package imports nothing itself: the registrar reads `names` below the call engine that
`model` and `registry` build on.)
"""
