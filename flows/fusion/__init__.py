"""Fusion "one visit" orders (issue 13; CATALOGUE D.1, SPEC §5): the mechanism the product blueprints use.

* :mod:`flows.fusion.address` — the documented normalisation of installation addresses;
* :mod:`flows.fusion.config` — ``config/fusion.yaml``: wait timeouts per product, the district team table,
  where the split by address is done (hub or partner);
* :mod:`flows.fusion.plan` — the pure grouping: one construction task per normalised address, its team,
  its first contact (D.1.7);
* :mod:`flows.fusion.kinds` — the engine node kinds ``fusion_wait`` and ``fusion_plan``;
* :mod:`flows.fusion.admission` — the intake checks of the four ESOP fields;
* :mod:`flows.fusion.views` — the operator views and actions (``hub fusion``, ``/admin/v1/fusion``).

docs/fusion.md says how they fit together.
"""
